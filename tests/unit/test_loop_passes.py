"""`wait_for_pass` on both reconcilers: a deploy's route check waits for the next pass to begin
and end, woken at once, not for a loop interval. The loops run on their own threads with an
interval far longer than the wait's timeout, so a wait that needed the interval returns False.
(The embedded loop used to wait for two more passes to end: with the loop idle, the wake made
one and the second came an interval later, the ~1 s outliers of bench.push_to_url's route step.
The Knative one did not wake the loop at all.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from pipeline.knative.reconciler import KnativeReconciler
from tests.unit.test_knative_traffic import Engine
from tests.unit.test_reconciler import World
from tests.unit.test_rollout import Deploys

INTERVAL_S = 600.0  # never reached: every pass below is woken
TIMEOUT_S = 20.0


class Loop(Protocol):
    def run(self, stop: threading.Event, *, interval_s: float = 1.0) -> None: ...
    def wake(self) -> None: ...
    def wait_for_pass(self, *, timeout_s: float = 30.0) -> bool: ...


@contextmanager
def running(loop: Loop) -> Iterator[None]:
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), kwargs={"interval_s": INTERVAL_S})
    thread.start()
    try:
        yield
    finally:
        stop.set()
        loop.wake()
        thread.join(timeout=TIMEOUT_S)
    assert not thread.is_alive()


def test_the_embedded_loop_serves_a_wait_with_the_next_pass(tmp_path: Path) -> None:
    reconciler = World(tmp_path).reconciler  # nothing deployed: nothing Pending, the loop idles
    with running(reconciler):
        for _ in range(5):  # idle between the waits: each is one woken pass
            before = reconciler.passes
            assert reconciler.wait_for_pass(timeout_s=TIMEOUT_S)
            assert reconciler.passes > before


def test_the_knative_loop_serves_a_wait_with_the_next_pass(tmp_path: Path) -> None:
    deploys = Deploys(tmp_path)
    deploys.deploy("web")
    reconciler = KnativeReconciler(
        store=deploys.store, engine=Engine(), readiness_timeout_s=60, clock=time.time
    )
    with running(reconciler):
        for _ in range(5):
            assert reconciler.wait_for_pass(timeout_s=TIMEOUT_S)
