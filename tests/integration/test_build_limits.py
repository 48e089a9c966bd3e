"""Build limits, against a control plane of its own: one build at a time
(SLIPWAY_BUILD_CONCURRENCY=1) and a short timeout (SLIPWAY_BUILD_TIMEOUT). The real `pack` is
tested in test_pack.py.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.integration.conftest import BUSYBOX, ROOT, Slipway, running_slipway, write_app

pytestmark = pytest.mark.integration
TIMEOUT_S = 12


@pytest.fixture(scope="module")
def limited(
    tmp_path_factory: pytest.TempPathFactory,
    docker_client: docker.DockerClient,
    registry: str,
    busybox_image: str,
) -> Iterator[Slipway]:
    extra = {"SLIPWAY_BUILD_CONCURRENCY": "1", "SLIPWAY_BUILD_TIMEOUT": str(TIMEOUT_S)}
    with running_slipway(tmp_path_factory, docker_client, registry, extra) as sw:
        yield sw


def slow_app(folder: Path, seconds: int) -> Path:
    token = secrets.token_hex(4)  # a fresh step: never cached
    return write_app(
        folder,
        body=f"{folder.name}\n",
        dockerfile=f"FROM {BUSYBOX}\nRUN echo start-{token} && sleep {seconds} && echo end\n"
        "COPY index.html /www/index.html\nUSER app\n"
        'CMD ["sh", "-c", "exec httpd -f -p ${PORT} -h /www"]\n',
    )


@contextlib.contextmanager
def deploying(sw: Slipway, name: str, app: Path) -> Iterator[subprocess.Popen[str]]:
    env = {**sw.env, "SLIPWAY_URL": sw.url, "SLIPWAY_TOKEN": sw.token}
    with subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "deploy", name, "--source", str(app)],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as proc:  # fmt: skip
        yield proc


def running_step(marker: str, *, within_s: float, gone: bool = True) -> bool:
    """Whether a process whose command line holds `marker` runs on this machine, polled until
    it is gone (or, with gone=False, until it shows up) or `within_s` passed."""
    deadline = time.monotonic() + within_s
    while True:
        found = False
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            with contextlib.suppress(OSError):
                found = found or marker.encode() in cmdline.read_bytes()
        if found != gone or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def wait_build(sw: Slipway, service: str, status: str, timeout_s: float = 60) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        builds = sw.api_get(f"/v1/builds?service={service}").json()
        if builds and builds[0]["status"] == status:
            return dict(builds[0])
        time.sleep(0.1)
    raise AssertionError(f"no {status} build of {service} within {timeout_s}s")


def test_builds_queue_in_order_one_at_a_time(limited: Slipway, tmp_path: Path) -> None:
    # The first build outlasts the next two deploys' start-up (a CLI process each, an upload):
    # with 2 s it sometimes finished before the third was queued, which then had 1 ahead.
    apps = [slow_app(tmp_path / f"q{i}", 8 if i == 0 else 2) for i in range(3)]
    with contextlib.ExitStack() as stack:
        procs = []
        for i, app in enumerate(apps):
            procs.append(stack.enter_context(deploying(limited, f"q{i}", app)))
            wait_build(limited, f"q{i}", "running" if i == 0 else "queued")
        assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
        assert "Queued: 2 build(s) ahead" in procs[2].stdout.read()  # type: ignore[union-attr]
    builds = [wait_build(limited, f"q{i}", "succeeded") for i in range(3)]
    started = [b["started"] for b in builds]
    finished = [b["finished"] for b in builds]
    assert started == sorted(started) and finished == sorted(finished)
    assert started[1] >= finished[0] and started[2] >= finished[1]  # one at a time


def test_cancel_a_running_build(
    limited: Slipway, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    app = slow_app(tmp_path / "cancelme", 60)
    marker = re.search(r"start-[0-9a-f]+", (app / "Dockerfile").read_text()).group(0)  # type: ignore[union-attr]
    with deploying(limited, "cancelme", app) as proc:
        build = wait_build(limited, "cancelme", "running")
        assert running_step(marker, within_s=30, gone=False)  # into the RUN step

        said = limited.cli("builds", "cancel", build["id"]).stdout

        assert proc.wait(timeout=30) == 1
        assert "build cancelled" in proc.stderr.read()  # type: ignore[union-attr]
    assert said.strip() == f"Build {build['id']} cancelled"
    # The engine dropped the build: its RUN step (a BuildKit process, not a container) is gone.
    assert not running_step(marker, within_s=10)
    running = [" ".join(c.attrs["Config"]["Cmd"] or []) for c in docker_client.containers.list()]
    assert not [cmd for cmd in running if marker in cmd]
    assert wait_build(limited, "cancelme", "cancelled")["error"] == "build cancelled"
    assert limited.api_get("/v1/services/cancelme").status_code == 404  # no revision
    again = limited.cli("builds", "cancel", build["id"], check=False)
    assert again.returncode == 1 and "already cancelled" in again.stderr


def test_build_timeout_kills_the_build(limited: Slipway, tmp_path: Path) -> None:
    result = limited.cli("deploy", "slowpoke", "--source", str(slow_app(tmp_path / "s", 60)),
                         check=False)  # fmt: skip
    assert result.returncode == 1
    assert f"build timed out after {TIMEOUT_S}s (SLIPWAY_BUILD_TIMEOUT)" in result.stderr
    assert wait_build(limited, "slowpoke", "failed")


def test_restart_marks_an_unfinished_build_failed(limited: Slipway, tmp_path: Path) -> None:
    with deploying(limited, "crashy", slow_app(tmp_path / "crashy", 8)) as proc:
        build = wait_build(limited, "crashy", "running")
        limited.kill()
        proc.wait(timeout=30)
    limited.start()
    after = limited.api_get(f"/v1/builds/{build['id']}").json()
    assert after["status"] == "failed"
    assert after["error"] == "control plane restarted during the build"
