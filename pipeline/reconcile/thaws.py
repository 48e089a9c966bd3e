"""Thaws on a request's path: the activator takes a frozen instance without waiting for a pass.

The loop publishes, after each pass, the frozen instances that pass left frozen (`publish`).
`thaw(revision)`, called from the activator's thread, claims one, unpauses it and returns its
host:port; the activator forwards there at once, and the next pass finds it running and puts it
back into HAProxy. Two things keep that sound while passes run beside it:

- a pass that listed the instance as frozen before the thaw may decide to stop it (retention
  over, memory low): the applier asks `release` first, which refuses while a claim holds;
- a claim holds until a pass that began listing containers after the thaw finished has
  published (`observing` numbers the passes), so every later decision saw it running.

`demand()` hands the revisions thawed since the last pass to the autoscaler: a request answered
in milliseconds can fall between two of HAProxy's samples, and without it the KPA would still
see the revision idle and freeze the instance again under the next request.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping

from pipeline.core.errors import SlipwayError
from pipeline.core.logs import get as get_log
from pipeline.engines.base import Engine, Instance

Frozen = Mapping[str, tuple[tuple[Instance, str], ...]]  # revision -> (instance, host:port)


class Thaws:
    def __init__(self, *, engine: Engine) -> None:
        self._engine = engine
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}  # per revision: one thaw at a time
        self._frozen: dict[str, list[tuple[Instance, str]]] = {}
        # instance id -> (revision, host:port, the last pass that began before the thaw ended);
        # math.inf while the thaw is under way.
        self._claims: dict[str, tuple[str, str, float]] = {}
        self._demand: set[str] = set()
        self._seq = 0
        self._log = get_log(component="activator")

    # the loop -----------------------------------------------------------------------------------
    def observing(self) -> int:
        """A pass begins listing containers: its number."""
        with self._guard:
            self._seq += 1
            return self._seq

    def publish(
        self, frozen: Frozen, *, seen: int, since: tuple[tuple[Instance, str], ...] = ()
    ) -> None:
        """What pass `seen` left frozen, and what it froze `since` it listed containers; claims
        it saw the end of are dropped."""
        with self._guard:
            self._claims = {k: c for k, c in self._claims.items() if c[2] >= seen}
            fresh: dict[str, list[tuple[Instance, str]]] = {}
            for inst, address in (*(p for pairs in frozen.values() for p in pairs), *since):
                if inst.id not in self._claims:
                    fresh.setdefault(inst.revision, []).append((inst, address))
            self._frozen = fresh

    def release(self, instance: Instance) -> bool:
        """May a pass stop this frozen instance? Not while a thaw claims it; once released, the
        activator no longer finds it."""
        with self._guard:
            if instance.id in self._claims:
                return False
            pairs = self._frozen.get(instance.revision, [])
            self._frozen[instance.revision] = [p for p in pairs if p[0].id != instance.id]
            return True

    def demand(self) -> frozenset[str]:
        with self._guard:
            taken, self._demand = frozenset(self._demand), set()
            return taken

    # the activator ------------------------------------------------------------------------------
    def thaw(self, revision: str) -> str | None:
        """host:port of an instance of `revision` thawed for this request (or by one just
        before it), or None: nothing frozen, or it was killed while frozen."""
        with self._guard:
            lock = self._locks.setdefault(revision, threading.Lock())
        with lock:
            with self._guard:
                done = next((c[1] for c in self._claims.values() if c[0] == revision), None)
                if done is not None:
                    return done  # thawed by an earlier request, not in HAProxy yet
                pairs = self._frozen.get(revision) or []
                if not pairs:
                    return None
                (inst, address), self._frozen[revision] = pairs[0], pairs[1:]
                self._claims[inst.id] = (revision, address, math.inf)
                self._demand.add(revision)
            began = time.monotonic()
            try:
                self._engine.thaw_instance(inst)
            except SlipwayError as e:
                with self._guard:
                    del self._claims[inst.id]
                self._log.warning("thaw_failed", revision=revision, instance=inst.name,
                                  error=e.message)  # fmt: skip
                return None
            with self._guard:
                self._claims[inst.id] = (revision, address, float(self._seq))
            self._log.info("instance_thawed", revision=revision, instance=inst.name,
                           seconds=round(time.monotonic() - began, 4))  # fmt: skip
            return address
