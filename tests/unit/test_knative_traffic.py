"""A traffic edit the cluster refuses: how Knative's Service status says so (`status.
traffic_outcome`, a table), and what the edit does then (`Edits`, real SQLite store): the
previous split is stored back and the refusal is the answer. The real cluster's refusal is in
tests/knative/test_traffic_refused.py; here the reconciler (or, for the Knative reconciler,
its engine) is a stand-in told to refuse."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.core import traffic
from pipeline.core.errors import Conflict, InvalidSpec, SlipwayError, Unavailable
from pipeline.engines.base import ServiceState
from pipeline.knative.reconciler import KnativeReconciler
from pipeline.knative.status import TrafficOutcome, traffic_outcome
from tests.unit.test_rollout import Deploys

LATEST = {"latestRevision": True, "percent": 100}
SPLIT = [
    {"revisionName": "web-00001", "latestRevision": False, "percent": 90},
    {"revisionName": "web-00002", "latestRevision": False, "percent": 10, "tag": "canary"},
]
MISSING = {
    "type": "RoutesReady",
    "status": "False",
    "reason": "RevisionMissing",
    "message": 'Revision "web-00001" referenced in traffic not found.',
}


def ksvc(
    spec: list[dict[str, Any]],
    served: list[dict[str, Any]],
    *,
    generation: int = 2,
    observed: int = 2,
    conditions: list[dict[str, Any]] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "generation": generation},
        "spec": {"traffic": spec},
        "status": {
            "observedGeneration": observed,
            "conditions": list(conditions),
            "traffic": served,
        },
    }


def resolved(targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What Knative's status shows for `targets`: a latest target names its revision too."""
    return [{"revisionName": "web-00002", **t} if t.get("latestRevision") else t for t in targets]


@pytest.mark.parametrize(
    ("obj", "outcome", "words"),
    [
        pytest.param(ksvc(SPLIT, resolved(SPLIT)), "taken", "", id="split-served"),
        pytest.param(ksvc([LATEST], resolved([LATEST])), "taken", "", id="latest-served"),
        pytest.param(ksvc(SPLIT, [LATEST]), "pending", "", id="route-not-caught-up"),
        pytest.param(
            ksvc(SPLIT, resolved(SPLIT), observed=1), "pending", "", id="generation-not-observed"
        ),
        pytest.param(
            ksvc(SPLIT, resolved([LATEST]), conditions=[MISSING]),
            "refused",
            "RevisionMissing: the cluster has no revision of that name",
            id="revision-missing",
        ),
        pytest.param(
            ksvc(SPLIT, resolved([LATEST]), observed=1, conditions=[MISSING]),
            "pending",
            "",
            id="stale-refusal-of-an-older-generation",
        ),
        pytest.param(None, "pending", "", id="no-service"),
    ],
)
def test_knatives_answer_to_a_traffic_split(
    obj: dict[str, Any] | None, outcome: str, words: str
) -> None:
    got, message = traffic_outcome(obj)
    assert got == outcome
    assert words in message
    if outcome == "refused":
        assert 'Knative: Revision "web-00001" referenced in traffic not found.' in message


class Refusing(Deploys):
    def __init__(self, tmp: Path, why: str) -> None:
        super().__init__(tmp)
        self.reconciler.refusal = lambda service, *, timeout_s=30.0: why  # type: ignore[method-assign]


def test_a_refused_traffic_edit_answers_why_and_keeps_the_split(tmp_path: Path) -> None:
    why = "RevisionMissing: the cluster has no revision of that name"
    deploys = Refusing(tmp_path, why)
    deploys.deploy("web")
    before = deploys.store.get_service("web").spec["spec"]["traffic"]

    with pytest.raises(Conflict) as refused:
        deploys.edits.set_traffic("web", traffic.Change(set_tags={"canary": "web-00001"}))

    assert refused.value.message == (
        f"the cluster refused the traffic edit of 'web', traffic unchanged: {why}"
    )
    assert deploys.store.get_service("web").spec["spec"]["traffic"] == before


def test_a_traffic_edit_the_runtime_takes_is_stored(tmp_path: Path) -> None:
    deploys = Refusing(tmp_path, "")
    deploys.deploy("web")

    deploys.edits.set_traffic("web", traffic.Change(set_tags={"canary": "web-00001"}))

    stored = deploys.store.get_service("web").spec["spec"]["traffic"]
    assert {"revisionName": "web-00001", "tag": "canary"}.items() <= next(
        t for t in stored if t.get("tag")
    ).items(), stored


class Engine:
    """The Knative engine as the reconciler sees it (`KnativeServices`): its apply raises
    `refuses` (the cluster's admission said no) and its Route answers `outcome`."""

    def __init__(self) -> None:
        self.refuses: SlipwayError | None = None
        self.outcome: tuple[TrafficOutcome, str] = ("taken", "")

    def manifests(self, **_: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return {"spec": {"template": {"metadata": {"name": "web-00001"}}}}, []

    def apply_service(self, **_: Any) -> ServiceState:
        if self.refuses is not None:
            raise self.refuses
        return ServiceState(name="web", ready="Unknown")

    def service_state(self, name: str) -> ServiceState | None:
        return None  # as if gone: every pass applies

    def pods_state(self, revision: str) -> None:
        return None

    def traffic_outcome(self, name: str) -> tuple[TrafficOutcome, str]:
        return self.outcome

    def list_services(self) -> list[str]:
        return ["web"]

    def delete_service(self, name: str) -> None:
        raise AssertionError("nothing is deleted here")


@pytest.fixture
def knative(tmp_path: Path) -> tuple[KnativeReconciler, Engine]:
    deploys = Deploys(tmp_path)
    deploys.deploy("web")
    engine = Engine()
    reconciler = KnativeReconciler(
        store=deploys.store, engine=engine, readiness_timeout_s=60, clock=time.time
    )
    return reconciler, engine


WEBHOOK = (
    'the cluster refused services.serving.knative.dev \'web\': admission webhook '
    '"validation.webhook.serving.knative.dev" denied the request'
)


@pytest.mark.parametrize(
    ("refuses", "outcome", "answer"),
    [
        pytest.param(None, ("taken", ""), "", id="taken"),
        pytest.param(InvalidSpec(WEBHOOK), ("taken", ""), WEBHOOK, id="admission-refused"),
        pytest.param(Conflict("not ours"), ("taken", ""), "not ours", id="object-not-ours"),
        pytest.param(None, ("refused", "RevisionMissing: gone"), "RevisionMissing: gone",
                     id="route-refused"),
        pytest.param(None, ("pending", ""), "", id="route-silent-until-the-timeout"),
        pytest.param(Unavailable("API server down"), ("pending", ""), "",
                     id="cluster-unreachable-is-no-refusal"),
    ],
)  # fmt: skip
def test_the_reconcilers_answer_to_a_stored_split(
    knative: tuple[KnativeReconciler, Engine],
    refuses: SlipwayError | None,
    outcome: tuple[TrafficOutcome, str],
    answer: str,
) -> None:
    reconciler, engine = knative
    engine.refuses, engine.outcome = refuses, outcome
    reconciler.reconcile_once()
    assert reconciler.refusal("web", timeout_s=0.3) == answer


def test_a_refusal_is_forgotten_once_an_apply_goes_through(
    knative: tuple[KnativeReconciler, Engine],
) -> None:
    reconciler, engine = knative
    engine.refuses = InvalidSpec(WEBHOOK)
    reconciler.reconcile_once()
    engine.refuses = None  # the previous split, stored back
    reconciler.reconcile_once()
    assert reconciler.refusal("web", timeout_s=0.3) == ""
