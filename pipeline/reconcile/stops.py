"""Instance stops, off the reconcile loop: each waits out the grace period (SIGTERM, then
SIGKILL) on a worker thread, so one slow instance never holds up the other services.

The loop reads `stopping()` at the start of a pass (`Observed.stopping`): an instance whose stop
is under way is neither counted as a crash nor stopped twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor

from pipeline.core.errors import SlipwayError
from pipeline.core.logs import get as get_log
from pipeline.engines.base import Engine, Instance


class Stopper:
    def __init__(
        self,
        *,
        engine: Engine,
        grace_s: float,
        executor: Executor | None = None,
        done: Callable[[], None] = lambda: None,
    ) -> None:
        self._engine = engine
        self._grace_s = grace_s
        self._executor = executor or ThreadPoolExecutor(max_workers=4, thread_name_prefix="stop")
        self._done = done  # called after each stop: the loop wakes to see the instance gone
        self._stopping: set[str] = set()
        self._lock = threading.Lock()
        self._log = get_log(component="reconciler")

    def stopping(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._stopping)

    def stop(self, inst: Instance) -> None:
        with self._lock:
            if inst.id in self._stopping:
                return
            self._stopping.add(inst.id)
        self._executor.submit(self._run, inst)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)

    def _run(self, inst: Instance) -> None:
        try:
            self._engine.stop_instance(inst, grace_s=self._grace_s)
            self._log.info(
                "instance_stopped", service=inst.service, revision=inst.revision,
                instance=inst.name,
            )  # fmt: skip
        except SlipwayError as e:
            self._log.warning("instance_stop_failed", instance=inst.name, error=e.message)
        finally:
            with self._lock:
                self._stopping.discard(inst.id)
            self._done()
