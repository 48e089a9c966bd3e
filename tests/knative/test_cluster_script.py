"""`scripts/cluster up` brings back a cluster left in a state it cannot apply to by itself.

Knative's webhook validates every ConfigMap `up` applies and fails closed. A webhook Deployment
scaled to 0 (`kubectl scale`, here through the API server) stays at 0 across `down` and `up`,
because Knative's manifests leave replicas unset: every later `up` was refused until it gave up
(CI failed so, on a copy of a machine where it had been done by hand).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client as k8s

from tests.knative.conftest import Cluster, _cluster, eventually

NS = "knative-serving"


def _replicas(apps: k8s.AppsV1Api) -> tuple[int, int]:
    d = apps.read_namespaced_deployment("webhook", NS)
    ready = d.status.ready_replicas if d.status else 0
    return int(d.spec.replicas or 0), int(ready or 0)


def test_up_scales_a_webhook_scaled_to_zero_back_and_finishes(
    cluster: Cluster, kube: k8s.ApiClient, tmp_path: Path
) -> None:
    apps = k8s.AppsV1Api(kube)
    core = k8s.CoreV1Api(kube)
    apps.patch_namespaced_deployment_scale("webhook", NS, {"spec": {"replicas": 0}})
    try:
        eventually(
            "the webhook's pods gone",
            lambda: not core.list_namespaced_pod(NS, label_selector="app=webhook").items,
            timeout_s=120,
        )
        log = tmp_path / "up.log"
        result = _cluster("up", log, timeout_s=900)
        out = log.read_text()
        assert result.returncode == 0, "scripts/cluster up failed:\n" + out[-4000:]
        assert "Knative's webhook was scaled to 0: scaling it back to 1" in out, out[-2000:]
        spec, ready = _replicas(apps)
        assert (spec, ready) == (1, 1), f"webhook replicas {spec}, ready {ready}"
    finally:
        if _replicas(apps)[0] == 0:  # the rest of the tier needs its webhook
            apps.patch_namespaced_deployment_scale("webhook", NS, {"spec": {"replicas": 1}})


@pytest.fixture(autouse=True)
def _webhook_answers_before(cluster: Cluster, kube: k8s.ApiClient) -> None:
    """The test starts from a webhook that serves, so its own scale-down is what it measures."""
    apps = k8s.AppsV1Api(kube)
    eventually("Knative's webhook ready", lambda: _replicas(apps) == (1, 1), timeout_s=300)
