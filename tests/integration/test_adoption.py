"""Control-plane crashes and restarts: services keep serving, owned containers are adopted,
undesired owned ones are removed, and containers Slipway does not own are never touched."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import docker
import pytest

from pipeline.core import names
from tests.integration.conftest import BUSYBOX, Slipway, write_app

pytestmark = pytest.mark.integration


def test_kill_restart_adopt(
    slipway: Slipway, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    slipway.cli("deploy", "hello", "--source", str(write_app(tmp_path / "a", body="adopt me\n")))
    serving = {c.id for c in slipway.containers(docker_client)}
    assert len(serving) == 1

    # A container that is not Slipway's, and one that carries this platform's labels but belongs
    # to no revision the database wants (as if left behind by a crash mid-deploy).
    foreign = docker_client.containers.run(BUSYBOX, ["sleep", "600"], detach=True,
                                           labels={"purpose": "not-slipway"})  # fmt: skip
    orphan = docker_client.containers.run(
        BUSYBOX, ["sleep", "600"], detach=True, network=slipway.network,
        labels=names.instance_labels(platform=slipway.platform_id, service="hello",
                                     revision="hello-00099", instance="dead01"),
    )  # fmt: skip
    try:
        slipway.kill()
        # Killing the control plane leaves running services serving (HAProxy is its own daemon).
        for _ in range(20):
            assert slipway.get("hello").text == "adopt me\n"

        slipway.start()

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ids = {c.id for c in slipway.containers(docker_client)}
            if orphan.id not in ids:
                break
            time.sleep(0.5)
        assert ids == serving, "the serving instance was adopted, the orphan removed"
        assert slipway.get("hello").text == "adopt me\n"
        foreign.reload()
        assert foreign.status == "running", "a container Slipway does not own was touched"
    finally:
        foreign.remove(force=True)
        with contextlib.suppress(docker.errors.NotFound):
            orphan.remove(force=True)
