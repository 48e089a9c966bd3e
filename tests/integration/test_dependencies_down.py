"""Dependencies that are down give errors that say what is down and how to start it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, free_port

pytestmark = pytest.mark.integration


def test_control_plane_refuses_to_start_without_docker_engine(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock",
        "SLIPWAY_DATA_DIR": str(tmp_path / "data"),
        "SLIPWAY_PORT": str(free_port()),
        "SLIPWAY_API_PORT": str(free_port()),
    }
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "server"],
        env=env, capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Docker Engine is not reachable" in result.stderr
    assert "./scripts/up" in result.stderr


def test_cli_says_when_slipway_is_not_running() -> None:
    env = {**os.environ, "SLIPWAY_URL": f"http://127.0.0.1:{free_port()}", "SLIPWAY_TOKEN": "x"}
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "services", "list"],
        env=env, capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 1
    assert "cannot reach Slipway" in result.stderr and "./scripts/up" in result.stderr
