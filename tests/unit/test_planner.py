"""`planner.plan` as a table: store snapshot, observed world and memory in → the plan out.

Each row states only what the plan does beyond "nothing": marks, notes, stops, starts, drains
(and, where a row is about them, what it serves or remembers). The passes these plans make up,
applied to a store and an in-process engine, are in test_reconciler.py.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from pipeline.autoscale import scaler
from pipeline.autoscale.kpa import State
from pipeline.autoscale.scaler import Load, Track
from pipeline.core.records import Revision, Snapshot
from pipeline.reconcile.actions import Plan
from pipeline.reconcile.inputs import Memory, Observed, Rules
from pipeline.reconcile.planner import plan
from tests.unit.factories import T0, instance, revision, service, snapshot

NOW = T0.timestamp() + 1
RULES = Rules(domain="localhost", readiness_timeout_s=10, grace_s=5)
V1, V2 = "hello-00001", "hello-00002"
UP = instance(V1, "a1", address="10.0.0.1")  # running; id c-a1
NEW = instance(V2, "b1", address="10.0.0.2")  # running; id c-b1
EXITED = instance(V1, "a1", running=False)  # exit code 3


def one(status: str = "Ready", **changes: Any) -> Snapshot:
    return snapshot([service("hello")], [replace(revision("hello", 1, status), **changes)])


def two(first: str = "Ready", second: str = "Ready") -> Snapshot:
    return snapshot([service("hello")], [revision("hello", 1, first), revision("hello", 2, second)])


def annotated(rev: Revision, annotations: dict[str, str]) -> Revision:
    return replace(rev, template={**rev.template, "metadata": {"annotations": annotations}})


def summary(p: Plan) -> dict[str, Any]:
    return {
        "marks": [(m.revision, m.status, m.reason) for m in p.marks],
        "notes": [(n.revision, n.reason) for n in p.notes],
        "stops": [s.instance.id for s in p.stops],
        "starts": [(s.revision.name, s.fails_revision) for s in p.starts],
        "drained": [(s.instance.id, s.unless_busy) for s in p.drained],
        "draining": dict(p.memory.draining),
        "serving": dict(p.serving),
        "routes": [(r.host, [s.backend for s in r.splits]) for r in p.plane.routes],
        "crashes": dict(p.memory.crashes),
        "down_passes": dict(p.memory.down_passes),
    }


NOTHING: dict[str, Any] = {
    "marks": [], "notes": [], "stops": [], "starts": [], "drained": [], "draining": {},
}  # fmt: skip
READY = Memory(ready=frozenset({UP.id}))
SERVING_V1 = {
    "serving": {V1: ("10.0.0.1:8080",)}, "routes": [("hello.localhost", ["rev-hello-00001"])],
}  # fmt: skip
A1_DOWN = {"rev-hello-00001": frozenset({"i-a1"})}  # HAProxy's checks hold UP's server down


@pytest.mark.parametrize(
    ("snap", "observed", "memory", "expected"),
    [
        # -- a new revision proves itself ---------------------------------------------------
        pytest.param(one("Pending"), Observed(), Memory(),
                     {"starts": [(V1, True)], "routes": []},
                     id="pending-gets-an-instance"),
        pytest.param(snapshot([service("hello")], [annotated(revision("hello", 1, "Pending"),
                              {"autoscaling.knative.dev/initial-scale": "3"})]),
                     Observed(), Memory(), {"starts": [(V1, True)] * 3},
                     id="pending-starts-its-initial-scale"),
        pytest.param(one("Pending"), Observed(instances=(UP,)), Memory(),
                     {"routes": [], "serving": {}}, id="pending-instance-not-ready-waits"),
        pytest.param(one("Pending"), Observed(instances=(UP,), passed=frozenset({UP.id})),
                     Memory(), {"marks": [(V1, "Ready", "")], **SERVING_V1},
                     id="probe-passed-turns-ready-and-routes-in-the-same-plan"),
        pytest.param(one("Pending"), Observed(instances=(EXITED,)), Memory(),
                     {"marks": [(V1, "Failed", "ExitCode")], "stops": [EXITED.id]},
                     id="exit-before-listening-fails-and-gets-no-new-instance"),
        pytest.param(one("Pending", created_at=T0.replace(year=2025)), Observed(instances=(UP,)),
                     Memory(), {"marks": [(V1, "Failed", "ReadinessTimeout")],
                                "draining": {UP.id: NOW}, "drained": [(UP.id, True)]},
                     id="never-listening-times-out-and-drains"),
        # -- steady state: level-triggered ---------------------------------------------------
        pytest.param(one(), Observed(instances=(UP,)), READY, SERVING_V1,
                     id="serving-revision-changes-nothing"),
        pytest.param(one(), Observed(), Memory(), {"starts": [(V1, False)]},
                     id="routed-revision-without-instance-gets-one"),
        # -- traffic moves: the old revision drains ---------------------------------------------
        pytest.param(two(), Observed(instances=(UP, NEW)), Memory(ready=frozenset({UP.id, NEW.id})),
                     {"draining": {UP.id: NOW}, "drained": [(UP.id, True)],
                      "routes": [("hello.localhost", ["rev-hello-00002"])]},
                     id="unrouted-revision-drains-stop-once-idle"),
        pytest.param(two(), Observed(instances=(UP, NEW)),
                     Memory(ready=frozenset({UP.id, NEW.id}), draining={UP.id: NOW - 6}),
                     {"draining": {UP.id: NOW - 6}, "drained": [(UP.id, False)]},
                     id="drain-past-grace-stops-busy-or-not"),
        pytest.param(two(), Observed(instances=(UP, NEW), stopping=frozenset({UP.id})),
                     Memory(ready=frozenset({UP.id, NEW.id}), draining={UP.id: NOW - 6}),
                     {"draining": {UP.id: NOW - 6}}, id="drain-under-way-is-not-stopped-twice"),
        pytest.param(snapshot([], []), Observed(instances=(UP,)), READY,
                     {"draining": {UP.id: NOW}, "drained": [(UP.id, True)], "routes": []},
                     id="deleted-service-drains"),
        pytest.param(snapshot([service("hello", [{"revisionName": V1, "percent": 100}])],
                              [revision("hello", 1), revision("hello", 2)]),
                     Observed(holds=frozenset({V2})), Memory(),
                     {"starts": [(V1, False), (V2, False)]},
                     id="held-revision-warms-before-traffic-moves"),
        # -- crashes ----------------------------------------------------------------------------
        pytest.param(one(), Observed(instances=(EXITED,)), READY,
                     {"notes": [(V1, "CrashLoopBackOff")], "stops": [EXITED.id],
                      "crashes": {V1: (1, NOW)}},
                     id="crash-is-counted-surfaced-and-backed-off"),
        pytest.param(one(), Observed(), Memory(crashes={V1: (1, NOW - 1.5)}),
                     {"starts": [(V1, False)], "crashes": {V1: (1, NOW - 1.5)}},
                     id="backoff-over-replaces"),
        pytest.param(one(), Observed(), Memory(crashes={V1: (2, NOW - 1.5)}), {},
                     id="second-crash-backs-off-two-seconds"),
        pytest.param(one(), Observed(instances=(EXITED,)),
                     Memory(ready=frozenset({UP.id}), draining={EXITED.id: NOW}),
                     {"stops": [EXITED.id], "starts": [(V1, False)], "crashes": {},
                      "draining": {EXITED.id: NOW}},
                     id="draining-instance-exit-is-no-crash"),
        pytest.param(one(), Observed(instances=(EXITED,), stopping=frozenset({EXITED.id})),
                     READY, {"starts": [(V1, False)], "crashes": {}},
                     id="exit-of-a-stopping-instance-is-ignored"),
        pytest.param(one(reason="CrashLoopBackOff"), Observed(instances=(UP,)),
                     Memory(ready=frozenset({UP.id}), crashes={V1: (2, NOW - 61)}),
                     {"notes": [(V1, "")], "crashes": {}}, id="a-healthy-minute-clears-the-loop"),
        # -- HAProxy holds an instance down ------------------------------------------------------
        pytest.param(one(), Observed(instances=(UP,), down=A1_DOWN),
                     READY, {"down_passes": {UP.id: 1}}, id="down-once-is-counted"),
        pytest.param(one(), Observed(instances=(UP,), down=A1_DOWN),
                     Memory(ready=frozenset({UP.id}), down_passes={UP.id: 2}),
                     # Drained at once; the start is counted like a crash (issue 18: said on
                     # the revision, and backed off 1 s so a sick revision cannot hot-loop).
                     {"draining": {UP.id: NOW - 5}, "drained": [(UP.id, False)],
                      "starts": [], "serving": {}, "notes": [(V1, "InstanceUnhealthy")],
                      "crashes": {V1: (1, NOW)}},
                     id="down-three-passes-is-replaced-at-once"),
        pytest.param(one(), Observed(instances=(UP,)), Memory(ready=frozenset({UP.id}),
                                                              down_passes={UP.id: 2}),
                     {"down_passes": {}}, id="back-up-resets-the-count"),
        # -- the autoscaler ----------------------------------------------------------------------
        pytest.param(one(template=revision("hello", 1, concurrency=10).template),
                     Observed(instances=(UP,), load={"rev-hello-00001": Load(50, 50)}), READY,
                     {"starts": [(V1, False)] * 7}, id="fifty-in-flight-at-seven-each-is-eight"),
    ],
)  # fmt: skip
def test_plan(snap: Snapshot, observed: Observed, memory: Memory, expected: dict[str, Any]) -> None:
    want = {**NOTHING, **expected}
    got = summary(plan(snap, observed, memory, now=NOW, rules=RULES))
    assert {k: got[k] for k in want} == want


def test_a_plan_applied_is_not_made_again() -> None:
    """Level-triggered: with the memory it returns, the same world plans no action."""
    snap, observed = two(), Observed(instances=(UP, NEW), passed=frozenset({NEW.id}))
    first = plan(snap, observed, READY, now=NOW, rules=RULES)
    assert summary(first)["draining"] == {UP.id: NOW}
    running = Observed(instances=(UP, NEW), stopping=frozenset({UP.id}))
    again = summary(plan(snap, running, first.memory, now=NOW, rules=RULES))
    assert {k: again[k] for k in NOTHING} == {**NOTHING, "draining": {UP.id: NOW}}


def test_plan_events_name_what_was_decided() -> None:
    p = plan(one("Pending"), Observed(instances=(EXITED,)), Memory(), now=NOW, rules=RULES)
    (event,) = p.events
    assert (event.name, event.level) == ("revision_failed", "warning")
    assert event.fields == {
        "service": "hello", "revision": V1, "build": None, "reason": "ExitCode", "exit_code": 3
    }  # fmt: skip
    assert p.marks[0].logs is not None and p.marks[0].logs.instance == EXITED


# -- a revision at rest (scale to zero): the autoscaler's step is skipped, not its decision -------
ZERO = Rules(domain="localhost", readiness_timeout_s=10, grace_s=5, allow_zero=True)
QUIET = scaler.step(Track(state=State(last_active=NOW - 1000)), template={}, ready=0, now=NOW - 1,
                    load=Load(in_flight=0, requests=4))  # fmt: skip
AT_REST = Memory(tracks={V1: QUIET})


@pytest.mark.parametrize(
    ("observed", "starts", "rested"),
    [
        pytest.param(Observed(load={"rev-hello-00001": Load(0, 4)}), [], True,
                     id="quiet-stays-at-zero-without-a-step"),
        pytest.param(Observed(load={"rev-hello-00001": Load(1, 4)}), [(V1, False)], False,
                     id="a-held-request-wakes-it"),
        # Counted but over (concurrency is the metric): stepped, and zero again.
        pytest.param(Observed(load={"rev-hello-00001": Load(0, 5)}), [], False,
                     id="a-request-since-the-last-pass-is-stepped"),
        pytest.param(Observed(load={"rev-hello-00001": Load(0, 4)}, thawed=frozenset({V1})),
                     [(V1, False)], False, id="a-thaw-is-demand"),
    ],
)  # fmt: skip
def test_a_revision_at_rest(observed: Observed, starts: list[Any], rested: bool) -> None:
    assert QUIET.last is not None and QUIET.last.desired == 0
    p = plan(one(), observed, AT_REST, now=NOW, rules=ZERO)
    assert summary(p)["starts"] == starts
    track = p.memory.tracks[V1]
    assert (track.last is QUIET.last) is rested  # rested: the KPA did not run
    assert [s.at for s in track.samples][-1] == NOW  # either way, this pass's sample is in
