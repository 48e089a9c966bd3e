"""Who is calling the metadata server next to Docker: a source address -> the owned instance.

The caller is the running container with that address on Slipway's bridge network, asked of the
Docker Engine on every call (addresses are reused as instances come and go, so nothing is
cached). Its Kubernetes counterpart is `knative.callers`.
"""

from __future__ import annotations

from pipeline.engines.docker import DockerEngine
from pipeline.engines.dockerclient import connect
from pipeline.identity.callers import Caller, CallerLookup


def docker_lookup(*, network: str, platform: str) -> CallerLookup:
    engine = DockerEngine(connect(), platform=platform, network=network)

    def lookup(address: str) -> Caller | None:
        for inst in engine.list_instances():
            if inst.running and inst.address == address and inst.service:
                return Caller(service=inst.service, revision=inst.revision, instance=inst.instance)
        return None

    return lookup
