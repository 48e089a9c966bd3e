"""Routes the data plane leaves out, shown where the user looks: decided purely.

`dataplane.checks.sift` leaves out a route HAProxy would reject (a host that is no DNS name, a
host two services claim), so that one bad name never freezes routing for every other service.
This phase of `planner.plan` makes each rejection visible: a `RouteRejected` condition on the
Ready revisions the route would send traffic to (what `describe` shows, and what the deployer
checks before it reports a revision ready), cleared once the route applies again, and one log
line when a host starts or stops being rejected.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.core import names
from pipeline.core.records import Revision, Snapshot
from pipeline.dataplane.checks import Rejected, sift
from pipeline.dataplane.model import DataPlane
from pipeline.reconcile.actions import Event, Note

REASON = "RouteRejected"


@dataclass(frozen=True, kw_only=True)
class Served:
    plane: DataPlane  # what HAProxy is given: every route it can take
    notes: tuple[Note, ...] = ()
    events: tuple[Event, ...] = ()
    rejected: frozenset[str] = frozenset()  # hosts left out, remembered for the next pass


def served(plane: DataPlane, snapshot: Snapshot, *, domain: str, before: frozenset[str]) -> Served:
    """The plane HAProxy can take, the conditions that say what was left out, and the log lines
    for hosts rejected or restored since the last pass (`before`)."""
    result = sift(plane, domain=domain)
    hosts = frozenset(r.route.host for r in result.rejected)
    events = [_rejected_event(r) for r in result.rejected if r.route.host not in before]
    events += [
        Event(name="route_restored", fields={"host": host}) for host in sorted(before - hosts)
    ]
    return Served(
        plane=result.plane,
        notes=tuple(_notes(snapshot.revisions, result.rejected)),
        events=tuple(events),
        rejected=hosts,
    )


def _message(rejected: Rejected) -> str:
    return f"host {rejected.route.host!r} is not served: {rejected.why}"


def _notes(revisions: Iterable[Revision], rejected: Iterable[Rejected]) -> list[Note]:
    """A condition on each Ready revision a rejected route points at; cleared when none does."""
    by_backend = {names.backend_name(r.name): r for r in revisions}
    wanted: dict[str, list[str]] = {}
    for rejection in rejected:
        for split in rejection.route.splits:
            rev = by_backend.get(split.backend)
            if rev is not None and rev.status == "Ready":
                wanted.setdefault(rev.name, []).append(_message(rejection))
    notes: list[Note] = []
    for rev in by_backend.values():
        if rev.name in wanted:
            text = "; ".join(dict.fromkeys(wanted[rev.name]))
            if (rev.reason, rev.message) != (REASON, text):
                notes.append(Note(revision=rev.name, reason=REASON, message=text))
        elif rev.reason == REASON:
            notes.append(Note(revision=rev.name, reason="", message=""))
    return notes


def _rejected_event(rejected: Rejected) -> Event:
    fields = {"service": rejected.route.service, "host": rejected.route.host, "why": rejected.why}
    return Event(name="route_rejected", level="warning", fields=fields)
