"""Self-healing on the real engine: crash loops back off and say so; instances HAProxy's checks
mark down are taken out of rotation and replaced."""

from __future__ import annotations

import time
from pathlib import Path

import docker
import pytest

from pipeline.core import names
from tests.integration.conftest import BUSYBOX, Slipway, write_app

pytestmark = pytest.mark.integration


def app_running(folder: Path, script: str) -> Path:
    return write_app(
        folder,
        body="up\n",
        dockerfile=f"FROM {BUSYBOX}\nCOPY index.html /www/index.html\nUSER app\n"
        f'CMD ["sh", "-c", "{script}"]\n',
    )


def test_crash_loop_is_backed_off_and_surfaced(slipway: Slipway, tmp_path: Path) -> None:
    # Serves for 2 s, then the container exits with 1: ready at first, then crash-looping.
    app = app_running(tmp_path / "c", "httpd -p $PORT -h /www; sleep 2; exit 1")
    slipway.cli("deploy", "crashy", "--source", str(app))

    deadline = time.monotonic() + 30
    reason = ""
    while time.monotonic() < deadline and reason != "CrashLoopBackOff":
        time.sleep(0.5)
        reason = slipway.api_get("/v1/services/crashy").json()["revisions"][0]["reason"]
    view = slipway.api_get("/v1/services/crashy").json()
    rev = view["revisions"][0]
    assert rev["status"] == "Ready" and rev["reason"] == "CrashLoopBackOff", rev
    assert "exited with code 1" in rev["message"] and "restarting in" in rev["message"]
    described = slipway.cli("services", "describe", "crashy").stdout
    assert "CrashLoopBackOff" in described


def test_instance_marked_down_by_haproxy_is_replaced(
    slipway: Slipway, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    # Listens for 4 s, then stops listening while the container stays up: only HAProxy's
    # checks can notice.
    app = app_running(tmp_path / "d", "httpd -p $PORT -h /www; sleep 4; killall httpd; sleep 600")
    slipway.cli("deploy", "wobbly", "--source", str(app))

    def ids() -> set[str]:
        return {c.id for c in slipway.containers(docker_client)
                if c.labels.get(names.LABEL_SERVICE) == "wobbly"}  # fmt: skip

    first = ids()
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and not (ids() - first and not first & ids()):
        time.sleep(0.5)
    assert ids() - first, "no replacement instance was started"
    assert not first & ids(), "the instance HAProxy marked down was not removed"
