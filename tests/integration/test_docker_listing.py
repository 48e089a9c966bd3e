"""The Docker engine's listing of instances, against the real dockerd: running, paused and exited
containers read right, and a container removed between the listing and its inspect is left out
instead of failing the whole listing (it once failed reconcile passes, deploys and traffic
changes while other services were being deleted)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import docker
import docker.errors
import docker.models.containers
import pytest

from pipeline.core import names
from pipeline.engines.docker import DockerEngine

pytestmark = pytest.mark.integration


@pytest.fixture
def platform() -> str:
    return f"listing-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def containers(
    docker_client: docker.DockerClient, busybox_image: str, platform: str
) -> Iterator[dict[str, Any]]:
    def labels(instance: str) -> dict[str, str]:
        return {
            names.LABEL_MANAGED: "true", names.LABEL_PLATFORM: platform,
            names.LABEL_SERVICE: "svc", names.LABEL_REVISION: "svc-00001",
            names.LABEL_INSTANCE: instance,
        }  # fmt: skip

    made = {
        "running": docker_client.containers.run(
            busybox_image, ["sleep", "60"], detach=True, labels=labels("i-run")
        ),
        "paused": docker_client.containers.run(
            busybox_image, ["sleep", "60"], detach=True, labels=labels("i-paused")
        ),
        "exited": docker_client.containers.run(
            busybox_image, ["sh", "-c", "exit 3"], detach=True, labels=labels("i-exited")
        ),
    }
    made["paused"].pause()
    made["exited"].wait(timeout=30)
    yield made
    for container in made.values():
        container.remove(force=True)


def test_running_paused_and_exited_instances_read_right(
    docker_client: docker.DockerClient, platform: str, containers: dict[str, Any]
) -> None:
    engine = DockerEngine(docker_client, platform=platform, network="bridge")

    listed = {i.instance: i for i in engine.list_instances()}

    assert set(listed) == {"i-run", "i-paused", "i-exited"}
    run, paused, exited = listed["i-run"], listed["i-paused"], listed["i-exited"]
    assert (run.running, run.frozen, run.exit_code) == (True, False, None)
    assert run.address and run.service == "svc" and run.revision == "svc-00001"
    assert run.id == containers["running"].id and run.name == containers["running"].name
    assert (paused.running, paused.frozen) == (True, True)
    assert (exited.running, exited.frozen, exited.exit_code) == (False, False, 3)


def test_a_container_removed_before_its_inspect_is_left_out(
    docker_client: docker.DockerClient,
    platform: str,
    containers: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = DockerEngine(docker_client, platform=platform, network="bridge")
    gone = containers["exited"].id

    def get(_self: Any, container_id: str) -> Any:  # it went between listing and inspect
        if container_id == gone:
            raise docker.errors.NotFound(f"No such container: {container_id}")
        raise AssertionError(f"only stopped containers are inspected, not {container_id}")

    # `client.containers` makes a new collection on every access: patch the class.
    monkeypatch.setattr(docker.models.containers.ContainerCollection, "get", get)

    listed = {i.instance for i in engine.list_instances()}

    assert listed == {"i-run", "i-paused"}
