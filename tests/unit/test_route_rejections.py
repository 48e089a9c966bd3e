"""One bad name never freezes routing: a route HAProxy could not take is left out of the plan's
data plane, shown on its revisions as RouteRejected, logged once, and cleared once it applies.

The states here are the ones a store can still hold from before names were matched whole and
'--' was refused in service names (a service `t--web` next to tag `t` of `web`, a tag "t\\n").
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pipeline.core.records import Snapshot
from pipeline.reconcile.actions import Plan
from pipeline.reconcile.inputs import Memory, Observed, Rules
from pipeline.reconcile.planner import plan
from pipeline.reconcile.rejections import REASON
from tests.unit.factories import T0, instance, revision, service, snapshot
from tests.unit.test_reconciler import World

NOW = T0.timestamp() + 1
RULES = Rules(domain="localhost", readiness_timeout_s=10, grace_s=5)
WEB, LEGACY, API = "web-00001", "t--web-00001", "api-00001"
UP = (
    instance(WEB, "w1", address="10.0.0.1"),
    instance(LEGACY, "l1", address="10.0.0.2"),
    instance(API, "a1", address="10.0.0.3"),
)
MEMORY = Memory(ready=frozenset(i.id for i in UP))
TAGGED = [{"latestRevision": True, "percent": 100}, {"revisionName": WEB, "tag": "t"}]


def world(web_traffic: list[dict[str, object]]) -> Snapshot:
    return snapshot(
        [service("web", web_traffic), service("t--web"), service("api")],
        [revision("web", 1), revision("t--web", 1), revision("api", 1)],
    )


def route_events(p: Plan) -> list[tuple[str, dict[str, object]]]:
    return [(e.name, dict(e.fields)) for e in p.events if e.name.startswith("route_")]


def test_a_host_two_services_claim_is_left_out_and_every_other_route_stays() -> None:
    p = plan(world(TAGGED), Observed(instances=UP), MEMORY, now=NOW, rules=RULES)

    assert [r.host for r in p.plane.routes] == ["api.localhost", "web.localhost"]
    notes = {n.revision: (n.reason, n.message) for n in p.notes}
    assert notes[WEB][0] == notes[LEGACY][0] == REASON
    assert "'t--web.localhost' is not served: service 't--web' answers on it too" in notes[WEB][1]
    assert "service 'web' answers on it too" in notes[LEGACY][1]
    assert API not in notes
    rejected = [e for e in p.events if e.name == "route_rejected"]
    assert {(e.level, e.fields["service"]) for e in rejected} == {
        ("warning", "web"), ("warning", "t--web")
    }  # fmt: skip


def test_a_rejection_is_written_and_logged_once() -> None:
    first = plan(world(TAGGED), Observed(instances=UP), MEMORY, now=NOW, rules=RULES)
    noted = {n.revision: n for n in first.notes}
    as_stored = snapshot(
        list(world(TAGGED).services),
        [replace(r, reason=n.reason, message=n.message) if (n := noted.get(r.name)) else r
         for r in world(TAGGED).revisions],
    )  # fmt: skip

    again = plan(as_stored, Observed(instances=UP), first.memory, now=NOW, rules=RULES)

    assert again.notes == ()
    assert route_events(again) == []
    assert again.plane == first.plane


def test_the_condition_clears_once_the_route_applies() -> None:
    noted = replace(revision("web", 1), reason=REASON, message="host 't--web.localhost' ...")
    fixed = snapshot([service("web", TAGGED), service("api")], [noted, revision("api", 1)])
    memory = replace(MEMORY, rejected=frozenset({"t--web.localhost"}))

    p = plan(fixed, Observed(instances=UP), memory, now=NOW, rules=RULES)

    assert [(n.revision, n.reason, n.message) for n in p.notes] == [(WEB, "", "")]
    assert route_events(p) == [("route_restored", {"host": "t--web.localhost"})]
    assert "t--web.localhost" in [r.host for r in p.plane.routes]


def test_a_tag_with_a_newline_loses_its_route_only() -> None:
    bad = [{"latestRevision": True, "percent": 100}, {"revisionName": WEB, "tag": "t\n"}]
    snap = snapshot([service("web", bad), service("api")], [revision("web", 1), revision("api", 1)])

    p = plan(snap, Observed(instances=UP), MEMORY, now=NOW, rules=RULES)

    assert [r.host for r in p.plane.routes] == ["api.localhost", "web.localhost"]
    ((rev, reason, message),) = [(n.revision, n.reason, n.message) for n in p.notes]
    assert (rev, reason) == (WEB, REASON)
    assert "'t\\n--web.localhost' is not a lowercase DNS name" in message


def test_a_revision_not_ready_yet_gets_no_condition() -> None:
    pending = snapshot(
        [service("web", TAGGED), service("t--web")],
        [revision("web", 1, "Pending"), revision("t--web", 1)],
    )

    p = plan(pending, Observed(), Memory(), now=NOW, rules=RULES)

    assert [n.revision for n in p.notes] == [LEGACY]  # its own host is still claimed twice


def test_a_pass_with_a_rejected_route_still_applies_the_rest(tmp_path: Path) -> None:
    w = World(tmp_path)
    revs = [w.deploy(svc, f"img:{svc}") for svc in ("api", "t--web", "web")]  # t--web: legacy
    w.now = max(w.store.get_revision(r).created_at.timestamp() for r in revs)
    w.reconciler.reconcile_once()
    w.listening |= {i.address for i in w.engine.list_instances()}
    w.reconciler.reconcile_once()
    spec = w.store.get_service("web").spec
    w.store.put_service("web", spec={"spec": {**spec["spec"], "traffic": TAGGED}})

    assert w.reconciler.reconcile_once() == "reloaded"

    served = [r.host for r in w.plane.planes[-1].routes]
    assert served == ["api.localhost", "web.localhost"]
    assert w.status(WEB) == ("Ready", REASON) and w.status(LEGACY) == ("Ready", REASON)
    assert w.status(API) == ("Ready", "")
    assert w.reconciler.reconcile_once() == "unchanged"
