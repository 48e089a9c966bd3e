"""Instances that fall sick while their container keeps running: one that answers 500 to
everything, one that accepts connections and never answers. HAProxy takes each out of rotation
(20 failed requests in a row, or its HTTP check on the readiness path), the reconciler replaces
it and says why on the revision (Cloud Run replaces an instance after 20 consecutive 5xx)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import docker
import pytest
import yaml

from pipeline.core import names
from tests.chaos.converge import converged
from tests.chaos.load import steady_load
from tests.integration.conftest import PYTHON, Slipway, push_image

pytestmark = pytest.mark.integration


def deploy_sick(
    slipway: Slipway, client: docker.DockerClient, folder: Path, service: str, *, sick: str
) -> None:
    folder.mkdir()
    shutil.copy(Path(__file__).with_name("sickapp.py"), folder / "app.py")
    (folder / "Dockerfile").write_text(
        f'FROM {PYTHON}\nCOPY app.py /app.py\nUSER 1000\nCMD ["python3", "/app.py"]\n'
    )
    ref = push_image(client, folder, f"{slipway.env['SLIPWAY_REGISTRY']}/{service}/app:1")
    container = {
        "image": ref,
        "env": [{"name": "SICK", "value": sick}, {"name": "GOOD", "value": "100"}],
        # An HTTP readiness probe: HAProxy's check asks the same path, so a hung instance
        # fails it even though it still accepts connections.
        "readinessProbe": {"httpGet": {"path": "/healthz"}, "timeoutSeconds": 1},
    }
    doc = folder / "service.yaml"
    doc.write_text(yaml.safe_dump({
        "apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": {"name": service},
        "spec": {"template": {"spec": {"containers": [container], "timeoutSeconds": 5}}},
    }))  # fmt: skip
    slipway.cli("services", "replace", str(doc))


def instances(slipway: Slipway, client: docker.DockerClient, service: str) -> set[str]:
    return {c.labels[names.LABEL_INSTANCE] for c in slipway.containers(client)
            if c.labels.get(names.LABEL_SERVICE) == service and c.status == "running"}  # fmt: skip


@pytest.mark.parametrize("sick", ["5xx", "hang"])
def test_sick_instance_is_taken_out_and_replaced(
    slipway: Slipway,
    docker_client: docker.DockerClient,
    python_image: str,
    tmp_path: Path,
    sick: str,
) -> None:
    service = f"sick-{sick}"
    deploy_sick(slipway, docker_client, tmp_path / "app", service, sick=sick)
    first = instances(slipway, docker_client, service)
    assert len(first) == 1

    # Sequential requests: the first 100 (and HAProxy's checks) are served well, then it falls sick.
    with steady_load(slipway, service, accept=lambda r: r.status_code == 200) as load:
        deadline = time.monotonic() + 60
        while (
            time.monotonic() < deadline and not instances(slipway, docker_client, service) - first
        ):
            time.sleep(0.5)
        replaced = instances(slipway, docker_client, service) - first
        assert replaced, f"the {sick} instance was not replaced within 60 s"
        time.sleep(2)  # the replacement serves
        streak_after = load.ok
        time.sleep(2)
    assert load.ok > streak_after, f"the replacement does not serve: {load.failures}"

    rev = slipway.api_get(f"/v1/services/{service}").json()["revisions"][0]
    assert rev["reason"] == "InstanceUnhealthy", rev
    assert "taken out of rotation" in rev["message"], rev
    if sick == "5xx":
        # Out of rotation after 20 answers of 500 in a row (a few more may be in flight).
        assert 20 <= load.longest_streak <= 25, f"{load.longest_streak} failed in a row"
    converged(slipway, docker_client, revisions={rev["name"]})
