"""The build queue: at most N builds at once, the rest wait in the order they came.

Each build gets a `BuildControl` when it is queued, so it can be cancelled while it waits or
while it runs; a running build is cancelled by the timer when it outlives the build timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pipeline.build.processes import CANCELLED, BuildControl


class BuildQueue:
    def __init__(self, *, concurrency: int, timeout_s: float) -> None:
        self.concurrency = max(1, concurrency)
        self.timeout_s = timeout_s
        self._cond = threading.Condition()
        self._waiting: list[str] = []
        self._running = 0
        self._controls: dict[str, BuildControl] = {}

    def control(self, build_id: str) -> BuildControl | None:
        with self._cond:
            return self._controls.get(build_id)

    def cancel(self, build_id: str, reason: str = CANCELLED) -> bool:
        """Stop a queued or running build; False if this process is not running it."""
        with self._cond:
            control = self._controls.get(build_id)
        if control is None:
            return False
        control.cancel(reason)
        with self._cond:
            self._cond.notify_all()
        return True

    def ahead_of(self, build_id: str) -> int:
        with self._cond:
            return self._waiting.index(build_id) if build_id in self._waiting else 0

    @contextmanager
    def slot(
        self, build_id: str, *, on_queued: Callable[[int], None], on_start: Callable[[], None]
    ) -> Iterator[BuildControl]:
        """Wait for a free slot (first come, first served), then run with the timeout armed."""
        control = BuildControl(build_id)
        with self._cond:
            self._controls[build_id] = control
            self._waiting.append(build_id)
            if not self._may_start(build_id):
                on_queued(self._waiting.index(build_id) + self._running)
            while not self._may_start(build_id) and not control.stopped:
                self._cond.wait(timeout=1.0)
            self._waiting.remove(build_id)
            if control.stopped:
                del self._controls[build_id]
                self._cond.notify_all()
                control.check(where=" while queued")
            self._running += 1
        timer = threading.Timer(
            self.timeout_s,
            control.cancel,
            args=(f"timed out after {self.timeout_s:g}s (SLIPWAY_BUILD_TIMEOUT)",),
        )
        timer.daemon = True
        try:
            on_start()
            timer.start()
            yield control
        finally:
            timer.cancel()
            with self._cond:
                self._running -= 1
                self._controls.pop(build_id, None)
                self._cond.notify_all()

    def _may_start(self, build_id: str) -> bool:
        return self._running < self.concurrency and self._waiting[0] == build_id
