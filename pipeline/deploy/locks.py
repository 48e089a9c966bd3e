"""One lock per service: deploys and edits to one service run one at a time.

So revision numbers only grow, no revision is lost, and a traffic or access edit never
overwrites a deploy's (or the other way round). A caller that has to wait is told so.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from pipeline.deploy.events import Emit, ignore, stage


class ServiceLocks:
    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def hold(self, service: str, emit: Emit = ignore) -> Held:
        """`with locks.hold(service, emit):` — emits a stage event if another one holds it."""
        with self._guard:
            lock = self._locks.setdefault(service, threading.Lock())
        waiting = stage(f"Waiting for the deploy to {service} in progress")
        return Held(lock, on_wait=lambda: emit(waiting))


class Held:
    """A lock that reports when the caller has to wait for it."""

    def __init__(self, lock: threading.Lock, *, on_wait: Callable[[], None]) -> None:
        self._lock = lock
        self._on_wait = on_wait

    def __enter__(self) -> None:
        if not self._lock.acquire(blocking=False):
            self._on_wait()
            self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
