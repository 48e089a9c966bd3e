"""The metadata server's composition root: `slipway metadata` options in, a running server out.

The server itself (`identity.metadata`) only knows a `CallerLookup`; which one is chosen here,
by engine: owned containers on Slipway's bridge network next to Docker
(`identity.dockercallers`), running Slipway pods on Kubernetes (`knative.callers`). The control
plane starts the server next to Docker (`app.daemons`); the Helm chart runs it as the second
container of the control-plane pod.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.identity.callers import CallerLookup
from pipeline.identity.keys import KeyStore
from pipeline.identity.metadata import Issuer, serve


@dataclass(frozen=True, kw_only=True)
class Options:
    """The server's command line (`slipway metadata`): the control plane passes these when it
    starts the server next to Docker; the Helm chart passes them to the pod's second container."""

    bind: str
    port: int
    keys_dir: Path
    platform: str
    issuer: str
    domain: str
    engine: str = "docker"
    network: str = ""  # docker: the bridge network callers are on
    namespace: str = ""  # knative: the namespace the services' pods run in
    kubeconfig: str = ""  # knative: "" = the pod's service account


def lookup_for(options: Options) -> CallerLookup:
    # Imported here so the long-lived daemon loads only its own engine's client library.
    if options.engine == "knative":
        from pipeline.knative.callers import kubernetes_lookup

        return kubernetes_lookup(
            namespace=options.namespace, platform=options.platform, kubeconfig=options.kubeconfig
        )
    from pipeline.identity.dockercallers import docker_lookup

    return docker_lookup(network=options.network, platform=options.platform)


def main(options: Options) -> None:
    issuer = Issuer(
        issuer=options.issuer,
        domain=options.domain,
        project=options.platform,
        keys=KeyStore(options.keys_dir),
    )
    serve(bind=options.bind, port=options.port, lookup=lookup_for(options), issuer=issuer)
