"""Crash loops and sick instances, decided purely: back off, surface, recover, replace.

A Ready revision's instance that exits is a crash: it is counted, the revision gets a
CrashLoopBackOff condition quoting the logs, and its replacement waits 1 s, 2 s, 4 s ... (capped),
like Kubernetes; a minute of health clears both. An instance that cannot even be started (its
image is gone, a secret it reads was deleted, the runtime refuses it) backs off the same way, as
StartBackOff with the reason. An instance HAProxy's checks hold down for
`DOWN_PASSES` passes in a row is drained at once (no wait: nothing reaches it) and so replaced,
counted like a crash and said on its revision (InstanceUnhealthy).
`planner.plan` calls `recover` before scaling, and `crashed` and `start_failed` as scaling
collects exited instances and the starts that failed last pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.core import names
from pipeline.core.records import Revision, Snapshot
from pipeline.dataplane import render
from pipeline.engines.base import Instance
from pipeline.reconcile.actions import Event, LogTail, Note

# Crash loops back off like Kubernetes: 1 s, 2 s, 4 s ... capped; a minute of health resets it.
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 60.0
HEALTHY_RESET_S = 60.0
# An instance HAProxy holds down this many passes in a row is replaced, and this is said on its
# revision; HAProxy takes an instance down after this many failed requests in a row (render.py).
DOWN_PASSES = 3
UNHEALTHY = "InstanceUnhealthy"
ERROR_LIMIT = render.ERROR_LIMIT
# The conditions a back-off sets on a Ready revision, cleared by a healthy minute.
BACKOFF_REASONS = ("CrashLoopBackOff", "StartBackOff", UNHEALTHY)

Crashes = Mapping[str, tuple[int, float]]  # revision -> (crashes in a row, last crash time)


def backoff_s(crashes: int) -> float:
    return float(min(BACKOFF_BASE_S * 2 ** max(crashes - 1, 0), BACKOFF_MAX_S))


def backing_off(crashes: Crashes, revision: str, *, now: float) -> bool:
    count, last = crashes.get(revision, (0, 0.0))
    return count > 0 and now - last < backoff_s(count)


def crashed(
    crashes: Crashes, rev: Revision | None, inst: Instance, *, now: float
) -> tuple[Crashes, list[Note], list[Event]]:
    """One exited instance: a crash of a Ready revision (a Pending one fails instead)."""
    if rev is None or rev.status != "Ready":
        return crashes, [], []
    count = crashes.get(rev.name, (0, 0.0))[0] + 1
    wait = backoff_s(count)
    why = f": {inst.error}" if inst.error else ""  # the runtime's own words (e.g. exec failed)
    message = (
        f"an instance exited with code {inst.exit_code}{why} ({count} in a row); "
        f"restarting in {wait:.0f}s"
    )
    note = Note(
        revision=rev.name,
        reason="CrashLoopBackOff",
        message=message,
        logs=LogTail(instance=inst, lines=5),
    )
    event = Event(
        name="instance_crashed", level="warning",
        fields={"service": rev.service, "revision": rev.name, "instance": inst.name,
                "exit_code": inst.exit_code, "crashes": count, "backoff_s": wait},
    )  # fmt: skip
    return {**crashes, rev.name: (count, now)}, [note], [event]


def start_failed(
    crashes: Crashes, rev: Revision | None, error: str, *, now: float
) -> tuple[Crashes, list[Note], list[Event]]:
    """A start of a Ready revision's instance that failed: counted and backed off like a crash,
    the reason on the revision (a Pending revision's failed start fails it instead)."""
    if rev is None or rev.status != "Ready":
        return crashes, [], []
    count = crashes.get(rev.name, (0, 0.0))[0] + 1
    wait = backoff_s(count)
    message = f"an instance could not start ({count} in a row): {error}; retrying in {wait:.0f}s"
    event = Event(
        name="instance_start_backoff", level="warning",
        fields={"service": rev.service, "revision": rev.name, "error": error,
                "failures": count, "backoff_s": wait},
    )  # fmt: skip
    note = Note(revision=rev.name, reason="StartBackOff", message=message)
    return {**crashes, rev.name: (count, now)}, [note], [event]


def recover(
    crashes: Crashes,
    snapshot: Snapshot,
    *,
    instances: list[Instance],
    ready: frozenset[str],
    now: float,
) -> tuple[Crashes, list[Note]]:
    """Crash loops that stayed healthy a minute end, and so does their condition."""
    revisions = {r.name: r for r in snapshot.revisions}
    kept: dict[str, tuple[int, float]] = {}
    notes: list[Note] = []
    for name, (count, last) in crashes.items():
        healthy = any(i.revision == name and i.id in ready for i in instances)
        if not (healthy and now - last > HEALTHY_RESET_S):
            kept[name] = (count, last)
            continue
        rev = revisions.get(name)
        if rev is not None and rev.reason in BACKOFF_REASONS:
            notes.append(Note(revision=name, reason="", message=""))
    return kept, notes


def checked(
    instances: list[Instance], *, ready: frozenset[str], draining: Mapping[str, float]
) -> dict[str, list[Instance]]:
    """Per backend, the instances HAProxy should have up: ready, running, not draining.
    The loop asks HAProxy which of their servers are down (`Observed.down`)."""
    by_backend: dict[str, list[Instance]] = {}
    for inst in instances:
        if inst.id in ready and inst.id not in draining and inst.running and not inst.frozen:
            by_backend.setdefault(names.backend_name(inst.revision), []).append(inst)
    return by_backend


def held_down(
    down_passes: Mapping[str, int],
    crashes: Crashes,
    *,
    checked: dict[str, list[Instance]],
    down: Mapping[str, frozenset[str]],
    now: float,
) -> Sick:
    """Count passes each instance was seen down; those at `DOWN_PASSES` are to be replaced, each
    counted like a crash (so a revision whose every instance falls sick backs off) and said on
    its revision as InstanceUnhealthy, cleared like a crash loop by a healthy minute."""
    counted: dict[str, int] = {}
    replace: list[Instance] = []
    events: list[Event] = []
    notes: list[Note] = []
    for backend, members in checked.items():
        for inst in members:
            if names.server_name(inst.instance) not in down.get(backend, frozenset()):
                continue
            counted[inst.id] = down_passes.get(inst.id, 0) + 1
            if counted[inst.id] < DOWN_PASSES:
                continue
            replace.append(inst)
            count = crashes.get(inst.revision, (0, 0.0))[0] + 1
            crashes = {**crashes, inst.revision: (count, now)}
            notes.append(Note(revision=inst.revision, reason=UNHEALTHY, message=(
                f"instance {inst.instance} was taken out of rotation by HAProxy (its health "
                f"check failed, or {ERROR_LIMIT} requests in a row failed: 5xx, timeouts or "
                f"refused connections) and replaced ({count} in a row)"
            )))  # fmt: skip
            fields = {"revision": inst.revision, "instance": inst.name, "replaced": count}
            events.append(Event(name="instance_unhealthy", level="warning", fields=fields))
    return Sick(down_passes=counted, crashes=crashes, replace=replace, notes=notes, events=events)


@dataclass(frozen=True, kw_only=True)
class Sick:
    """What `held_down` decided: counters as this pass leaves them, instances to replace."""

    down_passes: dict[str, int]
    crashes: Crashes
    replace: list[Instance]
    notes: list[Note]
    events: list[Event]
