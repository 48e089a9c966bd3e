"""Who is calling the metadata server next to Docker: a source address -> the owned instance.

The caller is the running container with that address on Slipway's bridge network (or, for an
instance in a network sandbox, `engines.sandboxes`, the instance whose sandbox has it). Its
Kubernetes counterpart is `knative.callers`.

Why an index, and why it is safe. Listing every container costs dockerd ~40 ms at 500
containers (issue 17: 40-150 ms per token), while re-reading two containers by id costs ~2 ms.
So the lookup remembers, from its last full listing, which containers stood behind each address,
and answers a known address only after re-reading exactly those containers and finding them
still running with that address. Two running containers never share an address on one network,
so a confirmed entry cannot name an address's previous owner; anything else (an address the
index does not know, a container gone, stopped, cut off from its sandbox or moved) lists
everything again, as every call used to. The confirmation is as fresh as a full listing:
neither can see past the moment dockerd answers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import docker.errors
import requests.exceptions

from pipeline.core.errors import Unavailable
from pipeline.engines import dockerlist
from pipeline.engines.docker import DockerEngine
from pipeline.engines.dockerclient import connect
from pipeline.engines.sandboxes import LABEL_SANDBOX
from pipeline.identity.callers import Caller

Listing = Callable[[list[str] | None], list[dockerlist.Entry]]  # None: every container


@dataclass(frozen=True, kw_only=True)
class Known:
    caller: Caller
    containers: tuple[str, ...]  # the instance, and its sandbox when it runs in one


def callers_by_address(listed: list[dockerlist.Entry], *, network: str) -> dict[str, Known]:
    """The running instances of a listing by address (pure). An address two entries claim
    (which dockerd never allows on one network) is nobody's rather than the first one's."""
    found: dict[str, Known] = {}
    claimed_twice: set[str] = set()
    for entry, inst in dockerlist.live_instances(listed, network=network):
        if not (inst.running and inst.address and inst.service):
            continue
        if inst.address in found:
            claimed_twice.add(inst.address)
        sandbox = dockerlist.labels_of(entry).get(LABEL_SANDBOX, "")
        found[inst.address] = Known(
            caller=Caller(service=inst.service, revision=inst.revision, instance=inst.instance),
            containers=(inst.id, sandbox) if sandbox else (inst.id,),
        )
    return {a: k for a, k in found.items() if a not in claimed_twice}


class CallerIndex:
    """A `CallerLookup` over a container listing: a known address is confirmed by re-reading its
    containers by id; everything else lists in full and renews the index."""

    def __init__(self, listing: Listing, *, network: str) -> None:
        self._listing = listing
        self._network = network
        self._known: dict[str, Known] = {}
        self._lock = threading.Lock()  # the server answers on a thread per connection
        self.full_listings = 0  # how often the index was renewed (tests and benches read it)

    def __call__(self, address: str) -> Caller | None:
        with self._lock:
            known = self._known.get(address)
        if known is not None:
            again = self._read(list(known.containers)).get(address)
            if again == known:
                return known.caller
        renewed = self._read(None)
        with self._lock:
            self._known = renewed
            self.full_listings += 1
        hit = renewed.get(address)
        return hit.caller if hit is not None else None

    def _read(self, ids: list[str] | None) -> dict[str, Known]:
        try:
            listed = self._listing(ids)
        except (docker.errors.APIError, requests.exceptions.ConnectionError) as e:
            raise Unavailable(f"cannot list containers: {e}") from e
        return callers_by_address(listed, network=self._network)


def docker_lookup(*, network: str, platform: str) -> CallerIndex:
    engine = DockerEngine(connect(), platform=platform, network=network)
    return CallerIndex(lambda ids: engine.listing(ids=ids), network=network)
