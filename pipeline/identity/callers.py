"""Who is calling the metadata server: the caller a source address stands for, and the narrow
Protocol every way of finding it implements.

The bottom of `identity`: the metadata server (`identity.metadata`) asks a `CallerLookup`, and
the composition root (`app.metadataserver`) picks one per engine: the owned container with that
address on Slipway's bridge network (`identity.dockercallers`), or the running Slipway pod with
that pod IP (`knative.callers`). Addresses are reused as instances come and go, so a lookup never
answers from memory alone: the Docker one confirms what it remembers by re-reading the
containers behind it on every call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, kw_only=True)
class Caller:
    service: str
    revision: str
    instance: str


class CallerLookup(Protocol):
    def __call__(self, address: str, /) -> Caller | None:
        """The caller with this source address, None for a stranger; a Slipway error when the
        lookup cannot answer right now (the server says 503, not 403)."""
        ...
