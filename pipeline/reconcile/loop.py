"""The embedded engine's reconciler: desired state (database) → instance containers → HAProxy.

Each pass reads (the store's snapshot, the containers Slipway owns, readiness probes, HAProxy's
figures), decides with the pure `planner.plan`, and applies the plan once (`appliers`). Running a
pass twice changes nothing. After a restart it adopts the containers it owns by label — they are
probed, found ready and kept — and removes owned ones nobody wants.

Beside the passes, this is what the deployer and the activator wait on: `hold` keeps a revision
warm ahead of a traffic move, `wait_ready` and `instance_for` block until a revision has a ready
instance in the data plane. `instance_for` first thaws a frozen instance of the revision, if the
last pass left one, and hands its address over at once: waking from frozen costs one
`docker unpause`, not a pass (`thaws` keeps the claim that stops a pass stopping it meanwhile).
Waking from stopped, it hands over a started instance's address as soon as its first probe
passes (`watches` probes fresh instances every few milliseconds), before a pass has put it into
HAProxy.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from pipeline.autoscale import freezing, scaler
from pipeline.core.errors import SlipwayError
from pipeline.core.logs import get as get_log
from pipeline.core.records import Snapshot
from pipeline.core.revisions import Readiness, RevisionConfig, config_of
from pipeline.dataplane.model import JwtPolicy
from pipeline.engines.base import Engine
from pipeline.reconcile import healing, probes, routing
from pipeline.reconcile.appliers import Applier, DataPlaneApplier
from pipeline.reconcile.inputs import Memory, Observed, Rules
from pipeline.reconcile.planner import plan
from pipeline.reconcile.stops import Stopper
from pipeline.reconcile.thaws import Thaws
from pipeline.reconcile.watches import Watches
from pipeline.store.state import Store

Probe = Callable[[str, int, Readiness], bool]
SLOW_PASS_S = 0.1  # a pass longer than this logs its phases (issue 17's goal at 500 services)
MEMINFO = Path("/proc/meminfo")  # MemAvailable: frozen instances stop under the floor


class Reconciler:
    def __init__(
        self,
        *,
        store: Store,
        engine: Engine,
        dataplane: DataPlaneApplier,
        domain: str,
        readiness_timeout_s: float,
        grace_period_s: float,
        clock: Callable[[], float] = time.time,
        probe: Probe = probes.ready,
        stopper: Executor | None = None,
        resolve: Callable[[RevisionConfig], RevisionConfig] = lambda config: config,
        scale_to_zero: bool = False,
        zero_grace_s: float = 30.0,
        jwt_policy: Callable[[], JwtPolicy | None] = lambda: None,
        freeze: bool = False,
        min_available_bytes: int = freezing.DEFAULT_MIN_AVAILABLE_BYTES,
        meminfo: Callable[[], str] = lambda: MEMINFO.read_text(),
        # Sees each pass's snapshot: the activator's desired-state cache is written from it.
        on_snapshot: Callable[[Snapshot], object] = lambda snapshot: None,
    ) -> None:
        self._store = store
        self._engine = engine
        self._dataplane = dataplane
        self._clock = clock
        self._probe = probe
        # Issuer and live keys for private services: a provider that reads the key files only
        # when they can have changed (see `policies`), not on every pass.
        self._jwt_policy = jwt_policy
        self._rules = Rules(
            domain=domain,
            readiness_timeout_s=readiness_timeout_s,
            grace_s=grace_period_s,
            allow_zero=scale_to_zero,
            zero_grace_s=zero_grace_s,
            freeze=freeze and scale_to_zero,
        )
        self._min_available_bytes = min_available_bytes
        self._meminfo = meminfo
        self._on_snapshot = on_snapshot
        self._thaws = Thaws(engine=engine)
        self._stopper = Stopper(
            engine=engine, grace_s=grace_period_s, executor=stopper, done=self.wake
        )
        self._applier = Applier(
            store=store, engine=engine, dataplane=dataplane, stopper=self._stopper, resolve=resolve,
            release=self._thaws.release,
        )  # fmt: skip
        self._memory = Memory()
        self._failed_starts: dict[str, str] = {}  # last pass's, observed by the next one
        self._wake = threading.Event()
        self._cond = threading.Condition()
        self._passes = 0  # finished
        self._begun = 0  # passes that took the lock: numbered as they begin
        self._pass_seconds = 0.0  # summed over the passes, and the last one's: see /metrics
        self._last_pass_s = 0.0
        self._unready = False  # an instance is running but not ready yet
        self._held: set[str] = set()  # revisions kept warm ahead of a traffic change
        # The activator's asks: pending ones, and any seen since the last pass read them. An
        # ask is demand whatever HAProxy's counters say: a request held by a worker that a
        # reload retired is in no current worker's stats (found by bench.soak).
        self._asking: dict[str, int] = {}
        self._asked: set[str] = set()
        self._serving: dict[str, tuple[str, ...]] = {}  # revision -> host:port of ready ones
        self._lock = threading.Lock()
        self._watches = Watches(probe=probe, found=self._found)
        self._log = get_log(component="reconciler")

    # driving ----------------------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def _found(self) -> None:
        """A fresh instance passed its probe: `instance_for` may take it, a pass makes it ready."""
        with self._cond:
            self._cond.notify_all()
        self.wake()

    def run(self, stop: threading.Event, *, interval_s: float = 1.0) -> None:
        while not stop.is_set():
            try:
                self.reconcile_once()
            except SlipwayError as e:
                self._log.warning("reconcile_failed", error=e.message)
            except Exception:
                self._log.exception("reconcile_crashed")
            # While an instance is proving itself ready, probe often: it is deploy latency.
            self._wake.wait(min(interval_s, 0.2) if self._unready else interval_s)
            self._wake.clear()
        self._stopper.shutdown()

    def hold(self, revisions: set[str]) -> None:
        """Keep an instance of each of these revisions running even with no traffic yet."""
        with self._cond:
            self._held |= revisions
        self.wake()

    def release(self, revisions: set[str]) -> None:
        with self._cond:
            self._held -= revisions
        self.wake()

    def wait_ready(self, revisions: set[str], *, timeout_s: float) -> set[str]:
        """Wait until each revision has a ready instance in the data plane; return the laggards."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not revisions <= self._serving.keys():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(timeout=min(left, 1.0))
            return revisions - self._serving.keys()

    def instance_for(self, revision: str, timeout_s: float) -> str | None:
        """For the activator: host:port of a ready instance, waiting up to `timeout_s`. A frozen
        one is thawed and handed over at once; one killed while frozen falls through to the
        wait (the next pass collects it and starts a fresh instance). After a thaw the caller
        wakes the loop, once its answer is out (`wakeups`): that pass puts it back into HAProxy."""
        with self._cond:
            serving = self._serving.get(revision)
        if not serving:
            thawed = self._thaws.thaw(revision)
            if thawed is not None:
                return thawed
        with self._cond:
            self._asking[revision] = self._asking.get(revision, 0) + 1
            self._asked.add(revision)
        try:
            return self._handed_over(revision, timeout_s, serving=bool(serving))
        finally:
            with self._cond:
                left = self._asking.pop(revision) - 1
                if left:
                    self._asking[revision] = left

    def _handed_over(self, revision: str, timeout_s: float, *, serving: bool) -> str | None:
        self.wake()
        began = time.monotonic()
        with self._cond:
            while True:
                # In the data plane, or started and through its first probe (`watches`).
                addresses = self._serving.get(revision) or ()
                found = addresses[0] if addresses else self._watches.address(revision)
                left = began + timeout_s - time.monotonic()
                if found is not None or left <= 0:
                    break
                self._cond.wait(timeout=min(left, 1.0))
        if not serving:  # a wake (bench.coldstart reads the seconds)
            self._log.info("instance_handed_over", revision=revision, address=found,
                           seconds=round(time.monotonic() - began, 4),
                           via="haproxy" if addresses else "first probe")  # fmt: skip
        return found

    def wait_for_pass(self, *, timeout_s: float = 30.0) -> bool:
        """Wait until one full pass has started and finished after this call: the next pass to
        begin. (It waited for two more to finish, which is right only while one runs: with the
        loop idle the wake made one pass and the second came an interval later, the ~1 s
        outliers of a deploy's `route` step.)"""
        with self._cond:
            target = self._begun + 1
            self.wake()
            return self._cond.wait_for(lambda: self._passes >= target, timeout=timeout_s)

    def refusal(self, service: str, *, timeout_s: float = 30.0) -> str:
        """Never a refusal here: the data plane takes every route the spec allows, and one
        HAProxy cannot serve shows as a RouteRejected condition (`reconcile.rejections`)."""
        return ""

    @property
    def passes(self) -> int:
        """Passes finished since this process started (the reconcile counter in /metrics)."""
        return self._passes

    def autoscaler_view(self, revision: str) -> dict[str, Any] | None:
        return scaler.view(self._memory.tracks.get(revision), floor=self._rules.floor)

    # one pass ---------------------------------------------------------------------------------
    @property
    def pass_seconds(self) -> tuple[float, float]:
        """(seconds spent in passes since start, the last pass's seconds): /metrics shows both, so
        a pass's cost at N services is read, not guessed."""
        return self._pass_seconds, self._last_pass_s

    def reconcile_once(self) -> str:
        with self._lock:
            with self._cond:
                self._begun += 1
            began = time.perf_counter()
            try:
                result = self._pass()
            finally:
                took = time.perf_counter() - began
        with self._cond:
            self._pass_seconds += took
            self._last_pass_s = took
            self._passes += 1
            self._cond.notify_all()
        return result

    def _pass(self) -> str:
        began = time.perf_counter()
        snapshot = self._store.snapshot()
        self._on_snapshot(snapshot)
        seen = self._thaws.observing()  # before the containers are listed
        read = time.perf_counter()
        observed = self._observe(snapshot)
        looked = time.perf_counter()
        decided = plan(snapshot, observed, self._memory, now=self._clock(), rules=self._rules)
        planned = time.perf_counter()
        # Remembered before applying: a pass cut short by an error keeps what it decided.
        self._memory = decided.memory
        self._unready = decided.unready
        applied = self._applier.apply(decided)
        self._failed_starts = dict(applied.failed)
        self._unready = decided.unready or applied.started > 0
        with self._cond:
            self._serving = dict(decided.serving)
        live = {i.id for i in observed.instances}
        self._watches.settle(
            i for i in self._watches.tracked() if i in decided.memory.ready or i not in live
        )
        for inst, rev in applied.instances:
            config = routing.config(rev)
            self._watches.watch(inst, port=config.port, readiness=config.readiness)
        self._thaws.publish(decided.frozen, seen=seen, since=applied.frozen)
        done = time.perf_counter()
        if done - began > SLOW_PASS_S:  # where a slow pass's time went, by phase
            self._log.info("reconcile_pass_slow", seconds=round(done - began, 4),
                           read_s=round(read - began, 4), observe_s=round(looked - read, 4),
                           plan_s=round(planned - looked, 4), apply_s=round(done - planned, 4),
                           revisions=len(snapshot.revisions))  # fmt: skip
        return applied.dataplane

    def _observe(self, snapshot: Snapshot) -> Observed:
        """Read what the plan decides on: containers, probes of the ones not ready yet, and
        HAProxy's figures (load, and which ready instances its checks hold down)."""
        early = self._watches.passed()  # before the listing: each one is in it
        instances = tuple(self._engine.list_instances())
        revisions = {r.name: r for r in snapshot.revisions}
        passed: set[str] = set()
        for inst in instances:
            if inst.id in self._memory.ready or not inst.running or inst.revision not in revisions:
                continue
            if inst.id in early:
                passed.add(inst.id)  # its watch's probe passed: not probed again
                continue
            rev = revisions[inst.revision]
            config = config_of(rev.template, image=rev.image)
            if self._probe(inst.address, config.port, config.readiness):
                passed.add(inst.id)
        memory = self._memory.settled(instances=instances, passed=frozenset(passed))
        checked = healing.checked(list(instances), ready=memory.ready, draining=memory.draining)
        down = self._dataplane.down() if checked else {}
        with self._cond:
            holds = frozenset(self._held)
            asked, self._asked = frozenset(self._asked | self._asking.keys()), set()
        return Observed(
            instances=instances,
            passed=frozenset(passed),
            stopping=self._stopper.stopping(),
            holds=holds,
            load=self._dataplane.load(),
            down={b: frozenset(down.get(b, ())) for b in checked},
            jwt=self._jwt_policy(),
            failed_starts=self._failed_starts,
            thawed=self._thaws.demand() | asked,
            low_memory=self._rules.freeze
            and freezing.memory_low(self._meminfo(), min_available_bytes=self._min_available_bytes),
        )
