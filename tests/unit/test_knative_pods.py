"""A revision's pods read before Knative's condition says anything (`status.pods_state`), and
what the reconciler makes of it (`revision_updates(pods=...)`).

Found on the real cluster (tests/knative/test_failures.py): Knative reconciles a revision when
its Deployment changes, and a crash-looping pod does not change it, so an app that exits got its
`ExitCode3` condition only at the progress deadline (600 s by default); Slipway had long failed
it as `ReadinessTimeout`, "the app must listen on $PORT". The container statuses below have the
shape kubelet v1.34 reported for Knative v0.50.0's revision pods there.
"""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.engines.base import RevisionState, ServiceState
from pipeline.knative.reconciler import Mark, revision_updates
from pipeline.knative.status import pods_state
from tests.unit.factories import revision


def rs(status: str, reason: str = "", message: str = "") -> RevisionState:
    return RevisionState(name="hello-00001", status=status, reason=reason, message=message)  # type: ignore[arg-type]


def mark(status: str, reason: str = "", message: str = "") -> Mark:
    return Mark(revision="hello-00001", status=status, reason=reason, message=message)


QUEUE = {"name": "queue-proxy", "state": {"running": {"startedAt": "2026-12-01T09:07:43Z"}}}


def pod(user: dict[str, Any], *, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "hello-00001-deployment-66596758c9-smcvr"}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T09:08:00Z"
    status = {"containerStatuses": [QUEUE, {"name": "user-container", **user}]}
    return {"metadata": meta, "status": status}


EXITED_ONCE = {
    "lastState": {},
    "restartCount": 0,
    "state": {"terminated": {"exitCode": 3, "message": "dbg exiting\n", "reason": "Error"}},
}
CRASH_LOOP = {
    "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
    "restartCount": 3,
    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting"}},
}
PULL_BACKOFF = {
    "lastState": {},
    "state": {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "x"'}},
}
RUNNING = {"lastState": {}, "state": {"running": {"startedAt": "2026-12-01T09:07:43Z"}}}


@pytest.mark.parametrize(
    ("pods", "expected"),
    [
        pytest.param([pod(EXITED_ONCE)],
                     rs("Failed", "ExitCode",
                                   "the container exited with code 3: dbg exiting"),
                     id="exited-before-any-restart"),
        pytest.param([pod(CRASH_LOOP)],
                     rs("Failed", "ExitCode",
                                   "the container exited with code 1: Error"),
                     id="crash-loop"),
        pytest.param([pod(PULL_BACKOFF)],
                     rs("Pending", "ImageNotFound",
                                   "the nodes could not pull the image; "
                                   'Knative: Back-off pulling image "x"'),
                     id="image-pull-is-pending-with-a-reason"),
        pytest.param([pod(RUNNING)], None, id="starting"),
        pytest.param([pod(EXITED_ONCE, deleting=True)], None, id="pod-told-to-stop"),
        pytest.param([], None, id="no-pod-yet"),
    ],
)  # fmt: skip
def test_pods_state(pods: list[dict[str, Any]], expected: RevisionState | None) -> None:
    assert pods_state("hello-00001", pods) == expected


CREATED = revision("hello", 1, "Pending").created_at.timestamp()
KNATIVE_PENDING = ServiceState(name="hello", ready="Unknown", revisions=(rs("Pending"),))


@pytest.mark.parametrize(
    ("seen", "now", "expected"),
    [
        pytest.param(rs("Failed", "ExitCode", "exited with code 3"),
                     CREATED + 5,
                     [mark("Failed", "ExitCode", "exited with code 3")],
                     id="exited-fails-at-once"),
        pytest.param(rs("Pending", "ImageNotFound", "could not pull"),
                     CREATED + 5, [], id="pulling-waits"),
        pytest.param(rs("Pending", "ImageNotFound", "could not pull"),
                     CREATED + 61,
                     [mark("Failed", "ImageNotFound",
                           "Knative did not report hello-00001 ready within 60s: could not pull")],
                     id="pulling-explains-the-timeout"),
    ],
)  # fmt: skip
def test_revision_updates_use_the_pods(
    seen: RevisionState, now: float, expected: list[Mark]
) -> None:
    rows = [revision("hello", 1, "Pending")]
    marks = revision_updates(
        rows, KNATIVE_PENDING, now=now, readiness_timeout_s=60.0, pods={seen.name: seen}
    )
    assert marks == expected


def test_knatives_own_condition_wins_over_the_pods() -> None:
    ready = ServiceState(name="hello", ready="True", revisions=(rs("Ready"),))
    seen = rs("Failed", "ExitCode", "exited")
    marks = revision_updates(
        [revision("hello", 1, "Pending")], ready, now=CREATED + 1, readiness_timeout_s=60.0,
        pods={"hello-00001": seen},
    )  # fmt: skip
    assert marks == [mark("Ready", "", "")]
