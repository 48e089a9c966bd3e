"""The control-plane image the Helm chart runs, built by scripts/image (wheels made on this
machine, the top-level Dockerfile, the real Docker Engine) and run: the CLI answers, the build
templates come from the installed package, and it runs as the chart's uid 10001.

The image running as the chart installs it (both containers, the chart's ServiceAccount, the
metadata container minting for a revision's pod) is tests/knative/test_chart_install.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import docker
import pytest

from pipeline import __version__
from tests.integration.conftest import ROOT
from tests.unit.installprobe import PROBE

pytestmark = pytest.mark.integration

IMAGE = f"slipway/slipway:{__version__}"
UID = 10001
SITE = "/opt/slipway/lib/python3.11/site-packages"


@pytest.fixture(scope="module")
def image(python_image: str, docker_client: docker.DockerClient) -> str:
    # The venv running these tests builds the wheels (scripts/image would default to
    # <checkout>/.venv, which a worktree does not have).
    env = {**os.environ, "SLIPWAY_VENV": sys.prefix}
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "image")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, f"scripts/image failed:\n{result.stdout}\n{result.stderr}"
    print(f"\nscripts/image: {time.monotonic() - started:.1f}s\n{result.stdout}")
    return IMAGE


def run(client: docker.DockerClient, image: str, command: list[str], **kwargs: str) -> str:
    output: bytes = client.containers.run(image, command, remove=True, **kwargs)
    return output.decode()


def test_the_cli_answers(docker_client: docker.DockerClient, image: str) -> None:
    assert run(docker_client, image, ["version"]).strip() == f"slipway {__version__}"


def test_templates_come_from_the_installed_package(
    docker_client: docker.DockerClient, image: str
) -> None:
    probe = json.loads(run(docker_client, image, ["-c", PROBE], entrypoint="python"))
    installed = f"{SITE}/pipeline/_buildtemplates"
    assert probe["pipeline"] == f"{SITE}/pipeline/__init__.py"
    assert probe["root"] == probe["settings"] == installed
    assert probe["jobs"] == f"{installed}/kubernetes"
    assert probe["job"] == "Job"
    assert sorted(probe["templates"]) == ["node", "procfile", "python", "static"]
    assert (
        probe["templates"]["python"] == (ROOT / "buildtemplates/python/Dockerfile.j2").read_text()
    )


def test_it_runs_as_the_charts_user(docker_client: docker.DockerClient, image: str) -> None:
    config = docker_client.images.get(image).attrs["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["slipway"]
    assert config["Cmd"] == ["server"]
    assert set(config["ExposedPorts"]) == {"8080/tcp", "8081/tcp"}
    assert run(docker_client, image, ["-c", "id -u; id -g"], entrypoint="sh").split() == [
        str(UID),
        str(UID),
    ]
    # The data dir the chart mounts its volume on is writable without one too.
    assert (
        run(
            docker_client, image, ["-c", "touch /var/lib/slipway/x && echo ok"], entrypoint="sh"
        ).strip()
        == "ok"
    )
