"""A Pending revision's outcome, decided purely: Ready once an instance is, or Failed and why.

The first phase of `planner.plan`. A revision turns Ready in the pass that finds one of its
instances ready — the same pass that routes to it — and fails when its instance exited before it
listened, or when none was ready within the readiness timeout. The marks go to the store; `marked`
gives the rest of the plan the snapshot as the store will then hold it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from pipeline.core.records import Revision, Snapshot
from pipeline.core.revisions import config_of
from pipeline.engines.base import Instance
from pipeline.reconcile.actions import Event, LogTail, Mark, with_logs


def marks(
    snapshot: Snapshot,
    *,
    instances: Iterable[Instance],
    ready: frozenset[str],
    now: float,
    readiness_timeout_s: float,
) -> tuple[list[Mark], list[Event]]:
    instances = list(instances)
    out: list[Mark] = []
    events: list[Event] = []
    for rev in snapshot.revisions:
        if rev.status != "Pending":
            continue
        ids = {"service": rev.service, "revision": rev.name, "build": rev.build_id}
        own = [i for i in instances if i.revision == rev.name]
        exited = [i for i in own if not i.running]
        if any(i.id in ready for i in own):
            out.append(Mark(revision=rev.name, status="Ready"))
            events.append(Event(name="revision_ready", fields=ids))
        elif exited:
            out.append(_exited(rev, exited[0]))
            events.append(_failed(ids, "ExitCode", exit_code=exited[0].exit_code))
        elif now - rev.created_at.timestamp() > readiness_timeout_s:
            out.append(_timed_out(rev, own, readiness_timeout_s))
            events.append(_failed(ids, "ReadinessTimeout"))
    return out, events


def marked(snapshot: Snapshot, marks: Iterable[Mark]) -> Snapshot:
    """The snapshot with the marks made (their messages without the logs: nothing reads them)."""
    by_name = {m.revision: m for m in marks}
    if not by_name:
        return snapshot  # the same object: what is kept per snapshot stays valid
    revisions = tuple(
        replace(r, status=m.status, reason=m.reason, message=m.message)
        if (m := by_name.get(r.name)) is not None
        else r
        for r in snapshot.revisions
    )
    return replace(snapshot, revisions=revisions)


def _exited(rev: Revision, inst: Instance) -> Mark:
    message = f"the container exited with code {inst.exit_code} before it listened on $PORT"
    return Mark(
        revision=rev.name,
        status="Failed",
        reason="ExitCode",
        message=message,
        logs=LogTail(instance=inst),
    )


def _timed_out(rev: Revision, own: list[Instance], timeout_s: float) -> Mark:
    port = config_of(rev.template, image=rev.image).port
    message = (
        f"no instance accepted connections on port {port} within {timeout_s:.0f}s: "
        f"the app must listen on $PORT (0.0.0.0:{port})"
    )
    if not own:
        message += with_logs("")
    return Mark(
        revision=rev.name,
        status="Failed",
        reason="ReadinessTimeout",
        message=message,
        logs=LogTail(instance=own[0]) if own else None,
    )


def _failed(ids: Mapping[str, object], reason: str, **more: object) -> Event:
    return Event(name="revision_failed", level="warning", fields={**ids, "reason": reason, **more})
