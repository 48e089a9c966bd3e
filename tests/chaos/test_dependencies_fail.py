"""What a platform's dependencies failing does: the registry down during a build's push, the data
dir's disk full during a build, dockerd restarted. Serving never changes; the build or deploy
that met the fault fails saying why; the next one works once the fault is gone."""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

from tests.chaos.conftest import FULL
from tests.chaos.converge import converged, look
from tests.chaos.load import body_is, steady_load
from tests.chaos.test_control_plane_kills import cli_in_background, slow_app, wait_for
from tests.integration.conftest import Registry, Slipway, running_slipway

pytestmark = pytest.mark.integration

DOCKER_SOCKET = "/var/run/docker.sock"


def deploy_with_a_slow_build(
    sw: Slipway, tmp_path: Path
) -> tuple[subprocess.Popen[str], Callable[[], list[dict[str, Any]]]]:
    """`slipway deploy` of a 3 s build in the background, returned once the build runs, with a
    reader of the service's builds."""
    deploy = cli_in_background(
        sw, "deploy", "steady", "--source", str(slow_app(tmp_path / "b", "v1\n", build_s=3))
    )

    def builds() -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = sw.api_get("/v1/builds?service=steady").json()
        return answer

    wait_for("the build", lambda: builds()[0]["status"] == "running")
    return deploy, builds


def test_registry_down_during_a_build(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient,
    busybox_image: str, tmp_path: Path,
) -> None:  # fmt: skip
    registry = Registry(tmp_path_factory.mktemp("own-registry"))
    registry.start()
    try:
        with running_slipway(tmp_path_factory, docker_client, registry.address) as sw:
            sw.cli("deploy", "steady", "--source", str(slow_app(tmp_path / "a", "v0\n")))
            before = look(sw, docker_client, revisions=set()).revisions
            with steady_load(sw, "steady", accept=body_is("v0\n", "v2\n")) as load:
                deploy, builds = deploy_with_a_slow_build(sw, tmp_path)
                registry.stop(kill=True)
                out, _ = deploy.communicate(timeout=120)
                assert deploy.returncode != 0, out
                failed = builds()[0]
                assert failed["status"] == "failed", failed
                assert registry.address in failed["error"] or "registry" in failed["error"], failed
                assert sw.get("steady").text == "v0\n", "nothing serving changed"
                converged(sw, docker_client, revisions=before)

                registry.start()
                sw.cli("deploy", "steady", "--source", str(slow_app(tmp_path / "c", "v2\n")))
                assert sw.get("steady").text == "v2\n", "the next build works"
            load.assert_no_failures()
            print(f"registry down: the build failed with: {failed['error']}")
    finally:
        registry.stop()


@contextlib.contextmanager
def small_disk(path: Path, *, size_mb: int) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
                            capture_output=True, text=True, check=False)  # fmt: skip
    if result.returncode != 0:
        pytest.skip(f"CHAOS CASE NOT RUN: cannot mount a small tmpfs ({result.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> Path:
    """Fill the filesystem holding `path` to the last byte."""
    filler = path / "filler"
    with filler.open("wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * (1 << 20))
            f.flush()
    return filler


def test_disk_full_during_a_build(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient,
    registry: str, busybox_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    with small_disk(tmp_path / "disk", size_mb=64) as disk:
        # The platform's data dir (database, build logs, HAProxy's config) on the small disk.
        monkeypatch.setattr(tmp_path_factory, "mktemp", lambda *_a, **_k: disk / "data")
        (disk / "data").mkdir()
        with running_slipway(tmp_path_factory, docker_client, registry) as sw:
            sw.cli("deploy", "steady", "--source", str(slow_app(tmp_path / "a", "v0\n")))
            before = look(sw, docker_client, revisions=set()).revisions
            with steady_load(sw, "steady", accept=body_is("v0\n", "v2\n")) as load:
                deploy, _ = deploy_with_a_slow_build(sw, tmp_path)
                filler = fill(disk)
                out, _ = deploy.communicate(timeout=120)
                assert deploy.returncode != 0, out
                assert "the disk is full" in out and "free space" in out, out
                assert sw.get("steady").text == "v0\n", "nothing serving changed"
                filler.unlink()
                db = sqlite3.connect(disk / "data" / "slipway.db")
                assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
                db.close()
                sw.cli("deploy", "steady", "--source", str(slow_app(tmp_path / "c", "v2\n")))
                assert sw.get("steady").text == "v2\n", "the next deploy works"
                converged(sw, docker_client, revisions=before)
            load.assert_no_failures()
            print(f"disk full: the client saw:\n{out}")


@pytest.mark.chaos_full
def test_dockerd_restart_keeps_instances(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient,
    registry: str, busybox_image: str, tmp_path: Path,
) -> None:  # fmt: skip
    """Restarts the machine's dockerd: every container on it is affected without live-restore,
    hence behind SLIPWAY_CHAOS=full. With live-restore (what ./scripts/lib.sh starts dockerd
    with) instances keep running and serving; the control plane reconnects."""
    assert FULL
    if not docker_client.info().get("LiveRestoreEnabled"):
        pytest.skip(
            "CHAOS CASE NOT RUN: this dockerd runs without live-restore; start it "
            "through ./scripts/lib.sh (start_dockerd) or set it in daemon.json"
        )
    with running_slipway(tmp_path_factory, docker_client, registry) as sw:
        sw.cli("deploy", "steady", "--source", str(slow_app(tmp_path / "a", "v0\n")))
        before = look(sw, docker_client, revisions=set()).revisions
        serving = {c.id for c in sw.containers(docker_client)}
        with steady_load(sw, "steady", accept=body_is("v0\n")) as load:
            pid = int(subprocess.run(["pidof", "dockerd"], capture_output=True, text=True,
                                     check=True).stdout.split()[0])  # fmt: skip
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
            subprocess.run(["kill", "-TERM", str(pid)], check=True)
            wait_for("dockerd to stop", lambda: not Path(f"/proc/{pid}").exists(), timeout_s=60)
            # `setsid --fork`: dockerd runs on in its own session, a grandchild of this test,
            # so nothing here waits for it (or warns that it still runs) when the test ends.
            quiet = subprocess.DEVNULL
            subprocess.run(["setsid", "--fork", *(a.decode() for a in args)],
                           stdout=quiet, stderr=quiet, check=True)  # fmt: skip
            wait_for("dockerd", lambda: _pings(docker_client), timeout_s=60)
            time.sleep(3)
        load.assert_no_failures()
        assert {c.id for c in sw.containers(docker_client)} == serving, "instances were replaced"
        converged(sw, docker_client, revisions=before)


def _pings(client: docker.DockerClient) -> bool:
    # Knock on the socket ourselves first: while dockerd restarts the socket file is gone, and
    # docker-py's failed connect() leaves its socket unclosed (a ResourceWarning under -W error).
    try:
        with socket.socket(socket.AF_UNIX) as knock:
            knock.connect(DOCKER_SOCKET)
    except OSError:
        return False
    try:
        return bool(client.ping())
    except (docker.errors.DockerException, requests.exceptions.ConnectionError):
        return False
