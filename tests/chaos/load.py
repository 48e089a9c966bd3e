"""Steady load for the chaos cases: one thread sending sequential GETs through HAProxy (loopback
only), counting answers that were the service's and the ones that were not."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx

from tests.integration.conftest import Slipway

# A request that takes longer than this during a fault counts as failed: a client would give up.
REQUEST_TIMEOUT_S = 10.0


@dataclass
class Load:
    """What one load thread saw. `accept` says which responses are the service's own answers."""

    slipway: Slipway
    host: str
    accept: Callable[[httpx.Response], bool]
    ok: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)  # the first few, for the assertion message
    streak: int = 0  # failed requests in a row, now
    longest_streak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> None:
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
            while not self._stop.is_set():
                began = time.monotonic()
                try:
                    response = self.slipway.get(self.host, client=client)
                    good = self.accept(response)
                    what = f"{response.status_code} {response.text[:120]!r}"
                except httpx.HTTPError as e:
                    good, what = False, f"{type(e).__name__}: {e}"
                self._count(good, f"{what} after {time.monotonic() - began:.1f}s")
                time.sleep(0.02)

    def _count(self, good: bool, what: str) -> None:
        with self._lock:
            if good:
                self.ok += 1
                self.streak = 0
                return
            self.failed += 1
            self.streak += 1
            self.longest_streak = max(self.longest_streak, self.streak)
            if len(self.failures) < 5:
                self.failures.append(what)

    def assert_no_failures(self, *, at_least: int = 20) -> None:
        """Every request answered by the service, and enough of them to mean something."""
        assert self.failed == 0, f"{self.failed} of {self.ok + self.failed} failed: {self.failures}"
        assert self.ok >= at_least, f"only {self.ok} requests made it: the load did not run"


@contextmanager
def steady_load(
    slipway: Slipway, host: str, *, accept: Callable[[httpx.Response], bool]
) -> Iterator[Load]:
    """Load on `host` for the duration of the block; stopped (and joined) on the way out."""
    load = Load(slipway=slipway, host=host, accept=accept)
    thread = threading.Thread(target=load.run, name=f"load-{host}", daemon=True)
    thread.start()
    try:
        yield load
    finally:
        load._stop.set()
        thread.join(timeout=REQUEST_TIMEOUT_S + 5)


def body_is(*bodies: str) -> Callable[[httpx.Response], bool]:
    """Accept a 200 whose body is one of `bodies` (old or new revision, during a rollout)."""
    return lambda r: r.status_code == 200 and r.text in bodies
