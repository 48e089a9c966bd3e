"""`-o json|yaml` and piped tables against a real control plane: `services describe -o yaml` is a
Knative Service that `services replace` takes back unchanged, and an edit to it is a new revision.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import docker
import pytest
import yaml

from tests.integration.conftest import ROOT, Slipway, push_image, write_app

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def image(
    slipway: Slipway, docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """An image with a long name, so that a table row is longer than any terminal."""
    app = write_app(tmp_path_factory.mktemp("app"), body="round trip\n")
    long_repo = "a-team-with-a-rather-long-name/" * 4 + "hello"
    return push_image(docker_client, app, f"{slipway.env['SLIPWAY_REGISTRY']}/{long_repo}:v1")


@pytest.fixture(scope="module")
def deployed(slipway: Slipway, image: str) -> str:
    slipway.cli("secrets", "set", "db", "password=s3cr3t")
    slipway.cli("deploy", "trip", "--image", image, "--set-secrets", "DB=db:password",
                "--env", "MODE=first")  # fmt: skip
    return "trip"


def test_describe_yaml_round_trips_through_replace(
    slipway: Slipway, deployed: str, tmp_path: Path
) -> None:
    exported = slipway.cli("services", "describe", deployed, "-o", "yaml").stdout
    document = yaml.safe_load(exported)
    assert list(document) == ["apiVersion", "kind", "metadata", "spec"]  # no status
    assert (document["apiVersion"], document["kind"]) == ("serving.knative.dev/v1", "Service")
    assert document["metadata"]["name"] == deployed
    file = tmp_path / "trip.yaml"
    file.write_text(exported)

    again = slipway.cli("services", "replace", str(file)).stdout
    assert f"{deployed}-00001 unchanged" in again
    assert slipway.cli("services", "describe", deployed, "-o", "yaml").stdout == exported

    container = document["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [*container.get("env", []), {"name": "COLOR", "value": "blue"}]
    file.write_text(yaml.safe_dump(document, sort_keys=False))
    edited = slipway.cli("services", "replace", str(file)).stdout
    assert f"{deployed}-00002 ready" in edited
    view = slipway.api_get(f"/v1/services/{deployed}").json()
    assert view["traffic"] == [{"revision": f"{deployed}-00002", "percent": 100}]
    assert slipway.get(deployed).text == "round trip\n"


def test_lists_answer_json_and_yaml_from_the_real_api(slipway: Slipway, deployed: str) -> None:
    def parsed(*args: str) -> object:
        output = slipway.cli(*args).stdout
        return json.loads(output) if args[-1] == "json" else yaml.safe_load(output)

    services = parsed("services", "list", "-o", "json")
    assert isinstance(services, list) and deployed in [s["name"] for s in services]
    revisions = parsed("revisions", "list", deployed, "--output", "yaml")
    assert isinstance(revisions, list) and revisions[-1]["name"] == f"{deployed}-00001"
    assert parsed("secrets", "list", "-o", "yaml") == [
        {"name": "db", "version": 1, "keys": ["password"]}
    ]
    keys = parsed("keys", "list", "-o", "json")
    assert isinstance(keys, list) and [k["signing"] for k in keys] == [True]
    assert parsed("builds", "list", "-o", "json") == []  # an image deploy builds nothing
    assert parsed("domains", "list", "-o", "yaml") == []
    assert isinstance(parsed("domains", "certs", "-o", "json"), list)
    described = parsed("services", "describe", deployed, "-o", "json")
    assert isinstance(described, dict) and described["name"] == deployed


def test_piped_tables_are_not_cut(slipway: Slipway, deployed: str, image: str) -> None:
    """The real command, stdout a pipe, COLUMNS narrow: every row whole on one line."""
    env = {**slipway.env, "SLIPWAY_URL": slipway.url, "SLIPWAY_TOKEN": slipway.token,
           "COLUMNS": "40"}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "services", "describe", deployed],
        env=env, capture_output=True, stdin=subprocess.DEVNULL,
        text=True, timeout=60, cwd=ROOT, check=True,
    )  # fmt: skip
    newest = slipway.api_get(f"/v1/services/{deployed}").json()["revisions"][0]
    pinned = newest["image"]
    assert pinned.startswith(image.rsplit(":", 1)[0] + "@sha256:") and len(pinned) > 150
    rows = [line.split() for line in result.stdout.splitlines() if pinned in line]
    assert rows and rows[0][:2] == [newest["name"], "Ready"], result.stdout
