"""kill -9 of the control plane at the worst moments, under steady load on a serving service:
mid-build, mid git push, after a revision is created but before it is routed, mid traffic change,
mid garbage collection. Every time: not one request fails (HAProxy and the instances are their
own processes), the client of the interrupted call gets an error, and after a restart the
platform converges with no revision lost and the next deploy works."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from tests.chaos.converge import converged
from tests.chaos.load import Load, body_is, steady_load
from tests.integration.conftest import ROOT, Slipway, write_app
from tests.integration.test_git_push import Checkout

pytestmark = pytest.mark.integration

BODIES = tuple(f"v{n}\n" for n in range(10))


def slow_app(folder: Path, body: str, *, build_s: int = 0, start_s: int = 0) -> Path:
    """A static app whose build takes `build_s` and whose start takes `start_s` seconds."""
    dockerfile = (
        "FROM slipway/busybox:1.35-bookworm\nCOPY index.html /www/index.html\n"
        # A fresh nonce: BuildKit would otherwise answer a build of the last run from its cache.
        + (f"RUN echo {uuid.uuid4().hex} >/dev/null && sleep {build_s}\n" if build_s else "")
        + f'USER app\nCMD ["sh", "-c", "sleep {start_s}; exec httpd -f -p ${{PORT}} -h /www"]\n'
    )
    return write_app(folder, body=body, dockerfile=dockerfile)


def cli_in_background(slipway: Slipway, *args: str) -> subprocess.Popen[str]:
    env = {**slipway.env, "SLIPWAY_URL": slipway.url, "SLIPWAY_TOKEN": slipway.token}
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *args], env=env, cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


def wait_for(what: str, check: Callable[[], bool], *, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def steady(slipway: Slipway, tmp_path_factory: pytest.TempPathFactory) -> None:
    slipway.cli("deploy", "steady", "--source", str(slow_app(tmp_path_factory.mktemp("v"), "v0\n")))


@dataclass
class Crash:
    load: Load
    # Revisions that must still be in the store afterwards: by default the newest one before the
    # case (a case deploys at most twice, and SLIPWAY_REVISIONS_KEPT=3 keeps it).
    keep: set[str]


@pytest.fixture
def crash(slipway: Slipway, docker_client: docker.DockerClient, steady: None) -> Iterator[Crash]:
    """Load on `steady` through the case; afterwards: the control plane is started again (if the
    case left it dead), not one request failed, and the platform converged with no revision lost
    that it must keep (old ones are collected by design)."""
    newest = revision_names(slipway)[0]
    with steady_load(slipway, "steady", accept=body_is(*BODIES)) as load:
        case = Crash(load=load, keep={newest})
        yield case
        if slipway.proc is None:
            slipway.start()
        converged(slipway, docker_client, revisions=case.keep)
    load.assert_no_failures()


def revision_names(slipway: Slipway) -> list[str]:
    return [r["name"] for r in slipway.api_get("/v1/services/steady").json()["revisions"]]


def test_kill_mid_build(slipway: Slipway, crash: Crash, tmp_path: Path) -> None:
    deploy = cli_in_background(
        slipway, "deploy", "steady", "--source", str(slow_app(tmp_path / "a", "v1\n", build_s=20))
    )
    builds = lambda: slipway.api_get("/v1/builds?service=steady").json()  # noqa: E731
    wait_for("the build to run", lambda: any(b["status"] == "running" for b in builds()))
    time.sleep(1)
    slipway.kill()
    out, _ = deploy.communicate(timeout=30)
    assert deploy.returncode != 0, f"the client was not told its deploy failed:\n{out}"
    assert slipway.get("steady").text == "v0\n", "what served before still serves"

    slipway.start()
    interrupted = builds()[0]
    assert interrupted["status"] == "failed", interrupted
    assert "control plane restarted during the build" in interrupted["error"]
    slipway.cli("deploy", "steady", "--source", str(slow_app(tmp_path / "b", "v2\n")))
    assert slipway.get("steady").text == "v2\n", "the next deploy works"


def test_kill_mid_git_push(slipway: Slipway, crash: Crash, tmp_path: Path) -> None:
    remote = f"http://x:{slipway.token}@localhost:{slipway.ingress_port}/git/steady.git"
    checkout = Checkout(slow_app(tmp_path / "src", "v3\n"), remote)
    first = checkout.commit("v3")
    checkout.push("main")
    slow_app(checkout.path, "v4\n", build_s=20)
    checkout.commit("v4, slow to build")

    push = subprocess.Popen(
        ["git", "push", remote, "main"], cwd=checkout.path, env=checkout.env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    builds = lambda: slipway.api_get("/v1/builds?service=steady").json()  # noqa: E731
    wait_for("the push's build", lambda: builds()[0]["status"] == "running")
    time.sleep(1)
    slipway.kill()
    out, _ = push.communicate(timeout=60)
    assert push.returncode != 0, f"git was not told its push failed:\n{out}"

    slipway.start()
    refs = checkout.git("ls-remote", remote, "refs/heads/main").stdout.split()
    assert refs[0] == first, "the ref moved although its deploy never finished"
    assert slipway.get("steady").text == "v3\n"
    out = checkout.push("main").stderr  # the same commit again: it builds and deploys now
    assert "ready" in out and slipway.get("steady").text == "v4\n"


def test_kill_after_revision_created_before_routed(
    slipway: Slipway, crash: Crash, tmp_path: Path
) -> None:
    known = set(revision_names(slipway))
    app = slow_app(tmp_path / "a", "v5\n", start_s=6)  # Pending for 6 s: plenty to kill in
    deploy = cli_in_background(slipway, "deploy", "steady", "--source", str(app))
    wait_for("the new revision", lambda: bool(set(revision_names(slipway)) - known))
    (new,) = set(revision_names(slipway)) - known
    slipway.kill()
    deploy.communicate(timeout=30)
    assert deploy.returncode != 0
    assert slipway.get("steady").text != "v5\n", "routed before it was ready"

    slipway.start()
    # The revision survives the crash, proves itself ready and takes the latest-revision traffic.
    wait_for("the new revision to serve", lambda: slipway.get("steady").text == "v5\n")
    assert new in revision_names(slipway)


def test_kill_mid_traffic_change(
    slipway: Slipway, docker_client: docker.DockerClient, crash: Crash,
    tmp_path: Path,
) -> None:  # fmt: skip
    slipway.cli("deploy", "steady", "--source", str(slow_app(tmp_path / "a", "v6\n")))
    old, new = revision_names(slipway)[1], revision_names(slipway)[0]
    change = cli_in_background(slipway, "traffic", "steady", "--to-revisions", f"{old}=50,{new}=50")
    time.sleep(0.4)  # the write lands, the reconciler may or may not have applied it
    slipway.kill()
    change.communicate(timeout=30)

    slipway.start()
    converged(slipway, docker_client, revisions={old, new})  # HAProxy as the store says
    slipway.cli("traffic", "steady", "--to-latest")
    assert slipway.get("steady").text == "v6\n"


def test_kill_mid_garbage_collection(
    slipway: Slipway, docker_client: docker.DockerClient, crash: Crash,
    tmp_path: Path,
) -> None:  # fmt: skip
    # SLIPWAY_REVISIONS_KEPT=3: each deploy from here collects the oldest revisions; the kill
    # lands right as a rollout finishes, where collection runs.
    slipway.cli("deploy", "steady", "--source", str(slow_app(tmp_path / "a", "v7\n")))
    deploy = cli_in_background(
        slipway, "deploy", "steady", "--source", str(slow_app(tmp_path / "b", "v8\n"))
    )
    wait_for("the rollout", lambda: slipway.get("steady").text == "v8\n")
    crash.keep = set(revision_names(slipway)[:3])  # the newest three: never collected
    slipway.kill()
    deploy.communicate(timeout=30)

    slipway.start()
    converged(slipway, docker_client, revisions=crash.keep)
    slipway.cli("deploy", "steady", "--source", str(slow_app(tmp_path / "c", "v9\n")))
    assert slipway.get("steady").text == "v9\n"
    converged(slipway, docker_client, revisions=set())
