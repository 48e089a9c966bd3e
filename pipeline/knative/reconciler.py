"""The Knative reconciler: desired state (database) -> Knative Services, status -> revision rows.

The counterpart of `pipeline.reconcile.loop` for a `ServiceEngine`: Knative owns pods, routing and
autoscaling, so a pass is per service: apply when what Slipway would render changed (or the
object is gone), read the status back, and copy each Pending revision's outcome into the store
with `Store.mark_revision` — which is what the deployer waits on, exactly as with the embedded
engine. Services Slipway owns in the cluster but no longer has are deleted. Level-triggered:
a pass with nothing changed only reads.

`revision_updates` is the decision, pure: revision rows and the observed state in, the marks to
make out.

Traffic edits are stored before they are applied, so the cluster's answer comes after: the
deployer asks `refusal` whether the cluster refused the service's desired state (its admission
refused the apply, or Knative's Route marked the split bad and kept serving the old one) and
puts the previous traffic back if so, answering the user with why.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from pipeline.core.errors import Conflict, InvalidSpec, SlipwayError
from pipeline.core.logs import get as get_log
from pipeline.core.records import Revision, Service
from pipeline.engines.base import RevisionState, ServiceState
from pipeline.knative import render
from pipeline.knative.domainmappings import DomainMappingSync
from pipeline.knative.forbidden import Forbidden
from pipeline.knative.status import TrafficOutcome, slipway_reason
from pipeline.reconcile.actions import Mark  # the same store update as the embedded engine's
from pipeline.store.state import Store


class KnativeServices(Protocol):
    """What this reconciler needs from `KnativeEngine` (a ServiceEngine plus rendering)."""

    def manifests(
        self, *, service: Service, revisions: Sequence[Revision], urls: Sequence[str] = ()
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]: ...

    def apply_service(
        self, *, service: Service, revisions: Sequence[Revision], urls: Sequence[str] = ()
    ) -> ServiceState: ...

    def service_state(self, name: str) -> ServiceState | None: ...

    def pods_state(self, revision: str) -> RevisionState | None: ...

    def traffic_outcome(self, name: str) -> tuple[TrafficOutcome, str]: ...

    def list_services(self) -> list[str]: ...

    def delete_service(self, name: str) -> None: ...


def revision_updates(
    revisions: Sequence[Revision],
    state: ServiceState | None,
    *,
    now: float,
    readiness_timeout_s: float,
    refused: str = "",
    refused_reason: str = "NameTaken",
    last_error: str = "",
    pods: Mapping[str, RevisionState] | None = None,
) -> list[Mark]:
    """How each Pending revision's row should change, given what Knative reports.

    `refused`: why the apply was refused for good, failing the newest revision with
    `refused_reason`: `NameTaken` (a name something else holds), `InvalidSpec` (the cluster's
    admission, e.g. Knative's webhook, refused the spec: retrying cannot help) or `Forbidden`
    (RBAC refused Slipway's service account a verb).
    `last_error`: why the cluster could not be asked (said when a revision times out).
    `pods`: what the pods of revisions Knative has not settled show (`status.pods_state`): an
    exited app fails its revision at once; a waiting one explains a timeout.
    """
    pods = pods or {}
    latest = render.newest(revisions)
    marks: list[Mark] = []
    for rev in revisions:
        if rev.status != "Pending":
            continue
        mark = _settled(
            rev,
            state,
            latest=latest.name if latest else "",
            refused=refused,
            refused_reason=refused_reason,
        )
        seen = pods.get(rev.name)
        if mark is None and seen is not None and seen.status == "Failed":
            mark = _failed(rev, seen.reason, seen.message)
        if mark is None and now - rev.created_at.timestamp() > readiness_timeout_s:
            why = (
                f"the cluster could not be asked: {last_error}"
                if last_error
                else "the app must listen on $PORT; "
                f"`kubectl describe revision {rev.name}` shows why"
            )
            message = f"Knative did not report {rev.name} ready within {readiness_timeout_s:.0f}s"
            if seen is not None and seen.reason:
                mark = _failed(rev, seen.reason, f"{message}: {seen.message}")
            else:
                mark = _failed(rev, "ReadinessTimeout", f"{message}: {why}")
        if mark is not None:
            marks.append(mark)
    return marks


def _settled(
    rev: Revision, state: ServiceState | None, *, latest: str, refused: str, refused_reason: str
) -> Mark | None:
    """The outcome Knative's state settles for a Pending revision; None: not settled yet."""
    observed = state.revision(rev.name) if state is not None else None
    if refused and rev.name == latest:
        return _failed(rev, refused_reason, refused)
    if observed is not None:
        if observed.status == "Pending":
            return None
        return Mark(
            revision=rev.name,
            status=observed.status,
            reason=observed.reason,
            message=observed.message,
        )
    if latest and rev.name != latest:
        message = f"{latest} replaced the template before Knative created {rev.name}"
        return _failed(rev, "Superseded", message)
    if state is not None and state.ready == "False" and state.latest_created != rev.name:
        # Knative could not even create the revision (the Configuration failed).
        return _failed(rev, *slipway_reason(state.reason, state.message))
    return None


def _failed(rev: Revision, reason: str, message: str) -> Mark:
    return Mark(revision=rev.name, status="Failed", reason=reason, message=message)


class KnativeReconciler:
    def __init__(
        self,
        *,
        store: Store,
        engine: KnativeServices,
        readiness_timeout_s: float,
        clock: Callable[[], float],
        mappings: DomainMappingSync | None = None,
    ) -> None:
        self._store = store
        self._mappings = mappings  # custom domains, as Knative DomainMappings
        self._engine = engine
        self._readiness_timeout_s = readiness_timeout_s
        self._clock = clock
        self._applied: dict[str, str] = {}  # service -> hash of what was last applied
        self._states: dict[str, ServiceState] = {}
        self._refused: dict[str, str] = {}  # service -> why its last apply was refused
        self._wake = threading.Event()
        self._passes = 0  # finished
        self._begun = 0  # begun: a pass that begins after a wait_for_pass call serves it
        self._pass_done = threading.Condition()
        self._log = get_log(component="knative-reconciler")

    # the Waker the deployer uses ----------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    # Traffic changes: Knative's route only moves to revisions that are ready, and its
    # activator holds requests for a revision at zero, so nothing needs warming here.
    def hold(self, revisions: set[str]) -> None:
        pass

    def release(self, revisions: set[str]) -> None:
        pass

    def wait_ready(self, revisions: set[str], *, timeout_s: float) -> set[str]:
        return set()

    def wait_for_pass(self, *, timeout_s: float = 30.0) -> bool:
        """Wait until the next pass to begin has finished (woken now, not at the interval)."""
        with self._pass_done:
            target = self._begun + 1
            self.wake()
            return self._pass_done.wait_for(lambda: self._passes >= target, timeout=timeout_s)

    def refusal(self, service: str, *, timeout_s: float = 30.0) -> str:
        """After a pass (`wait_for_pass`): why the cluster refused the service's desired state as
        stored now; "" once it took it, or when it has not said within `timeout_s` (nothing to
        undo then: the reconciler keeps applying). Knative's Route answers after the apply, so
        this waits for it."""
        deadline = time.monotonic() + timeout_s
        while True:
            refused = self._refused.get(service, "")
            if refused:
                return refused
            try:
                outcome, message = self._engine.traffic_outcome(service)
            except SlipwayError as e:  # not the edit's fault; the next pass applies it again
                self._log.warning("traffic_not_read", service=service, error=e.message)
                return ""
            if outcome == "refused":
                return message
            if outcome == "taken" or time.monotonic() >= deadline:
                return ""
            time.sleep(0.25)

    def run(self, stop: threading.Event, *, interval_s: float = 1.0) -> None:
        while not stop.is_set():
            try:
                self.reconcile_once()
            except SlipwayError as e:
                self._log.warning("pass_failed", error=e.message)
            self._wake.wait(interval_s)
            self._wake.clear()

    def urls(self, service: str) -> list[str]:
        """The URLs Knative published for the service at the last pass (service URL first)."""
        state = self._states.get(service)
        return state.urls if state is not None else []

    # one pass -------------------------------------------------------------------------------------
    def reconcile_once(self) -> None:
        with self._pass_done:
            self._begun += 1
        try:
            snapshot = self._store.snapshot()
            wanted = {svc.name for svc in snapshot.services}
            for svc in snapshot.services:
                self._service(svc, snapshot.revisions_of(svc.name))
            self._delete_unwanted(wanted)
            if self._mappings is not None:
                self._mappings.sync()
        finally:
            with self._pass_done:
                self._passes += 1
                self._pass_done.notify_all()

    def _delete_unwanted(self, wanted: set[str]) -> None:
        try:
            for name in self._engine.list_services():
                if name not in wanted:
                    self._engine.delete_service(name)
                    self._applied.pop(name, None)
                    self._states.pop(name, None)
                    self._refused.pop(name, None)
                    self._log.info("service_deleted", service=name)
        except SlipwayError as e:  # the next pass tries again
            self._log.warning("services_not_deleted", error=e.message)

    def _service(self, svc: Service, revisions: list[Revision]) -> None:
        log = self._log.bind(service=svc.name)
        previous = self._states.get(svc.name)
        urls = previous.urls if previous is not None else []
        refused = last_error = ""
        refused_reason = "NameTaken"
        state: ServiceState | None = None
        try:
            ksvc, policies = self._engine.manifests(service=svc, revisions=revisions, urls=urls)
            digest = render.manifest_hash(ksvc, *policies)
            state = self._engine.service_state(svc.name) if ksvc is not None else None
            if ksvc is not None and (state is None or self._applied.get(svc.name) != digest):
                state = self._engine.apply_service(service=svc, revisions=revisions, urls=urls)
                self._applied[svc.name] = digest
                log.info("service_applied", template=ksvc["spec"]["template"]["metadata"]["name"])
        except Conflict as e:
            refused = e.message
            log.warning("service_refused", error=e.message)
        except InvalidSpec as e:
            refused, refused_reason = e.message, "InvalidSpec"
            log.warning("service_refused", error=e.message)
        except Forbidden as e:
            # RBAC's no stays a no until an admin changes the Role: fail the new revision now
            # (the message names the verb and the fix) instead of at the readiness timeout.
            refused, refused_reason = e.message, "Forbidden"
            log.warning("service_refused", error=e.message)
        except SlipwayError as e:
            last_error = e.message
            log.warning("service_not_applied", error=e.message)
        if refused:
            self._refused[svc.name] = refused
        elif not last_error:
            self._refused.pop(svc.name, None)
        if state is not None:
            self._states[svc.name] = state
        pods = self._pods(revisions, state) if not (refused or last_error) else {}
        for mark in revision_updates(
            revisions,
            state,
            now=self._clock(),
            readiness_timeout_s=self._readiness_timeout_s,
            refused=refused,
            refused_reason=refused_reason,
            last_error=last_error,
            pods=pods,
        ):
            try:
                self._store.mark_revision(
                    mark.revision, status=mark.status, reason=mark.reason, message=mark.message
                )
            except Conflict:
                continue  # marked meanwhile; Ready and Failed are final
            log.info(
                "revision_marked", revision=mark.revision, status=mark.status, reason=mark.reason
            )

    def _pods(
        self, revisions: Sequence[Revision], state: ServiceState | None
    ) -> dict[str, RevisionState]:
        """Pod states of the revisions Slipway waits on and Knative reports as still pending."""
        out: dict[str, RevisionState] = {}
        for rev in revisions:
            observed = state.revision(rev.name) if state is not None else None
            if rev.status != "Pending" or observed is None or observed.status != "Pending":
                continue
            try:
                seen = self._engine.pods_state(rev.name)
            except SlipwayError as e:  # Knative's condition still settles it
                self._log.warning("pods_not_read", revision=rev.name, error=e.message)
                continue
            if seen is not None:
                out[rev.name] = seen
        return out
