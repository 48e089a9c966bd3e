"""How many instances each revision gets this pass, and so which start, drain and are collected.

Decided purely in `planner.plan`, after revision status and healing. A revision routed (or
Pending, or held by the deployer ahead of a traffic move) wants instances: a Pending one its
initial scale, a Ready one the KPA's decision on HAProxy's figures. Surplus instances drain, the
not-ready ones first; missing ones start, unless the revision is backing off a crash loop or
failed starts. Exited instances are collected (a crash, if their revision was Ready).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pipeline.autoscale import scaler
from pipeline.core import names
from pipeline.core.records import Revision, Snapshot
from pipeline.engines.base import Instance
from pipeline.reconcile import healing
from pipeline.reconcile.actions import Event, Note, Start, Stop
from pipeline.reconcile.inputs import Memory, Observed, Rules
from pipeline.reconcile.routing import desired_scale


@dataclass(frozen=True, kw_only=True)
class Scaled:
    memory: Memory  # draining, crashes and the autoscaler's tracks as this pass leaves them
    running: tuple[Instance, ...]  # the running instances (starts are not ready: not routed)
    stops: tuple[Stop, ...]
    starts: tuple[Start, ...]
    notes: tuple[Note, ...]
    events: tuple[Event, ...]


def wanted(
    snapshot: Snapshot, observed: Observed, memory: Memory, *, now: float, rules: Rules
) -> tuple[dict[str, int], Memory, list[Event]]:
    """Instances per revision, and the autoscaler's memory after this pass's figures."""
    scale = desired_scale(snapshot)
    held = observed.holds & set(scale)
    for name in held:
        scale[name] = max(scale[name], 1)
    revisions = {r.name: r for r in snapshot.revisions}
    tracks = dict(memory.tracks)
    decided = dict(memory.decided)
    events: list[Event] = []
    for name, want in scale.items():
        rev = revisions[name]
        if want == 0:
            continue
        if rev.status == "Pending":
            scale[name] = scaler.initial_scale(rev.template)
            continue
        ready = sum(
            1
            for i in observed.instances
            if i.revision == name and i.id in memory.ready and i.id not in memory.draining
        )
        tracks[name] = track = scaler.step(
            tracks.get(name),
            template=rev.template,
            load=observed.load.get(names.backend_name(name)),
            ready=ready,
            now=now,
            zero_grace_s=rules.zero_grace_s,
        )
        scale[name] = scaler.desired(track, floor=rules.floor)
        if decided.get(name) != scale[name]:
            decided[name] = scale[name]
            fields = {"service": rev.service, "revision": name, "ready": ready,
                      **(scaler.view(track, floor=rules.floor) or {})}  # fmt: skip
            events.append(Event(name="autoscaler_decision", fields=fields))
    for name in held:  # a hold (traffic about to move here) wins over an idle autoscaler
        scale[name] = max(scale[name], 1)
    # Tracks live as long as the revision: at zero, its quiet history is what keeps it there.
    kept = {k: v for k, v in tracks.items() if k in scale}
    known = {k: v for k, v in decided.items() if k in scale}
    return scale, replace(memory, tracks=kept, decided=known), events


def scaled(
    snapshot: Snapshot, observed: Observed, memory: Memory, *, now: float, rules: Rules
) -> Scaled:
    scale, memory, events = wanted(snapshot, observed, memory, now=now, rules=rules)
    revisions = {r.name: r for r in snapshot.revisions}
    crashes, draining = memory.crashes, dict(memory.draining)
    stops: list[Stop] = []
    notes: list[Note] = []
    by_revision: dict[str, list[Instance]] = {}
    for inst in observed.instances:
        if inst.running:
            by_revision.setdefault(inst.revision, []).append(inst)
            continue
        # Exited: collected here; a routed revision gets a fresh instance below.
        if inst.id in observed.stopping:
            continue
        # A container whose start failed is counted once, as the failed start below.
        if inst.id not in draining and inst.revision not in observed.failed_starts:
            rev = revisions.get(inst.revision)
            crashes, crash_notes, crash_events = healing.crashed(crashes, rev, inst, now=now)
            notes += crash_notes
            events += crash_events
        stops.append(Stop(instance=inst))
    for rev_name, error in observed.failed_starts.items():
        rev = revisions.get(rev_name)
        crashes, failure_notes, failure_events = healing.start_failed(crashes, rev, error, now=now)
        notes += failure_notes
        events += failure_events
    for rev_name, own in by_revision.items():
        active = [i for i in own if i.id not in draining]
        # Prefer keeping ready instances; surplus ones drain.
        active.sort(key=lambda i: (i.id not in memory.ready, i.name))
        for inst in active[scale.get(rev_name, 0) :]:
            draining[inst.id] = now
            fields = {"service": inst.service, "revision": rev_name, "instance": inst.name}
            events.append(Event(name="instance_draining", fields=fields))
    starts: list[Start] = []
    for rev_name, want in scale.items():
        have = [i for i in by_revision.get(rev_name, []) if i.id not in draining]
        if want > len(have) and healing.backing_off(crashes, rev_name, now=now):
            continue
        starts += [_start(revisions[rev_name])] * max(want - len(have), 0)
    return Scaled(
        memory=replace(memory, crashes=crashes, draining=draining),
        running=tuple(i for i in observed.instances if i.running),
        stops=tuple(stops),
        starts=tuple(starts),
        notes=tuple(notes),
        events=tuple(events),
    )


def _start(rev: Revision) -> Start:
    return Start(revision=rev, fails_revision=rev.status == "Pending")
