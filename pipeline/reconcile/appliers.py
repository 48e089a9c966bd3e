"""Carry out a `Plan`: the only place a reconcile pass writes to the store, the engine or HAProxy.

The order is fixed (see `actions`): store updates first (a revision turns Ready before its route
moves; a crash's logs are read before its container goes), then exited instances are collected,
missing ones started (or frozen ones thawed), the data plane applied once, and drained
instances stopped (or frozen) — each only once HAProxy, already told they drain, reports them
idle or their grace period is over. A frozen instance is stopped only if the activator has not
just thawed it for a request (`release`).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from pipeline.autoscale.scaler import Load
from pipeline.core.errors import SlipwayError
from pipeline.core.logs import get as get_log
from pipeline.core.records import Revision
from pipeline.core.revisions import RevisionConfig, config_of
from pipeline.dataplane.model import DataPlane
from pipeline.engines.base import Engine, Instance
from pipeline.reconcile.actions import LogTail, Plan, Start, with_logs
from pipeline.reconcile.stops import Stopper
from pipeline.store.state import Store


class DataPlaneApplier(Protocol):
    def apply(self, plane: DataPlane) -> str: ...

    def busy(self, backend: str, server: str) -> bool: ...

    def down(self) -> dict[str, set[str]]: ...

    def load(self) -> dict[str, Load]: ...


@dataclass(frozen=True, kw_only=True)
class Applied:
    dataplane: str  # what the data plane did: "unchanged", "reloaded", ...
    started: int  # instances started
    # Starts that failed without failing their revision (it was Ready): revision -> why. The
    # next pass backs off on them (`healing.start_failed`).
    failed: Mapping[str, str] = field(default_factory=dict)
    # Instances this pass froze, with host:port: the activator may thaw them before the next.
    frozen: tuple[tuple[Instance, str], ...] = ()
    # Instances this pass started, with their revision: the loop watches them become ready.
    instances: tuple[tuple[Instance, Revision], ...] = ()


class Applier:
    def __init__(
        self,
        *,
        store: Store,
        engine: Engine,
        dataplane: DataPlaneApplier,
        stopper: Stopper,
        resolve: Callable[[RevisionConfig], RevisionConfig],
        release: Callable[[Instance], bool] = lambda instance: True,
    ) -> None:
        self._store = store
        self._engine = engine
        self._dataplane = dataplane
        self._stopper = stopper
        self._resolve = resolve  # fills in secret values right before a start
        # A frozen instance may be stopped: the activator has not taken it (and now cannot).
        self._release = release
        self._log = get_log(component="reconciler")

    def apply(self, plan: Plan) -> Applied:
        for mark in plan.marks:
            message = mark.message + self._logs(mark.logs)
            self._store.mark_revision(
                mark.revision, status=mark.status, reason=mark.reason, message=message
            )
        for note in plan.notes:
            self._store.note(
                note.revision, reason=note.reason, message=note.message + self._logs(note.logs)
            )
        for event in plan.events:
            emit = self._log.warning if event.level == "warning" else self._log.info
            emit(event.name, **event.fields)
        for stop in plan.stops:
            if not stop.instance.frozen or self._release(stop.instance):
                self._stopper.stop(stop.instance)
        for inst in plan.thaws:
            self._thaw(inst)
        failed: dict[str, str] = {}
        started: list[tuple[Instance, Revision]] = []
        for start in plan.starts:
            result = self._start(start)
            if isinstance(result, Instance):
                started.append((result, start.revision))
            elif not start.fails_revision:
                failed[start.revision.name] = result
        began = time.perf_counter()
        applied = self._dataplane.apply(plan.plane)
        if applied != "unchanged":
            # The time says what a reload costs next to runtime changes (bench.scale reads it).
            took = round(time.perf_counter() - began, 4)
            self._log.info("dataplane_applied", result=applied, seconds=took)
        frozen: list[tuple[Instance, str]] = []
        for stop in plan.drained:
            if stop.unless_busy and self._dataplane.busy(stop.backend, stop.server):
                continue
            if not stop.freeze:
                self._stopper.stop(stop.instance)
            elif self._freeze(stop.instance):
                frozen.append((replace(stop.instance, frozen=True), stop.target))
        return Applied(
            dataplane=applied, started=len(started), failed=failed, frozen=tuple(frozen),
            instances=tuple(started),
        )  # fmt: skip

    def _freeze(self, inst: Instance) -> bool:
        """Inline, not on the stopper's threads: the next pass must see it frozen, never a
        freeze landing after it took the instance back."""
        try:
            self._engine.freeze_instance(inst)
        except SlipwayError as e:
            self._log.warning("instance_freeze_failed", instance=inst.name, error=e.message)
            return False
        self._log.info("instance_frozen", service=inst.service, revision=inst.revision,
                       instance=inst.name)  # fmt: skip
        return True

    def _thaw(self, inst: Instance) -> None:
        """A failed thaw (killed while frozen) is seen exited next pass and replaced."""
        try:
            self._engine.thaw_instance(inst)
        except SlipwayError as e:
            self._log.warning("instance_thaw_failed", instance=inst.name, error=e.message)
            return
        self._log.info("instance_thawed", service=inst.service, revision=inst.revision,
                       instance=inst.name)  # fmt: skip

    def _logs(self, tail: LogTail | None) -> str:
        if tail is None:
            return ""
        return with_logs(self._engine.logs_tail(tail.instance, lines=tail.lines))

    def _start(self, start: Start) -> Instance | str:
        """Start one instance; it, or why it failed."""
        rev = start.revision
        log = self._log.bind(service=rev.service, revision=rev.name, build=rev.build_id)
        began = time.perf_counter()
        try:
            inst = self._engine.start_instance(
                service=rev.service,
                revision=rev.name,
                instance=secrets.token_hex(3),
                config=self._resolve(config_of(rev.template, image=rev.image)),
            )
        except SlipwayError as e:
            log.warning("instance_start_failed", error=e.message)
            if start.fails_revision:
                self._store.mark_revision(
                    rev.name, status="Failed", reason="ContainerCreateFailed", message=e.message
                )
            return e.message
        # Its seconds are the engine's part of a wake from zero (bench.coldstart reads them).
        took = round(time.perf_counter() - began, 4)
        log.info("instance_started", instance=inst.name, address=inst.address, seconds=took)
        return inst
