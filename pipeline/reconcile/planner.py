"""One reconcile pass, decided purely: `plan(snapshot, observed, memory, now=..., rules=...)`.

The store's snapshot (desired state), what the loop observed (containers, probes, HAProxy) and
what it remembers between passes go in; a `Plan` of plain values comes out — store updates,
instances to stop and start, the data plane, drains that may end — with the memory for the next
pass. Nothing is read or written here, so a table of "state in → actions out" tests it, and
running it on the same state twice decides the same.

The phases, in order: revision status (`statuses`), recovery from crash loops and sick instances
(`healing`), scale (`scaling`, with the frozen tier), then the data plane
(`routing.build_plane`, less the routes HAProxy could not take: `rejections`) and the drains it
lets end. Order matters for zero downtime: a revision turns Ready in the same plan that puts its
instance into HAProxy and moves the route; the old revision's instances only drain then, and stop
once HAProxy has no request in flight on them (or the grace period is over). An instance drained
to be frozen is paused, not stopped, once HAProxy has it idle: a request in flight finishes first.
"""

from __future__ import annotations

from dataclasses import replace

from pipeline.core import names
from pipeline.core.records import Snapshot
from pipeline.core.revisions import config_of
from pipeline.engines.base import Instance
from pipeline.reconcile import healing, rejections, scaling, statuses
from pipeline.reconcile.actions import Plan, Stop
from pipeline.reconcile.inputs import Memory, Observed, Rules
from pipeline.reconcile.routing import build_plane


def plan(
    snapshot: Snapshot, observed: Observed, memory: Memory, *, now: float, rules: Rules
) -> Plan:
    memory = memory.settled(instances=observed.instances, passed=observed.passed)
    instances = list(observed.instances)
    known = {r.name for r in snapshot.revisions}
    unready = any(i.running and i.id not in memory.ready and i.revision in known for i in instances)
    marks, events = statuses.marks(
        snapshot,
        instances=instances,
        ready=memory.ready,
        now=now,
        readiness_timeout_s=rules.readiness_timeout_s,
    )
    snapshot = statuses.marked(snapshot, marks)

    crashes, notes = healing.recover(
        memory.crashes, snapshot, instances=instances, ready=memory.ready, now=now
    )
    sick = healing.held_down(
        memory.down_passes,
        crashes,
        checked=healing.checked(instances, ready=memory.ready, draining=memory.draining),
        down=observed.down,
        now=now,
    )
    # No drain wait for an instance HAProxy holds down: nothing reaches it.
    draining = {**memory.draining, **{i.id: now - rules.grace_s for i in sick.replace}}
    memory = replace(memory, crashes=sick.crashes, down_passes=sick.down_passes, draining=draining)

    scaled = scaling.scaled(snapshot, observed, memory, now=now, rules=rules)
    memory = scaled.memory
    plane = build_plane(
        snapshot,
        instances=scaled.running,
        ready=set(memory.ready),
        draining=set(memory.draining),
        domain=rules.domain,
        jwt=observed.jwt,
    )
    served = rejections.served(plane, snapshot, domain=rules.domain, before=memory.rejected)
    memory = replace(memory, rejected=served.rejected)
    return Plan(
        marks=tuple(marks),
        notes=(*notes, *sick.notes, *scaled.notes, *served.notes),
        stops=scaled.stops,
        starts=scaled.starts,
        thaws=scaled.thaws,
        plane=served.plane,
        drained=tuple(
            _drained(snapshot, scaled.running, observed, memory, now=now, rules=rules)
        ),
        serving=_serving(snapshot, scaled.running, memory),
        frozen=_frozen(snapshot, observed.instances, memory),
        unready=unready,
        events=(*events, *sick.events, *scaled.events, *served.events),
        memory=memory,
    )


def _serving(
    snapshot: Snapshot, running: tuple[Instance, ...], memory: Memory
) -> dict[str, tuple[str, ...]]:
    """host:port of each revision's ready instances that are not draining (for the activator)."""
    revisions = {r.name: r for r in snapshot.revisions}
    serving: dict[str, tuple[str, ...]] = {}
    for i in running:
        if i.id in memory.ready and i.id not in memory.draining and i.revision in revisions:
            port = config_of(revisions[i.revision].template, image="").port
            serving[i.revision] = (*serving.get(i.revision, ()), f"{i.address}:{port}")
    return serving


def _frozen(
    snapshot: Snapshot, instances: tuple[Instance, ...], memory: Memory
) -> dict[str, tuple[tuple[Instance, str], ...]]:
    """Per revision, its frozen instances that stay frozen, with host:port (for the activator,
    which thaws one and forwards there without waiting for a pass)."""
    revisions = {r.name: r for r in snapshot.revisions}
    frozen: dict[str, tuple[tuple[Instance, str], ...]] = {}
    for i in instances:
        if i.frozen and i.id in memory.frozen and i.revision in revisions and i.address:
            port = config_of(revisions[i.revision].template, image="").port
            frozen[i.revision] = (*frozen.get(i.revision, ()), (i, f"{i.address}:{port}"))
    return frozen


def _drained(
    snapshot: Snapshot,
    running: tuple[Instance, ...],
    observed: Observed,
    memory: Memory,
    *,
    now: float,
    rules: Rules,
) -> list[Stop]:
    """Draining instances to stop (or freeze): at once past the grace period, else once HAProxy
    has them idle (asked after the plane is applied, see `Stop.unless_busy`)."""
    revisions = {r.name: r for r in snapshot.revisions}
    stops: list[Stop] = []
    for inst in running:
        since = memory.draining.get(inst.id)
        if since is None or inst.id in observed.stopping:
            continue
        within_grace = now - since < rules.grace_s
        # Frozen only once idle; still busy past the grace period, it stops as before.
        freeze = within_grace and inst.id in memory.freezing and inst.revision in revisions
        port = config_of(revisions[inst.revision].template, image="").port if freeze else 0
        stops.append(
            Stop(
                instance=inst,
                backend=names.backend_name(inst.revision),
                server=names.server_name(inst.instance),
                unless_busy=within_grace,
                freeze=freeze,
                target=f"{inst.address}:{port}" if freeze else "",
            )
        )
    return stops
