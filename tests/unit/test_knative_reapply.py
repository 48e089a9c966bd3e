"""Re-applying a Knative Service whose template (revision name) is unchanged: the template the
cluster holds goes back as it is (`render.keep_live_template`).

Found on the real cluster (tests/knative/test_deploy.py, the 90/10 split): Knative's webhook
defaults a template only when its name is new, so re-sending Slipway's rendered template on a
traffic edit dropped `containers[0].name` and the `readinessProbe` the webhook had filled in, and
Knative refused the Service: "Saw the following changes without a name change". The live
templates below are what Knative v0.50.0 stored for Slipway's first apply.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pipeline.knative.render import keep_live_template


def _ksvc(template_name: str, *, defaulted: bool, traffic: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = {"image": "127.0.0.1:5000/hello@sha256:" + "1" * 64}
    if defaulted:
        container |= {
            "name": "user-container",
            "readinessProbe": {"successThreshold": 1, "tcpSocket": {"port": 0}},
            "resources": {},
        }
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "hello", "namespace": "ns"},
        "spec": {
            "template": {
                "metadata": {"name": template_name, "labels": {"slipway.dev/service": "hello"}},
                "spec": {
                    "containerConcurrency": 0,
                    "timeoutSeconds": 300,
                    "containers": [container],
                },
            },
            "traffic": traffic,
        },
    }


SPLIT = [
    {"revisionName": "hello-00001", "percent": 90, "latestRevision": False},
    {"revisionName": "hello-00002", "percent": 10, "latestRevision": False},
]
ALL_ONE = [{"revisionName": "hello-00001", "percent": 100, "latestRevision": False}]


def test_same_revision_name_sends_the_live_template_with_the_new_traffic() -> None:
    rendered = _ksvc("hello-00002", defaulted=False, traffic=SPLIT)
    live = _ksvc("hello-00002", defaulted=True, traffic=ALL_ONE)
    before = copy.deepcopy(rendered)
    out = keep_live_template(rendered, live)
    assert out["spec"]["template"] == live["spec"]["template"]
    assert out["spec"]["traffic"] == SPLIT  # what changed is still sent
    assert out["metadata"] == rendered["metadata"]
    assert rendered == before  # pure: the rendered manifest is not touched


@pytest.mark.parametrize(
    "live",
    [
        pytest.param(None, id="no-service-yet"),
        pytest.param(_ksvc("hello-00001", defaulted=True, traffic=ALL_ONE), id="new-revision"),
        pytest.param({"metadata": {"name": "hello"}, "spec": {}}, id="live-without-template"),
    ],
)
def test_a_new_revision_name_sends_the_rendered_template(live: dict[str, Any] | None) -> None:
    rendered = _ksvc("hello-00002", defaulted=False, traffic=SPLIT)
    assert keep_live_template(rendered, live) == rendered


def test_a_spec_the_webhook_refuses_fails_the_newest_revision_at_once() -> None:
    """Knative's validating webhook answers 400 for good (tests/knative/test_failures.py: a
    progress deadline that is not a duration): the revision fails as InvalidSpec with the
    webhook's words, instead of waiting out the readiness timeout as "could not be asked"."""
    from pipeline.knative.reconciler import Mark, revision_updates
    from tests.unit.factories import revision

    rows = [revision("hello", 1, "Ready"), revision("hello", 2, "Pending")]
    why = "the cluster refused services.serving.knative.dev 'hello': admission webhook denied"
    marks = revision_updates(
        rows, None, now=rows[1].created_at.timestamp() + 1, readiness_timeout_s=60.0,
        refused=why, refused_reason="InvalidSpec",
    )  # fmt: skip
    assert marks == [
        Mark(revision="hello-00002", status="Failed", reason="InvalidSpec", message=why)
    ]
