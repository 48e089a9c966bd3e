"""Build records and logs: listed, stored, and followed live while a build runs."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import BUSYBOX, ROOT, Slipway, write_app

pytestmark = pytest.mark.integration


def test_follow_a_running_build_then_read_it_back(slipway: Slipway, tmp_path: Path) -> None:
    token = secrets.token_hex(4)  # fresh steps: a cached build would be over at once
    app = write_app(
        tmp_path / "slow",
        body="slow\n",
        dockerfile=f"FROM {BUSYBOX}\nRUN echo start-{token} && sleep 3 && echo end-{token}\n"
        "COPY index.html /www/index.html\n"
        'CMD ["sh", "-c", "exec httpd -f -p ${PORT} -h /www"]\n',
    )
    env = {**slipway.env, "SLIPWAY_URL": slipway.url, "SLIPWAY_TOKEN": slipway.token}
    with subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "deploy", "slow", "--source", str(app)],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    ) as deploy:  # fmt: skip
        build_id = ""
        deadline = time.monotonic() + 60
        while not build_id and time.monotonic() < deadline:
            running = [b for b in slipway.api_get("/v1/builds?service=slow").json()
                       if b["status"] == "running"]  # fmt: skip
            build_id = running[0]["id"] if running else ""
            time.sleep(0.1)
        assert build_id, "the build never showed as running"

        followed = slipway.cli("builds", "log", build_id, "--follow")

        assert deploy.wait(timeout=120) == 0
    assert f"start-{token}" in followed.stdout and f"end-{token}" in followed.stdout
    listed = slipway.cli("builds", "list", "--service", "slow").stdout
    assert build_id in listed and "succeeded" in listed
    stored = slipway.cli("builds", "log", build_id).stdout
    assert stored == followed.stdout


def test_failed_build_is_listed_with_its_error(slipway: Slipway, tmp_path: Path) -> None:
    app = write_app(tmp_path / "bad", body="x", dockerfile=f"FROM {BUSYBOX}\nRUN exit 7\n")
    slipway.cli("deploy", "badbuild", "--source", str(app), check=False)
    (build,) = slipway.api_get("/v1/builds?service=badbuild").json()
    assert build["status"] == "failed" and "non-zero code: 7" in build["error"]
    result = slipway.cli("builds", "log", build["id"], check=False)
    assert result.returncode == 1 and "failed" in result.stderr
