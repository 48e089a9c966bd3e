"""Knative status in -> Slipway revision status and URLs out; the reconciler's marks, as tables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pipeline.engines.base import RevisionState, ServiceState
from pipeline.knative.reconciler import Mark, revision_updates
from pipeline.knative.status import revision_state, service_state, slipway_reason
from tests.unit.factories import revision

NOW = datetime(2026, 1, 1, tzinfo=UTC).timestamp()


def knative_revision(name: str, *conditions: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"conditions": list(conditions)}}


def cond(kind: str, status: str, reason: str = "", message: str = "") -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason, "message": message}


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        pytest.param([], ("Pending", "", ""), id="no-status-yet"),
        pytest.param([cond("Ready", "Unknown", "Deploying")], ("Pending", "", ""), id="deploying"),
        pytest.param([cond("Ready", "True")], ("Ready", "", ""), id="ready"),
        pytest.param(
            [cond("Ready", "False", "ExitCode1", "Container failed with: boom"),
             cond("ContainerHealthy", "False", "ExitCode1", "Container failed with: boom")],
            ("Failed", "ExitCode", "the container exited with code 1: Container failed with: boom"),
            id="exit-code"),
        pytest.param(
            [cond("Ready", "False", "ProgressDeadlineExceeded", "Initial scale was never achieved"),
             cond("ResourcesAvailable", "False", "ProgressDeadlineExceeded",
                  "Initial scale was never achieved")],
            ("Failed", "ReadinessTimeout", "no pod became ready within Knative's progress "
             "deadline: the app must listen on $PORT; Knative: Initial scale was never achieved"),
            id="progress-deadline"),
        pytest.param(
            [cond("Ready", "False", "ContainerMissing", "Unable to fetch image \"x\"")],
            ("Failed", "ImageNotFound", None), id="container-missing"),
        pytest.param(
            [cond("Ready", "False", "RevisionFailed", "")],
            ("Failed", "RevisionFailed", ""), id="revision-failed"),
        pytest.param(
            [cond("Ready", "False", "SomethingNew", "odd")],
            ("Failed", "SomethingNew", "Knative: odd"), id="unknown-reason-passes-through"),
    ],
)  # fmt: skip
def test_revision_state(
    conditions: list[dict[str, str]], expected: tuple[str, str, str | None]
) -> None:
    got = revision_state(knative_revision("hello-00001", *conditions))
    status, reason, message = expected
    assert (got.name, got.status, got.reason) == ("hello-00001", status, reason)
    if message is not None:
        assert got.message == message
    else:
        assert "registry" in got.message


def test_slipway_reason_negative_exit_code() -> None:
    assert slipway_reason("ExitCode-1", "") == ("ExitCode", "the container exited with code -1")


KSVC_STATUS: dict[str, Any] = {
    "metadata": {"name": "hello", "generation": 3},
    "status": {
        "observedGeneration": 3,
        "conditions": [{"type": "Ready", "status": "True"}],
        "url": "https://hello.apps.example.com",
        "latestCreatedRevisionName": "hello-00002",
        "latestReadyRevisionName": "hello-00002",
        "traffic": [
            {"revisionName": "hello-00001", "percent": 90, "latestRevision": False},
            {"revisionName": "hello-00002", "percent": 10, "latestRevision": True},
            {"tag": "commit-9f8e7d6", "revisionName": "hello-00002", "percent": 0,
             "url": "https://commit-9f8e7d6--hello.apps.example.com"},
        ],
    },
}  # fmt: skip


def test_service_state_reads_urls_from_status() -> None:
    state = service_state(KSVC_STATUS, [knative_revision("hello-00002", cond("Ready", "True"))])
    assert state.ready == "True"
    assert state.latest_ready == "hello-00002"
    assert state.urls == [
        "https://hello.apps.example.com",
        "https://commit-9f8e7d6--hello.apps.example.com",
    ]
    assert [(t.revision, t.percent, t.tag) for t in state.traffic] == [
        ("hello-00001", 90, ""),
        ("hello-00002", 10, ""),
        ("hello-00002", 0, "commit-9f8e7d6"),
    ]
    assert state.revision("hello-00002") == RevisionState(name="hello-00002", status="Ready")


def test_stale_status_is_unknown() -> None:
    stale = {**KSVC_STATUS, "metadata": {"name": "hello", "generation": 4}}
    assert service_state(stale).ready == "Unknown"


def _state(*revisions: RevisionState, ready: str = "Unknown", **kw: str) -> ServiceState:
    return ServiceState(name="hello", ready=ready, revisions=revisions, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rows", "state", "kwargs", "expected"),
    [
        pytest.param(["Ready", "Pending"],
                     _state(RevisionState(name="hello-00002", status="Ready")),
                     {}, [Mark(revision="hello-00002", status="Ready")], id="ready-copied"),
        pytest.param(
            ["Pending"],
            _state(RevisionState(name="hello-00001", status="Failed", reason="ExitCode",
                                 message="m")),
            {}, [Mark(revision="hello-00001", status="Failed", reason="ExitCode", message="m")],
            id="failure-copied"),
        pytest.param(["Pending"], _state(RevisionState(name="hello-00001", status="Pending")),
                     {}, [], id="still-pending"),
        pytest.param(["Ready"], _state(RevisionState(name="hello-00001", status="Failed")),
                     {}, [], id="final-status-never-changes"),
        pytest.param(["Pending"], _state(ready="False", reason="RevisionFailed", message="bad",
                                         latest_created="hello-00000"),
                     {}, [Mark(revision="hello-00001", status="Failed", reason="RevisionFailed",
                               message="Knative: bad")], id="knative-could-not-create-it"),
        pytest.param(["Pending", "Pending"], _state(), {},
                     [Mark(revision="hello-00001", status="Failed", reason="Superseded",
                           message="hello-00002 replaced the template before Knative created "
                           "hello-00001")], id="superseded-before-created"),
        pytest.param(["Pending"], None, {"refused": "taken"},
                     [Mark(revision="hello-00001", status="Failed", reason="NameTaken",
                           message="taken")], id="revision-name-taken"),
        pytest.param(["Pending"], None, {"now": NOW + 61, "last_error": "403"},
                     [Mark(revision="hello-00001", status="Failed", reason="ReadinessTimeout",
                           message="Knative did not report hello-00001 ready within 60s: "
                           "the cluster could not be asked: 403")], id="timeout-says-why"),
    ],
)  # fmt: skip
def test_revision_updates(
    rows: list[str], state: ServiceState | None, kwargs: dict[str, Any], expected: list[Mark]
) -> None:
    revisions = [revision("hello", n, s) for n, s in enumerate(rows, start=1)]
    args: dict[str, Any] = {"now": NOW, "readiness_timeout_s": 60.0, **kwargs}
    assert revision_updates(revisions, state, **args) == expected
