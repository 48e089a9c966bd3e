"""How many instances each revision gets this pass, and so which start, drain and are collected.

Decided purely in `planner.plan`, after revision status and healing. A revision routed (or
Pending, or held by the deployer ahead of a traffic move) wants instances: a Pending one its
initial scale, a Ready one the KPA's decision on HAProxy's figures. Surplus instances drain, the
not-ready ones first; missing ones start, unless the revision is backing off a crash loop or
failed starts. Exited instances are collected (a crash, if their revision was Ready).

Below running there is a frozen tier (`autoscale.freezing` decides): at zero one ready instance
drains and is then paused, not stopped; wanted again, it is thawed instead of a start.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pipeline.autoscale import freezing, scaler
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
    thaws: tuple[Instance, ...]
    notes: tuple[Note, ...]
    events: tuple[Event, ...]


def wanted(
    snapshot: Snapshot, observed: Observed, memory: Memory, *, now: float, rules: Rules
) -> tuple[dict[str, int], set[str], Memory, list[Event]]:
    """Instances per revision, the revisions routed or held (zero for them is the autoscaler's:
    idle), and the autoscaler's memory after this pass's figures."""
    scale = desired_scale(snapshot)
    held = observed.holds & set(scale)
    for name in held:
        scale[name] = max(scale[name], 1)
    routed = {name for name, want in scale.items() if want > 0}
    revisions = {r.name: r for r in snapshot.revisions}
    tracks = dict(memory.tracks)
    decided = dict(memory.decided)
    events: list[Event] = []
    serving: dict[str, int] = {}  # ready instances per revision, counted in one walk
    for i in observed.instances:
        if i.id in memory.ready and i.id not in memory.draining and not i.frozen:
            serving[i.revision] = serving.get(i.revision, 0) + 1
    for name, want in scale.items():
        rev = revisions[name]
        if want == 0:
            continue
        if rev.status == "Pending":
            scale[name] = scaler.initial_scale(rev.template)
            continue
        ready = serving.get(name, 0)
        load = observed.load.get(names.backend_name(name))
        track = tracks.get(name)
        if name not in observed.thawed and scaler.resting(track, load=load, ready=ready):
            assert track is not None  # resting: it has one
            # Zero again, decided without the KPA: most idle revisions, most passes.
            tracks[name] = scaler.rest(track, now=now)
            scale[name] = scaler.desired(track, floor=rules.floor)
            continue
        tracks[name] = track = scaler.step(
            track,
            template=rev.template,
            load=scaler.with_demand(load) if name in observed.thawed else load,
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
    return scale, routed, replace(memory, tracks=kept, decided=known), events


def scaled(
    snapshot: Snapshot, observed: Observed, memory: Memory, *, now: float, rules: Rules
) -> Scaled:
    scale, routed, memory, events = wanted(snapshot, observed, memory, now=now, rules=rules)
    revisions = {r.name: r for r in snapshot.revisions}
    crashes, draining = memory.crashes, dict(memory.draining)
    stops: list[Stop] = []
    notes: list[Note] = []
    by_revision: dict[str, list[Instance]] = {}
    frozen_by: dict[str, list[Instance]] = {}
    for inst in observed.instances:
        if inst.running and inst.frozen:
            frozen_by.setdefault(inst.revision, []).append(inst)
            continue
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
    tiers = _tiers(
        revisions, observed, replace(memory, draining=draining), scale=scale, routed=routed,
        by_revision=by_revision, frozen_by=frozen_by, now=now, freeze=rules.freeze,
    )  # fmt: skip
    draining, memory = dict(tiers.memory.draining), tiers.memory
    stops += tiers.stops
    events += tiers.events
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
        have += [i for i in tiers.thaws if i.revision == rev_name]
        if want > len(have) and healing.backing_off(crashes, rev_name, now=now):
            continue
        if want > len(have):
            starts += [_start(revisions[rev_name])] * (want - len(have))
    return Scaled(
        memory=replace(memory, crashes=crashes, draining=draining),
        running=tuple(i for i in observed.instances if i.running and not i.frozen),
        stops=tuple(stops),
        starts=tuple(starts),
        thaws=tiers.thaws,
        notes=tuple(notes),
        events=tuple(events),
    )


@dataclass(frozen=True, kw_only=True)
class Tiers:
    memory: Memory  # draining, freezing and frozen as the freezing decisions leave them
    thaws: tuple[Instance, ...]
    stops: tuple[Stop, ...]  # frozen instances past their retention (or memory is low)
    events: tuple[Event, ...]


def _tiers(
    revisions: dict[str, Revision],
    observed: Observed,
    memory: Memory,
    *,
    scale: dict[str, int],
    routed: set[str],
    by_revision: dict[str, list[Instance]],
    frozen_by: dict[str, list[Instance]],
    now: float,
    freeze: bool,
) -> Tiers:
    """Per revision, `freezing.choose`: an idle one's instance to freeze, freezing ones taken
    back, frozen ones thawed or stopped. Runs before surplus instances drain."""
    draining, freezing_ids = dict(memory.draining), set(memory.freezing)
    frozen: dict[str, float] = {}
    thaws: list[Instance] = []
    stops: list[Stop] = []
    events: list[Event] = []
    for rev_name in sorted(set(by_revision) | set(frozen_by)):
        own = by_revision.get(rev_name, [])
        active = sorted((i for i in own if i.id not in draining),
                        key=lambda i: (i.id not in memory.ready, i.name))  # fmt: skip
        iced = {i.id: i for i in frozen_by.get(rev_name, [])}
        since = {k: memory.frozen.get(k, now) for k in iced}
        rev = revisions.get(rev_name)
        choice = freezing.choose(
            freezing.Idle(
                active=tuple(i.id for i in active), ready=memory.ready, frozen=since,
                freezing=tuple(i.id for i in own if i.id in freezing_ids
                               and i.id not in observed.stopping),
            ),
            want=scale.get(rev_name, 0), routed=rev_name in routed,
            retention_s=freezing.retention_s(rev.template) if rev and freeze else 0.0,
            low_memory=observed.low_memory, now=now,
        )  # fmt: skip
        by_id = {i.id: i for i in own}
        for key in choice.reclaim:
            draining.pop(key, None)
            freezing_ids.discard(key)
        if choice.freeze is not None:
            draining[choice.freeze] = now
            freezing_ids.add(choice.freeze)
            events.append(_event("instance_freezing", by_id[choice.freeze]))
        thaws += [iced[k] for k in choice.thaw]
        stops += [Stop(instance=iced[k]) for k in choice.stop]
        events += [_event("instance_thawing", iced[k]) for k in choice.thaw]
        events += [_event("frozen_instance_stopping", iced[k]) for k in choice.stop]
        frozen.update({k: v for k, v in since.items() if k not in choice.stop + choice.thaw})
    return Tiers(
        memory=replace(memory, draining=draining, freezing=frozenset(freezing_ids), frozen=frozen),
        thaws=tuple(thaws), stops=tuple(stops), events=tuple(events),
    )  # fmt: skip


def _event(name: str, inst: Instance) -> Event:
    fields = {"service": inst.service, "revision": inst.revision, "instance": inst.name}
    return Event(name=name, fields=fields)


def _start(rev: Revision) -> Start:
    return Start(revision=rev, fails_revision=rev.status == "Pending")
