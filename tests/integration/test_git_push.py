"""`git push` with the real git client against the running control plane (through HAProxy)."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import BUSYBOX, Slipway, write_app

pytestmark = pytest.mark.integration


class Checkout:
    def __init__(self, path: Path, remote: str) -> None:
        self.path = path
        self.remote = remote
        self.env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.test",
            "GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@example.test",
            "GIT_TERMINAL_PROMPT": "0",  # a refused credential must fail, not prompt
        }  # fmt: skip
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["git", *args], cwd=self.path, env=self.env, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"git {' '.join(args)}: {result.stdout}{result.stderr}")
        return result

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD").stdout.strip()

    def push(self, *refs: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.git("push", self.remote, *refs, check=check)


@pytest.fixture
def checkout(slipway: Slipway, tmp_path: Path) -> Checkout:
    remote = f"http://x:{slipway.token}@localhost:{slipway.ingress_port}/git/pushy.git"
    return Checkout(write_app(tmp_path / "src", body="push v1\n"), remote)


def test_push_builds_deploys_and_tags_every_commit(slipway: Slipway, checkout: Checkout) -> None:
    first = checkout.commit("v1")
    out = checkout.push("main").stderr

    port = slipway.ingress_port
    assert f"remote: -----> Building pushy@{first[:7]} (Dockerfile)" in out
    assert "remote:        Step 1/" in out
    assert "remote: -----> pushy-00001 ready" in out
    assert f"remote:        http://pushy.localhost:{port}  (100%)" in out
    assert f"remote:        http://commit-{first[:7]}--pushy.localhost:{port}" in out
    assert slipway.get("pushy").text == "push v1\n"

    write_app(checkout.path, body="push v2\n")
    second = checkout.commit("v2")
    checkout.push("main")

    assert slipway.get("pushy").text == "push v2\n"
    # Each commit URL serves exactly its revision, whatever the split.
    assert slipway.get(f"commit-{first[:7]}--pushy.localhost").text == "push v1\n"
    assert slipway.get(f"commit-{second[:7]}--pushy.localhost").text == "push v2\n"

    # A branch is a 0% preview with its own URL; deleting the branch removes it.
    checkout.git("checkout", "-q", "-b", "feature/login")
    write_app(checkout.path, body="preview\n")
    preview = checkout.commit("preview")
    out = checkout.push("feature/login").stderr
    # Only the preview revision's own URLs, with its share (issue 16: not the service URL).
    tag_url = f"http://commit-{preview[:7]}--pushy.localhost:{port}"
    assert f"remote:        {tag_url}  (0%: no traffic, its tag URL only)" in out
    assert f"remote:        http://branch-feature-login--pushy.localhost:{port}" in out
    assert f"http://pushy.localhost:{port}" not in out
    assert slipway.get("branch-feature-login--pushy.localhost").text == "preview\n"
    assert slipway.get("pushy").text == "push v2\n"

    checkout.push(":feature/login")
    assert slipway.get("branch-feature-login--pushy.localhost").status_code == 404
    assert slipway.get("pushy").text == "push v2\n"

    # Tags are stored, not built.
    checkout.git("tag", "v2.0", second)
    tagged = checkout.push("v2.0").stderr
    assert "Building" not in tagged
    revisions = slipway.api_get("/v1/services/pushy/revisions").json()
    assert [r["name"] for r in revisions] == ["pushy-00003", "pushy-00002", "pushy-00001"]

    # And the repository clones back.
    clone = checkout.path.parent / "clone"
    subprocess.run(["git", "clone", "-q", checkout.remote, str(clone)], check=True,
                   env=checkout.env, capture_output=True)  # fmt: skip
    assert (clone / "index.html").read_text() == "push v2\n"


def test_failed_build_rejects_the_push_and_keeps_the_ref(
    slipway: Slipway, checkout: Checkout
) -> None:
    checkout.remote = checkout.remote.replace("pushy", "rejecty")
    good = checkout.commit("good")
    checkout.push("main")
    (checkout.path / "Dockerfile").write_text(f"FROM {BUSYBOX}\nRUN echo exploding && exit 3\n")
    checkout.commit("bad")

    result = checkout.push("main", check=False)

    assert result.returncode != 0
    assert "! [remote rejected] main -> main (build failed" in result.stderr
    assert "remote:        exploding" in result.stderr
    remote_main = checkout.git("ls-remote", checkout.remote, "refs/heads/main").stdout.split()[0]
    assert remote_main == good
    assert slipway.get("rejecty").text == "push v1\n"
    assert "Timings:" not in result.stderr  # a rejected push deployed nothing to time


def timings(push_output: str) -> list[tuple[str, float]]:
    """The steps of the `-----> Timings:` line, then ("total", seconds)."""
    line = re.search(r"remote: -----> Timings: (.*?)\s*$", push_output, re.M)
    assert line, push_output
    return [(name, float(secs)) for name, secs in re.findall(r"(\w+) ([\d.]+)s", line.group(1))]


def test_push_says_where_its_time_went(slipway: Slipway, checkout: Checkout) -> None:
    checkout.remote = checkout.remote.replace("pushy", "timey")
    checkout.commit("v1")

    steps = timings(checkout.push("main").stderr)

    assert [name for name, _ in steps] == [
        "receive", "build", "push", "instance", "route", "cleanup", "total",
    ]  # fmt: skip
    *parts, (_, total) = steps
    assert all(secs >= 0 for _, secs in parts)
    assert sum(secs for _, secs in parts) <= total + 0.03  # each rounded to 0.01 s
    assert total > 0

    # The same tree again: every Dockerfile step cached, no new revision (nothing to start).
    checkout.git("commit", "-q", "--allow-empty", "-m", "same tree")
    out = checkout.push("main").stderr
    assert re.search(r"remote: -----> Timings: receive [\d.]+s, build [\d.]+s \(cached\), "
                     r"push [\d.]+s; total [\d.]+s", out), out  # fmt: skip


def test_build_output_arrives_while_the_build_runs(slipway: Slipway, checkout: Checkout) -> None:
    checkout.remote = checkout.remote.replace("pushy", "livey")
    (checkout.path / "Dockerfile").write_text(
        # A fresh token per run: a cached step would print nothing and not sleep.
        f"FROM {BUSYBOX}\nRUN echo marker-before-sleep {secrets.token_hex(4)} && sleep 4\n"
        "COPY index.html /www/\n"
        'CMD ["sh", "-c", "exec httpd -f -p $PORT -h /www"]\n'
    )
    checkout.commit("slow build")
    seen_at = None
    with subprocess.Popen(
        ["git", "push", "--progress", checkout.remote, "main"], cwd=checkout.path,
        env=checkout.env, stderr=subprocess.PIPE, text=True,
    ) as proc:  # fmt: skip
        assert proc.stderr is not None
        for line in proc.stderr:
            if "marker-before-sleep" in line and seen_at is None:
                seen_at = time.monotonic()
        proc.wait(timeout=120)
    done_at = time.monotonic()
    assert proc.returncode == 0
    assert seen_at is not None
    # The step's output reached the pusher before the 4 s step (and the deploy) finished.
    assert done_at - seen_at > 2


def test_push_with_a_wrong_token_is_refused(slipway: Slipway, checkout: Checkout) -> None:
    checkout.remote = checkout.remote.replace(slipway.token, "wrong-token")
    checkout.commit("v1")
    result = checkout.push("main", check=False)
    assert result.returncode != 0
    assert "Authentication failed" in result.stderr or "401" in result.stderr
    assert slipway.api_get("/v1/services/pushy").status_code in (200, 404)


def test_concurrent_pushes_to_one_service_are_serialised(
    slipway: Slipway, checkout: Checkout
) -> None:
    checkout.remote = checkout.remote.replace("pushy", "queuey")
    (checkout.path / "Dockerfile").write_text(
        f"FROM {BUSYBOX}\nRUN echo {secrets.token_hex(4)} && sleep 3\n"
        "COPY index.html /www/index.html\n"
        'CMD ["sh", "-c", "exec httpd -f -p $PORT -h /www"]\n'
    )
    checkout.commit("slow main")
    checkout.git("checkout", "-q", "-b", "other")
    write_app(checkout.path, body="other\n", dockerfile=(checkout.path / "Dockerfile").read_text())
    checkout.commit("other branch")
    checkout.git("checkout", "-q", "main")
    first = subprocess.Popen(
        ["git", "push", checkout.remote, "main"], cwd=checkout.path, env=checkout.env,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(1.5)  # the first push is building now
    second = checkout.push("other")
    _, first_err = first.communicate(timeout=120)

    assert first.returncode == 0, first_err
    assert "Waiting for the deploy to queuey in progress" in second.stderr
    revisions = slipway.api_get("/v1/services/queuey/revisions").json()
    assert sorted(r["name"] for r in revisions) == ["queuey-00001", "queuey-00002"]
    assert all(r["status"] == "Ready" for r in revisions)


def test_nothing_to_build_is_rejected_and_force_push_is_accepted(
    slipway: Slipway, checkout: Checkout
) -> None:
    checkout.remote = checkout.remote.replace("pushy", "forcey")
    (checkout.path / "Dockerfile").unlink()
    (checkout.path / "index.html").unlink()  # would be built by the static build template
    (checkout.path / "README.md").write_text("nothing to build here\n")
    checkout.commit("no dockerfile")
    rejected = checkout.push("main", check=False)
    assert rejected.returncode != 0
    assert "no Dockerfile in the source folder (looked for: Dockerfile, project.toml" in (
        rejected.stderr
    )

    # Rewrite history (like Heroku, a forced push is accepted and deployed).
    write_app(checkout.path, body="rewritten\n")
    checkout.git("add", "-A")
    checkout.git("commit", "-q", "--amend", "-m", "rewritten")
    checkout.push("main")
    write_app(checkout.path, body="rewritten again\n")
    checkout.git("add", "-A")
    checkout.git("commit", "-q", "--amend", "-m", "rewritten again")
    out = checkout.push("--force", "main").stderr
    assert "forced update" in out
    assert slipway.get("forcey").text == "rewritten again\n"
