"""The reconciler: desired state (database) → instance containers → HAProxy, level-triggered.

Each pass observes (store snapshot, owned containers, readiness probes), decides (pure functions
in `routing`), and applies: revision status, instance starts, drains and stops, then one data
plane apply. Running a pass twice changes nothing. After a restart it adopts the containers it
owns by label — they are probed, found ready and kept — and removes owned ones nobody wants.

Order matters for zero-downtime: a revision turns Ready in the same pass that puts its instance
into HAProxy and moves the route; the old revision's instances are only marked draining then,
and stopped in a later pass once HAProxy reports no request in flight on them.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Protocol

from pipeline.autoscale.scaler import Load, Scaler, initial_scale
from pipeline.core import names
from pipeline.core.errors import SlipwayError
from pipeline.core.logs import get as get_log
from pipeline.core.records import Revision, Snapshot
from pipeline.core.revisions import Readiness, RevisionConfig, config_of
from pipeline.dataplane.model import DataPlane, JwtPolicy
from pipeline.engines.base import Engine, Instance
from pipeline.reconcile import probes
from pipeline.reconcile.routing import build_plane, desired_scale
from pipeline.store.state import Store

Probe = Callable[[str, int, Readiness], bool]


class DataPlaneApplier(Protocol):
    def apply(self, plane: DataPlane) -> str: ...

    def busy(self, backend: str, server: str) -> bool: ...

    def down(self, backend: str) -> set[str]: ...

    def load(self) -> dict[str, Load]: ...


# Crash loops back off like Kubernetes: 1 s, 2 s, 4 s ... capped; a minute of health resets it.
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 60.0
HEALTHY_RESET_S = 60.0
# An instance HAProxy holds down this many passes in a row is replaced.
DOWN_PASSES = 3


def backoff_s(crashes: int) -> float:
    return float(min(BACKOFF_BASE_S * 2 ** max(crashes - 1, 0), BACKOFF_MAX_S))


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
    ) -> None:
        self._store = store
        self._engine = engine
        self._dataplane = dataplane
        self._domain = domain
        self._readiness_timeout_s = readiness_timeout_s
        self._grace_s = grace_period_s
        self._clock = clock
        self._probe_fn = probe
        self._resolve = resolve  # fills in secret values right before a start
        self._jwt_policy = jwt_policy  # issuer and live keys for private services
        self._ready: set[str] = set()  # instance ids that passed readiness
        self._draining: dict[str, float] = {}  # instance id -> drain start
        self._stopping: set[str] = set()
        # Stops wait out the grace period: off the reconcile loop, so other services go on.
        self._stopper = stopper or ThreadPoolExecutor(max_workers=4, thread_name_prefix="stop")
        self._wake = threading.Event()
        self._cond = threading.Condition()
        self._passes = 0
        self._unready = False  # an instance is running but not ready yet
        self._held: set[str] = set()  # revisions kept warm ahead of a traffic change
        self._scaler = Scaler(allow_zero=scale_to_zero, zero_grace_s=zero_grace_s)
        self._ready_at: dict[str, list[str]] = {}  # revision -> host:port of ready instances
        self._decided: dict[str, int] = {}  # last autoscaler decision per revision, for logs
        self._crashes: dict[str, tuple[int, float]] = {}  # revision -> (count, last crash time)
        self._down_passes: dict[str, int] = {}  # instance id -> passes seen down
        self._ready_revisions: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._log = get_log(component="reconciler")

    # driving ----------------------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

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
        self._stopper.shutdown(wait=True)

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
            while not revisions <= self._ready_revisions:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(timeout=min(left, 1.0))
            return revisions - self._ready_revisions

    def instance_for(self, revision: str, timeout_s: float) -> str | None:
        """For the activator: host:port of a ready instance, waiting up to `timeout_s`."""
        self.wake()
        if self.wait_ready({revision}, timeout_s=timeout_s):
            return None
        with self._cond:
            addresses = self._ready_at.get(revision) or []
        return addresses[0] if addresses else None

    def wait_for_pass(self, *, timeout_s: float = 30.0) -> bool:
        """Wait until one full pass has started and finished after this call."""
        with self._cond:
            target = self._passes + 2
            self.wake()
            return self._cond.wait_for(lambda: self._passes >= target, timeout=timeout_s)

    @property
    def passes(self) -> int:
        """Passes finished since this process started (the reconcile counter in /metrics)."""
        return self._passes

    # one pass ---------------------------------------------------------------------------------
    def reconcile_once(self) -> str:
        with self._lock:
            result = self._pass()
        with self._cond:
            self._passes += 1
            self._cond.notify_all()
        return result

    def _pass(self) -> str:
        snapshot = self._store.snapshot()
        instances = self._engine.list_instances()
        revisions = {r.name: r for r in snapshot.revisions}
        live_ids = {i.id for i in instances}
        self._ready &= live_ids
        for gone in set(self._draining) - live_ids:
            del self._draining[gone]

        self._probe(instances, revisions)
        self._unready = any(
            i.running and i.id not in self._ready and i.revision in revisions for i in instances
        )
        if self._update_revision_status(snapshot, instances):
            snapshot = self._store.snapshot()
            revisions = {r.name: r for r in snapshot.revisions}

        self._heal(snapshot, instances)
        instances = self._scale(snapshot, instances, revisions)
        plane = build_plane(
            snapshot,
            instances=instances,
            ready=self._ready,
            draining=set(self._draining),
            domain=self._domain,
            jwt=self._jwt_policy(),
        )
        applied = self._dataplane.apply(plane)
        serving = [i for i in instances if i.id in self._ready and i.id not in self._draining]
        self._ready_at = {}
        for i in serving:
            if i.revision in revisions:
                port = config_of(revisions[i.revision].template, image="").port
                self._ready_at.setdefault(i.revision, []).append(f"{i.address}:{port}")
        self._ready_revisions = frozenset(self._ready_at)
        if applied != "unchanged":
            self._log.info("dataplane_applied", result=applied)
        self._finish_drains(instances)
        return applied

    def _probe(self, instances: list[Instance], revisions: dict[str, Revision]) -> None:
        for inst in instances:
            if inst.id in self._ready or not inst.running or inst.revision not in revisions:
                continue
            rev = revisions[inst.revision]
            config = config_of(rev.template, image=rev.image)
            if self._probe_fn(inst.address, config.port, config.readiness):
                self._ready.add(inst.id)

    def _update_revision_status(self, snapshot: Snapshot, instances: list[Instance]) -> bool:
        changed = False
        now = self._clock()
        for rev in snapshot.revisions:
            if rev.status != "Pending":
                continue
            own = [i for i in instances if i.revision == rev.name]
            log = self._log.bind(service=rev.service, revision=rev.name, build=rev.build_id)
            if any(i.id in self._ready for i in own):
                self._store.mark_revision(rev.name, status="Ready")
                log.info("revision_ready")
                changed = True
                continue
            exited = [i for i in own if not i.running]
            if exited:
                inst = exited[0]
                tail = self._engine.logs_tail(inst)
                message = f"the container exited with code {inst.exit_code} before it listened"
                message += f" on $PORT{_with_logs(tail)}"
                self._store.mark_revision(
                    rev.name, status="Failed", reason="ExitCode", message=message
                )
                log.warning("revision_failed", reason="ExitCode", exit_code=inst.exit_code)
                changed = True
                continue
            if now - rev.created_at.timestamp() > self._readiness_timeout_s:
                port = config_of(rev.template, image=rev.image).port
                tail = self._engine.logs_tail(own[0]) if own else ""
                message = (
                    f"no instance accepted connections on port {port} within "
                    f"{self._readiness_timeout_s:.0f}s: the app must listen on $PORT "
                    f"(0.0.0.0:{port}){_with_logs(tail)}"
                )
                self._store.mark_revision(
                    rev.name, status="Failed", reason="ReadinessTimeout", message=message
                )
                log.warning("revision_failed", reason="ReadinessTimeout")
                changed = True
        return changed

    def _scale(
        self, snapshot: Snapshot, instances: list[Instance], revisions: dict[str, Revision]
    ) -> list[Instance]:
        scale = desired_scale(snapshot)
        with self._cond:
            held = self._held & set(scale)
        for name in held:
            scale[name] = max(scale[name], 1)
        self._autoscale(scale, revisions, instances)
        for name in held:  # a hold (traffic about to move here) wins over an idle autoscaler
            scale[name] = max(scale[name], 1)
        result: list[Instance] = []
        by_revision: dict[str, list[Instance]] = {}
        for inst in instances:
            if not inst.running:
                # Exited: collected here; a routed revision gets a fresh instance below.
                if inst.id not in self._stopping and inst.id not in self._draining:
                    self._crashed(revisions.get(inst.revision), inst)
                self._stop(inst)
                continue
            by_revision.setdefault(inst.revision, []).append(inst)
            result.append(inst)
        for rev_name, own in by_revision.items():
            keep = scale.get(rev_name, 0)
            active = [i for i in own if i.id not in self._draining]
            # Prefer keeping ready instances; surplus ones drain.
            active.sort(key=lambda i: (i.id not in self._ready, i.name))
            for inst in active[keep:]:
                self._draining[inst.id] = self._clock()
                self._log.info(
                    "instance_draining", service=inst.service, revision=rev_name, instance=inst.name
                )
        for rev_name, want in scale.items():
            have = [i for i in by_revision.get(rev_name, []) if i.id not in self._draining]
            if want > len(have) and self._backing_off(rev_name):
                continue
            for _ in range(want - len(have)):
                started = self._start(revisions[rev_name])
                if started is not None:
                    result.append(started)
        return result

    def _autoscale(
        self, scale: dict[str, int], revisions: dict[str, Revision], instances: list[Instance]
    ) -> None:
        """Replace the "one instance" of each wanted revision with the KPA's decision."""
        load = self._dataplane.load()
        now = self._clock()
        for name, want in scale.items():
            rev = revisions[name]
            if want == 0:
                continue
            if rev.status == "Pending":
                scale[name] = initial_scale(rev.template)
                continue
            ready = sum(
                1
                for i in instances
                if i.revision == name and i.id in self._ready and i.id not in self._draining
            )
            desired = self._scaler.observe(
                name,
                template=rev.template,
                load=load.get(names.backend_name(name)),
                ready=ready,
                now=now,
            )
            scale[name] = desired
            if self._decided.get(name) != desired:
                self._decided[name] = desired
                self._log.info(
                    "autoscaler_decision", service=rev.service, revision=name, ready=ready,
                    **(self._scaler.view(name) or {"desired": desired}),
                )  # fmt: skip
        # Tracks live as long as the revision: at zero, its quiet history is what keeps it there.
        self._scaler.forget(set(scale))

    def autoscaler_view(self, revision: str) -> dict[str, Any] | None:
        return self._scaler.view(revision)

    def _crashed(self, rev: Revision | None, inst: Instance) -> None:
        if rev is None or rev.status != "Ready":
            return  # a Pending revision's crash fails it (see _update_revision_status)
        count, _ = self._crashes.get(rev.name, (0, 0.0))
        count += 1
        now = self._clock()
        self._crashes[rev.name] = (count, now)
        wait = backoff_s(count)
        tail = self._engine.logs_tail(inst, lines=5)
        message = (
            f"an instance exited with code {inst.exit_code} ({count} in a row); "
            f"restarting in {wait:.0f}s{_with_logs(tail)}"
        )
        self._store.note(rev.name, reason="CrashLoopBackOff", message=message)
        self._log.warning(
            "instance_crashed", service=rev.service, revision=rev.name, instance=inst.name,
            exit_code=inst.exit_code, crashes=count, backoff_s=wait,
        )  # fmt: skip

    def _backing_off(self, revision: str) -> bool:
        count, last = self._crashes.get(revision, (0, 0.0))
        return count > 0 and self._clock() - last < backoff_s(count)

    def _heal(self, snapshot: Snapshot, instances: list[Instance]) -> None:
        """Clear crash loops that recovered; replace instances HAProxy keeps marking down."""
        now = self._clock()
        revisions = {r.name: r for r in snapshot.revisions}
        for name, (_count, last) in list(self._crashes.items()):
            healthy = any(i.revision == name and i.id in self._ready for i in instances)
            if healthy and now - last > HEALTHY_RESET_S:
                del self._crashes[name]
                rev = revisions.get(name)
                if rev is not None and rev.reason == "CrashLoopBackOff":
                    self._store.note(name, reason="", message="")
        by_backend: dict[str, list[Instance]] = {}
        for inst in instances:
            if inst.id in self._ready and inst.id not in self._draining and inst.running:
                by_backend.setdefault(names.backend_name(inst.revision), []).append(inst)
        seen: set[str] = set()
        for backend, members in by_backend.items():
            down = self._dataplane.down(backend)
            for inst in members:
                if names.server_name(inst.instance) not in down:
                    continue
                seen.add(inst.id)
                passes = self._down_passes.get(inst.id, 0) + 1
                self._down_passes[inst.id] = passes
                if passes >= DOWN_PASSES:
                    # Out of rotation already (HAProxy did that); replace it.
                    self._log.warning(
                        "instance_unhealthy", revision=inst.revision, instance=inst.name
                    )
                    self._draining[inst.id] = now - self._grace_s  # no drain wait: it is down
        self._down_passes = {k: v for k, v in self._down_passes.items() if k in seen}

    def _start(self, rev: Revision) -> Instance | None:
        log = self._log.bind(service=rev.service, revision=rev.name, build=rev.build_id)
        instance_id = secrets.token_hex(3)
        try:
            inst = self._engine.start_instance(
                service=rev.service,
                revision=rev.name,
                instance=instance_id,
                config=self._resolve(config_of(rev.template, image=rev.image)),
            )
        except SlipwayError as e:
            log.warning("instance_start_failed", error=e.message)
            if rev.status == "Pending":
                self._store.mark_revision(
                    rev.name, status="Failed", reason="ContainerCreateFailed", message=e.message
                )
            return None
        log.info("instance_started", instance=inst.name, address=inst.address)
        self._unready = True
        return inst

    def _finish_drains(self, instances: list[Instance]) -> None:
        now = self._clock()
        for inst in instances:
            since = self._draining.get(inst.id)
            if since is None or inst.id in self._stopping:
                continue
            backend = names.backend_name(inst.revision)
            server = names.server_name(inst.instance)
            if now - since < self._grace_s and self._dataplane.busy(backend, server):
                continue
            self._stop(inst)

    def _stop(self, inst: Instance) -> None:
        if inst.id in self._stopping:
            return
        self._stopping.add(inst.id)

        def stop() -> None:
            try:
                self._engine.stop_instance(inst, grace_s=self._grace_s)
                self._log.info(
                    "instance_stopped", service=inst.service, revision=inst.revision,
                    instance=inst.name,
                )  # fmt: skip
            except SlipwayError as e:
                self._log.warning("instance_stop_failed", instance=inst.name, error=e.message)
            finally:
                self._stopping.discard(inst.id)
                self.wake()

        self._stopper.submit(stop)


def _with_logs(tail: str) -> str:
    return f"; last log lines:\n{tail}" if tail else " (it wrote no logs)"
