"""Fresh instances probed on their own threads, fast, until they first accept: wake from zero.

A pass that starts an instance used to leave its readiness to the next passes, 0.2 s apart, and
the activator's held request waited for the pass after that to put the instance into HAProxy.
Now each instance a pass starts is probed here every few milliseconds (an app that is not
listening yet refuses the connection at once, so a probe costs next to nothing), and the moment
one passes: `instance_for` may hand its address to the activator (which forwards to it directly,
not through HAProxy), and the loop is woken for the pass that marks it ready and adds it to
HAProxy — without probing it again. The passes' own probes still run for everything else, and
take over for an instance whose app takes longer than `WATCH_S` to listen.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from pipeline.core.logs import get as get_log
from pipeline.core.revisions import Readiness
from pipeline.engines.base import Instance

Probe = Callable[[str, int, Readiness], bool]
# (until seconds after the start, pause between probes): most apps listen within the first.
SCHEDULE = ((1.0, 0.005), (5.0, 0.02))
WATCH_S = SCHEDULE[-1][0]


class Watches:
    def __init__(self, *, probe: Probe, found: Callable[[], None]) -> None:
        self._probe = probe
        self._found = found  # called (no lock held) when a watched instance passes
        self._lock = threading.Lock()
        self._watched: set[str] = set()  # instance ids still being probed
        self._passed: dict[str, tuple[str, str]] = {}  # instance id -> (revision, host:port)
        self._log = get_log(component="reconciler")

    def watch(self, inst: Instance, *, port: int, readiness: Readiness) -> None:
        with self._lock:
            if inst.id in self._watched or inst.id in self._passed or not inst.address:
                return
            self._watched.add(inst.id)
        threading.Thread(
            target=self._run, args=(inst, port, readiness), name="watch", daemon=True
        ).start()

    def passed(self) -> frozenset[str]:
        """Ids of watched instances whose probe passed: the pass counts them ready unprobed."""
        with self._lock:
            return frozenset(self._passed)

    def address(self, revision: str) -> str | None:
        """host:port of a watched instance of `revision` that passed and no pass took yet."""
        with self._lock:
            return next((a for r, a in self._passed.values() if r == revision), None)

    def tracked(self) -> frozenset[str]:
        """Ids watched or passed, for the loop to settle."""
        with self._lock:
            return frozenset(self._watched | self._passed.keys())

    def settle(self, ids: Iterable[str]) -> None:
        """A pass has these instances as ready, or they are gone: not watched any more."""
        with self._lock:
            for key in ids:
                self._watched.discard(key)
                self._passed.pop(key, None)

    def _run(self, inst: Instance, port: int, readiness: Readiness) -> None:
        began = time.monotonic()
        for until, pause in SCHEDULE:
            while time.monotonic() - began < until:
                with self._lock:
                    if inst.id not in self._watched:
                        return  # settled by a pass meanwhile (ready there, or gone)
                if self._probe(inst.address, port, readiness):
                    with self._lock:
                        self._passed[inst.id] = (inst.revision, f"{inst.address}:{port}")
                    self._found()
                    self._log.info("instance_first_probe", revision=inst.revision,
                                   instance=inst.name,
                                   seconds=round(time.monotonic() - began, 4))  # fmt: skip
                    return
                time.sleep(pause)
        with self._lock:
            self._watched.discard(inst.id)  # the passes' own probes carry on
