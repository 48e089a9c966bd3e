"""Pulling a secret from under a serving revision, and instances that cannot start.

On a real platform: a service deployed with `--set-secrets` keeps its secret from being deleted
(409 naming the revision) unless `--force`, which says what breaks; when it breaks, the
revision's new instances cannot start, and the starts back off with the reason on the
revision; so they do when dockerd cannot start one (its image is gone). An image whose entrypoint
does not exist fails its new revision once, with the reason in `describe`, without a loop.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import docker
import httpx
import pytest
from docker.models.containers import Container

from pipeline.core import names
from tests.integration.conftest import BUSYBOX, Slipway, httpd_app, push_image

pytestmark = pytest.mark.integration

SECRET = "vault-db"


def _logged(slipway: Slipway, event: str, revision: str) -> int:
    """How many times the control plane logged `event` for `revision`."""
    count = 0
    for line in slipway.log_path.read_text().splitlines():
        if f'"{event}"' in line and json.loads(line).get("revision") == revision:
            count += 1
    return count


def _running(slipway: Slipway, client: docker.DockerClient, revision: str) -> list[Container]:
    return [
        c for c in slipway.containers(client)
        if c.labels.get(names.LABEL_REVISION) == revision and c.status == "running"
    ]  # fmt: skip


def _wait_for_reason(slipway: Slipway, service: str, reason: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _revision(slipway, service)["reason"] != reason:
        time.sleep(0.5)
    return str(_revision(slipway, service)["reason"])


def _revision(slipway: Slipway, service: str) -> dict[str, object]:
    revisions: list[dict[str, object]] = slipway.api_get(f"/v1/services/{service}").json()[
        "revisions"
    ]
    return revisions[0]


@pytest.fixture(scope="module")
def vaulted(
    slipway: Slipway, docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """A service whose one revision reads SECRET, kept at one instance."""
    slipway.cli("secrets", "set", SECRET, "password=s3cret")
    ref = f"{slipway.env['SLIPWAY_REGISTRY']}/vaulted/app:1"
    push_image(docker_client, httpd_app(tmp_path_factory.mktemp("vaulted"), "vaulted\n"), ref)
    out = slipway.cli(
        "deploy", "vaulted", "--image", ref, "--set-secrets", f"DB_PASSWORD={SECRET}:password",
        "--min-instances", "1",
    ).stdout  # fmt: skip
    assert "vaulted-00001 ready" in out
    return "vaulted-00001"


def test_deleting_a_secret_a_serving_revision_reads_is_refused(
    slipway: Slipway, vaulted: str
) -> None:
    refused = slipway.cli("secrets", "delete", SECRET, check=False)
    api = httpx.delete(
        f"http://127.0.0.1:{slipway.api_port}/v1/secrets/{SECRET}",
        headers={"Authorization": f"Bearer {slipway.token}"},
        timeout=30,
    )

    assert refused.returncode == 1
    assert f"{vaulted} (env DB_PASSWORD)" in refused.stderr and "--force" in refused.stderr
    assert api.status_code == 409 and vaulted in api.text
    assert SECRET in slipway.cli("secrets", "list").stdout
    assert slipway.get("vaulted").text == "vaulted\n"


def test_force_deletes_and_the_broken_revision_backs_off_saying_why(
    slipway: Slipway, docker_client: docker.DockerClient, vaulted: str
) -> None:
    forced = slipway.cli("secrets", "delete", SECRET, "--force")

    assert "Deleted secret" in forced.stdout and vaulted in forced.stdout
    assert SECRET not in slipway.cli("secrets", "list").stdout

    # Its running instance is unaffected until it has to be replaced: kill it.
    (instance,) = _running(slipway, docker_client, vaulted)
    instance.kill()
    _wait_for_reason(slipway, "vaulted", "StartBackOff")
    rev = _revision(slipway, "vaulted")
    assert rev["status"] == "Ready" and rev["reason"] == "StartBackOff", rev
    assert f"secret {SECRET!r} does not exist" in str(rev["message"])
    described = slipway.cli("services", "describe", "vaulted").stdout
    assert "StartBackOff" in described and f"secret {SECRET!r} does not exist" in described

    before = _logged(slipway, "instance_start_failed", vaulted)
    time.sleep(8)
    attempts = _logged(slipway, "instance_start_failed", vaulted) - before
    assert 1 <= attempts <= 3, f"{attempts} failed start attempts in 8 s: no back-off"


def test_an_image_whose_entrypoint_does_not_exist_fails_once_with_the_reason(
    slipway: Slipway, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text(f'FROM {BUSYBOX}\nENTRYPOINT ["/no/such/entrypoint"]\n')
    ref = push_image(docker_client, tmp_path, f"{slipway.env['SLIPWAY_REGISTRY']}/noentry/app:1")

    deployed = slipway.cli("deploy", "noentry", "--image", ref, check=False)

    assert deployed.returncode == 1 and "/no/such/entrypoint" in deployed.stderr
    rev = _revision(slipway, "noentry")
    assert rev["status"] == "Failed", rev
    assert "/no/such/entrypoint" in str(rev["message"])
    described = slipway.cli("services", "describe", "noentry").stdout
    assert f"{rev['reason']}" in described and "/no/such/entrypoint" in described
    time.sleep(3)
    assert _logged(slipway, "instance_started", "noentry-00001") == 1, "no loop of starts"
    leftovers = [
        c for c in slipway.containers(docker_client)
        if c.labels.get(names.LABEL_SERVICE) == "noentry"
    ]  # fmt: skip
    assert leftovers == [], "the container that could not run is collected"


def test_a_ready_revision_whose_image_is_gone_backs_off_saying_why(
    slipway: Slipway, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    """dockerd itself refuses the start: the image is neither on the host nor in the registry."""
    registry = slipway.env["SLIPWAY_REGISTRY"]
    ref = push_image(docker_client, httpd_app(tmp_path, "fleeting\n"), f"{registry}/fleeting/app:1")
    slipway.cli("deploy", "fleeting", "--image", ref, "--min-instances", "1")
    rev = _revision(slipway, "fleeting")
    repo, digest = str(rev["image"]).removeprefix(f"{registry}/").split("@")
    (instance,) = _running(slipway, docker_client, "fleeting-00001")

    for name in (ref, str(rev["image"])):  # the first removal may take the second name too
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(name, force=True)
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(str(rev["image"]))
    gone = httpx.delete(
        f"http://{registry}/v2/{repo}/manifests/{digest}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        timeout=30,
    )
    assert gone.status_code == 202, gone.text
    instance.kill()

    reason = _wait_for_reason(slipway, "fleeting", "StartBackOff")
    rev = _revision(slipway, "fleeting")
    assert reason == "StartBackOff" and "could not be pulled" in str(rev["message"]), rev
    before = _logged(slipway, "instance_start_failed", "fleeting-00001")
    time.sleep(8)
    attempts = _logged(slipway, "instance_start_failed", "fleeting-00001") - before
    assert 1 <= attempts <= 3, f"{attempts} failed start attempts in 8 s: no back-off"
