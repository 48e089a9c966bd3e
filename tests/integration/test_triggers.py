"""Deploy triggers end to end on the real platform: `deploy --git` and a signed GitHub push.

GitHub itself cannot be reached from here: the webhook is the recorded real payload from
shared/fixtures, signed in the test the way GitHub signs, with its clone_url pointing at a real
git repository served over git's smart HTTP on loopback (tests/gitserver.py stands for GitHub;
dulwich clones it as it would clone github.com, over HTTP instead of HTTPS).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from tests.gitserver import serving
from tests.integration.conftest import (
    ROOT,
    WEBHOOK_SECRET,
    Slipway,
    push_image,
    running_slipway,
    write_app,
)

pytestmark = pytest.mark.integration
FIXTURES = ROOT.parent / "shared" / "fixtures" / "github-webhooks"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.test",
    "GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@example.test",
    "PATH": "/usr/bin:/bin",
}  # fmt: skip


def repo_with(path: Path, body: str) -> str:
    write_app(path, body=body)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", body]):
        subprocess.run(["git", *args], cwd=path, env=GIT_ENV, check=True, capture_output=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, env=GIT_ENV, check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip


@pytest.fixture(scope="module")
def git_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("git")


@pytest.fixture(scope="module")
def git_base(git_root: Path) -> Iterator[str]:
    """The repositories under git_root over smart HTTP: this module's GitHub."""
    with serving(git_root) as base:
        yield base


@pytest.fixture(scope="module")
def slipway(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient,
    registry: str, busybox_image: str, git_base: str,
) -> Iterator[Slipway]:  # fmt: skip
    """A platform whose GitHub is the local git server (SLIPWAY_GITHUB_URL)."""
    env = {"SLIPWAY_GITHUB_URL": git_base}
    with running_slipway(tmp_path_factory, docker_client, registry, extra_env=env) as sw:
        yield sw


def test_deploy_from_a_git_url(slipway: Slipway, git_root: Path, git_base: str) -> None:
    sha = repo_with(git_root / "repo", "from git\n")

    out = slipway.cli("deploy", "fromgit", "--git", f"{git_base}/repo", "--ref", "main")
    missing = slipway.cli("deploy", "fromgit", "--git", f"{git_base}/repo", "--ref", "nope",
                          check=False)  # fmt: skip

    assert f"at {sha[:7]} (main)" in out.stdout and "fromgit-00001 ready" in out.stdout
    assert slipway.get(f"commit-{sha[:7]}--fromgit.localhost").text == "from git\n"
    assert missing.returncode == 1 and "no branch or tag 'nope'" in missing.stderr


def test_deploy_from_a_git_url_honours_tag_no_traffic_and_flags(
    slipway: Slipway, git_root: Path, git_base: str
) -> None:
    """`--git` takes the same flags as any deploy (they were once dropped on the way)."""
    repo_with(git_root / "flagged", "first\n")
    slipway.cli("deploy", "flagged", "--git", f"{git_base}/flagged", "--ref", "main")
    repo_with(git_root / "flagged", "second\n")

    out = slipway.cli("deploy", "flagged", "--git", f"{git_base}/flagged", "--ref", "main",
                      "--no-traffic", "--tag", "rc", "--env", "MODE=rc",
                      "--memory", "96Mi")  # fmt: skip

    assert "(0%: no traffic" in out.stdout
    assert slipway.get("flagged.localhost").text == "first\n"  # what served keeps serving
    assert slipway.get("rc--flagged.localhost").text == "second\n"
    spec = slipway.api_get("/v1/services/flagged").json()["spec"]
    container = spec["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "MODE", "value": "rc"} in container["env"]
    assert container["resources"]["limits"]["memory"] == "96Mi"


def test_signed_github_push_builds_and_deploys(
    slipway: Slipway, tmp_path: Path, git_root: Path, docker_client: docker.DockerClient
) -> None:
    # A service that tracks the repository (annotation), first deployed from an image.
    ref = f"{slipway.env['SLIPWAY_REGISTRY']}/hooked/app"
    push_image(docker_client, str(write_app(tmp_path / "img", body="image\n")), f"{ref}:1")
    doc = tmp_path / "svc.yaml"
    doc.write_text(
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: hooked\n"
        "  annotations:\n    slipway.dev/github-repository: Codertocat/Hello-World\n"
        "    slipway.dev/deploy-branch: master\n"
        f"spec:\n  template:\n    spec:\n      containers:\n        - image: {ref}:1\n"
    )
    slipway.cli("services", "replace", str(doc))

    # Slipway clones SLIPWAY_GITHUB_URL/<full_name>.git; the payload's clone_url (here another
    # repository, which serves something else) is not followed.
    tracked = git_root / "Codertocat" / "Hello-World.git"
    sha = repo_with(tracked, "from a webhook\n")
    payload = json.loads((FIXTURES / "push_with-new-branch.payload.json").read_text())
    payload["after"] = sha
    payload["repository"]["clone_url"] = str(git_root / "repo")
    subprocess.run(["git", "branch", "-m", "master"], cwd=tracked, check=True)
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    delivery = str(uuid.uuid4())
    headers = {
        "Host": f"localhost:{slipway.ingress_port}",  # through HAProxy, as GitHub would arrive
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": signature,
        "Content-Type": "application/json",
    }
    url = f"http://127.0.0.1:{slipway.ingress_port}/hooks/github"

    answer = httpx.post(url, content=body, headers=headers, timeout=10)

    assert answer.status_code == 202, answer.text
    outcome = ""
    deadline = time.monotonic() + 120
    while not outcome.startswith(("built", "failed")) and time.monotonic() < deadline:
        time.sleep(0.5)
        mine = [d for d in slipway.api_get("/v1/deliveries").json() if d["id"] == delivery]
        outcome = mine[0]["outcome"] if mine else ""
    assert outcome.startswith("built"), outcome
    assert slipway.get("hooked").text == "from a webhook\n"
    assert slipway.get(f"commit-{sha[:7]}--hooked.localhost").text == "from a webhook\n"

    # The same delivery again is not built twice; a bad signature builds nothing.
    again = httpx.post(url, content=body, headers=headers, timeout=10)
    assert again.status_code == 200 and "duplicate" in again.text
    forged = {**headers, "X-GitHub-Delivery": str(uuid.uuid4()), "X-Hub-Signature-256": "sha256=00"}
    assert httpx.post(url, content=body, headers=forged, timeout=10).status_code == 401
