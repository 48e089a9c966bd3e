"""What a deploy says while it runs and when it ends, through the real CLI, control plane, Docker,
registry and HAProxy: progress with the instance's last log line while a revision waits to be
ready, only the new revision's URLs and percent at the end, the build id on `git push`, and what
Ctrl-C says (and that it is true: the build goes on)."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import BUSYBOX, ROOT, Slipway, write_app
from tests.integration.test_git_push import Checkout

# HTTPS on, the local CA only (no ACME directory): test_https's control plane, one of our own.
from tests.integration.test_https import local as https_on  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration

WRONG_PORT = (
    f"FROM {BUSYBOX}\nCOPY index.html /www/index.html\nUSER app\n"
    'CMD ["sh", "-c", "echo listening on :3000; exec httpd -f -p 3000 -h /www"]\n'
)
SLOW_BUILD = (
    f"FROM {BUSYBOX}\nRUN sleep 20\nCOPY index.html /www/index.html\nUSER app\n"
    'CMD ["sh", "-c", "exec httpd -f -p ${PORT} -h /www"]\n'
)


def test_a_wrong_port_shows_progress_with_the_last_log_line_before_failing(
    slipway: Slipway, tmp_path: Path
) -> None:
    app = write_app(tmp_path / "wrong", body="x\n", dockerfile=WRONG_PORT)

    result = slipway.cli("deploy", "wrongport", "--source", str(app), check=False)

    assert result.returncode == 1
    waiting = result.stdout.split("-----> Revision wrongport-00001 created, waiting until ready")
    assert len(waiting) == 2, result.stdout
    # The fixture's readiness timeout is 10 s: progress comes every 5 s until the revision fails.
    progress = [line for line in waiting[1].splitlines() if line.strip()]
    assert progress, result.stdout
    assert re.fullmatch(
        r"       \d+s  i-\w+ started, not accepting connections on port 8080 yet; "
        r"last log line: listening on :3000",
        progress[-1],
    ), progress
    assert "failed (ReadinessTimeout)" in result.stderr


def test_no_traffic_tag_prints_only_the_candidate_url_and_zero_percent(
    slipway: Slipway, tmp_path: Path
) -> None:
    app = write_app(tmp_path / "cand", body="v1\n")
    slipway.cli("deploy", "cand", "--source", str(app))
    write_app(app, body="v2\n")

    result = slipway.cli("deploy", "cand", "--source", str(app), "--no-traffic", "--tag", "rc")

    port = slipway.ingress_port
    candidate = f"http://rc--cand.localhost:{port}"
    end = result.stdout.split("-----> cand-00002 ready")[1].splitlines()
    assert end[1] == f"       {candidate}  (0%: no traffic, its tag URL only)"
    after = "\n".join(end)
    assert f"http://cand.localhost:{port}" not in after  # the service URL serves cand-00001
    assert candidate in end[-1]
    assert slipway.get("rc--cand").text == "v2\n"
    assert slipway.get("cand").text == "v1\n"


def test_git_push_prints_the_build_id(slipway: Slipway, tmp_path: Path) -> None:
    remote = f"http://x:{slipway.token}@localhost:{slipway.ingress_port}/git/pushid.git"
    checkout = Checkout(write_app(tmp_path / "src", body="push\n"), remote)
    sha = checkout.commit("v1")

    out = checkout.push("main").stderr

    found = re.search(r"remote: -----> Build (\S+) \(dockerfile\)", out)
    assert found, out
    builds = slipway.cli("builds", "list", "--service", "pushid").stdout
    assert found.group(1) in builds
    port = slipway.ingress_port
    assert f"remote:        http://pushid.localhost:{port}  (100%)" in out
    assert f"remote:        http://commit-{sha[:7]}--pushid.localhost:{port}" in out


def test_ctrl_c_says_the_build_goes_on_and_how_to_follow_or_cancel_it(
    slipway: Slipway, tmp_path: Path
) -> None:
    app = write_app(tmp_path / "slow", body="slow\n", dockerfile=SLOW_BUILD)
    env = {
        **slipway.env, "SLIPWAY_URL": slipway.url, "SLIPWAY_TOKEN": slipway.token,
        "COLUMNS": "200", "PYTHONUNBUFFERED": "1",
    }  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "deploy", "slow", "--source", str(app)],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        build = _wait_for_build(proc)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert f"build {build} keeps running" in stderr
    assert f"slipway builds log {build} --follow" in stderr
    assert f"slipway builds cancel {build}" in stderr
    # It does: the build still runs after the CLI left, and the command it named cancels it.
    status = slipway.api_get(f"/v1/builds/{build}").json()["status"]
    assert status in ("queued", "running"), status
    assert f"Build {build} " in slipway.cli("builds", "cancel", build).stdout
    deadline = time.monotonic() + 30
    while slipway.api_get(f"/v1/builds/{build}").json()["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, "the cancelled build did not stop"
        time.sleep(0.5)


def _wait_for_build(proc: subprocess.Popen[str]) -> str:
    """The build id from the CLI's `-----> Build <id> (<builder>)` line."""
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        found = re.match(r"-----> Build (\S+) \(", line)
        if found:
            return found.group(1)
    raise AssertionError(f"no build line: {''.join(seen)}")


def test_with_https_on_a_deploy_prints_https_urls_that_answer(
    https_on: Slipway,  # noqa: F811 (the imported fixture)
    tmp_path: Path,
) -> None:
    https = int(https_on.env["SLIPWAY_HTTPS_PORT"])
    app = write_app(tmp_path / "tls", body="over tls\n")

    result = https_on.cli("deploy", "tls", "--source", str(app), "--tag", "blue")

    url, tag_url = f"https://tls.localhost:{https}", f"https://blue--tls.localhost:{https}"
    end = result.stdout.split("-----> tls-00001 ready")[1].splitlines()
    assert end[1:3] == [f"       {url}  (100%)", f"       {tag_url}"], result.stdout
    assert "http://" not in "\n".join(end)
    curl = shutil.which("curl")
    assert curl, "curl is not installed"
    for printed in (url, tag_url):
        answer = subprocess.run(
            [curl, "-sS", "--cacert", str(https_on.data_dir / "tls" / "ca.pem"), printed + "/"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert (answer.returncode, answer.stdout) == (0, "over tls\n"), answer.stderr
    # The services list and describe say the same URL.
    listed = {s["name"]: s["url"] for s in https_on.api_get("/v1/services").json()}
    assert listed["tls"] == url
    assert https_on.api_get("/v1/services/tls").json()["url"] == url
