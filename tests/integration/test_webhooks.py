"""The webhook boundary, over real HTTP: signature, size cap, replay protection, classification,
the background runner and a real dulwich clone of a real git repository.

What is real: the routes on a FastAPI app served by uvicorn on a loopback port, requests signed
over the exact bytes sent, the migrated SQLite store and deliveries table, and
`gitsources.clone_at` cloning, over git's smart HTTP, a repository made with the `git` CLI in
tmp_path (tests/gitserver.py serves it in GitHub's place; its URL is the payload's clone_url).
What is a stand-in: the deployer (`RecordingDeployer`), which records what
it is asked to deploy instead of building it. The real build → revision → traffic pipeline is
covered by tests/integration/test_spine.py and the git push tests; this file covers the webhook
boundary up to the `Deployer` call.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import json
import socket
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from pipeline.build import gitsources
from pipeline.core.records import Revision
from pipeline.deploy.manifests import Commit
from pipeline.deploy.rollout import Outcome
from pipeline.store.db import make_engine, migrate, session_factory
from pipeline.store.deliveries import Deliveries
from pipeline.store.state import Store
from tests.gitserver import serving
from webhooks.hosts import GitHosts
from webhooks.routes import MAX_PAYLOAD_BYTES, create_router
from webhooks.runner import Runner
from webhooks.signatures import github_signature

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "github-webhooks"
if not FIXTURES.is_dir():
    raise RuntimeError(f"GitHub webhook fixtures missing: expected them in {FIXTURES}")

SECRET = b"webhook-test-secret"
GITLAB_TOKEN = b"gitlab-test-token"
REPO = "slipway-test/app"
VAULT_REPO = "slipway-test/vault"
VAULT_SECRET = b"vault-only-secret"
SERVICE_SECRETS = {("vault-hook", "token"): VAULT_SECRET}  # Slipway secrets, as the store holds


def vault_service() -> dict[str, Any]:
    """A service whose webhooks must be signed with its own secret, not the platform's."""
    annotations = {"slipway.dev/github-repository": VAULT_REPO,
                   "slipway.dev/webhook-secret": "vault-hook"}  # fmt: skip
    return {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": {"name": "vault", "annotations": annotations},
            "spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}  # fmt: skip
# The served repository is plain HTTP on loopback (tests/gitserver.py), so this runner allows it.
CLONE_OVER_HTTP = functools.partial(gitsources.clone_at, schemes=frozenset({"https", "http"}))


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


@dataclass
class RecordingDeployer:
    """Stand-in for pipeline.deploy.deployer.Deployer: records calls, builds nothing."""

    deploys: list[tuple[str, bytes, Commit | None]] = field(default_factory=list)
    removed: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def deploy_source(
        self,
        service: str,
        *,
        source: bytes,
        env: dict[str, str],
        emit: Callable[[dict[str, Any]], None],
        commit: Commit | None = None,
    ) -> Outcome:
        with self.lock:
            self.deploys.append((service, source, commit))
            number = len(self.deploys)
        emit({"event": "build", "build": f"b{number:04d}", "builder": "dockerfile"})
        now = datetime.now(UTC)
        revision = Revision(
            name=f"{service}-{number:05d}", service=service, number=number, image="r/x@sha256:0",
            template={}, template_hash="h", status="Ready", reason="", message="",
            build_id=f"b{number:04d}", created_at=now, ready_at=now,
        )  # fmt: skip
        return Outcome(service=service, revision=revision, created=True, urls=[])

    def remove_tag(self, service: str, tag: str) -> bool:
        with self.lock:
            self.removed.append((service, tag))
        return True


def git(cwd: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_GLOBAL": "/dev/null", "PATH": "/usr/bin:/bin",
    }  # fmt: skip
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


@dataclass
class Hooks:
    url: str
    repo: Path
    clone_url: str  # the repository as served over smart HTTP
    sha: str
    first_sha: str
    deployer: RecordingDeployer
    deliveries: Deliveries
    runner: Runner
    secrets: dict[str, bytes | None]

    def post(
        self,
        body: bytes,
        *,
        event: str,
        delivery: str | None = None,
        signature: str | None = "sign",
        path: str = "/hooks/github",
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        sent = {
            "Content-Type": "application/json",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            **(headers or {}),
        }
        if signature == "sign":
            sent["X-Hub-Signature-256"] = github_signature(SECRET, body)
        elif signature is not None:
            sent["X-Hub-Signature-256"] = signature
        return httpx.post(self.url + path, content=body, headers=sent, timeout=30)

    def push(self, *, sha: str, ref: str = "refs/heads/main", **extra: Any) -> bytes:
        """GitHub's recorded push payload, pointed at the local repository."""
        payload = copy.deepcopy(fixture("push_with-new-branch.payload"))
        payload.update(ref=ref, after=sha, **extra)
        payload["repository"]["full_name"] = REPO
        payload["repository"]["clone_url"] = self.clone_url
        return json.dumps(payload).encode()

    def settle(self) -> None:
        assert self.runner.wait_idle(60), "webhook actions still running after 60 s"

    def commit(self, page: str) -> str:
        """A new commit on main (index.html = `page`): a push nothing has deployed yet."""
        (self.repo / "index.html").write_text(page)
        git(self.repo, "commit", "-q", "-am", page.strip())
        return git(self.repo, "rev-parse", "HEAD")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def hooks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hooks]:
    tmp = tmp_path_factory.mktemp("webhooks")
    repo = tmp / f"{REPO}.git"  # where the git server serves the tracked repository from
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / "Dockerfile").write_text("FROM slipway/busybox:1.35-bookworm\nCOPY . /www\n")
    (repo / "index.html").write_text("first\n")
    (repo / ".gitignore").write_text("secrets.txt\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    first_sha = git(repo, "rev-parse", "HEAD")
    (repo / "index.html").write_text("second\n")
    (repo / "about.html").write_text("about\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "second")
    sha = git(repo, "rev-parse", "HEAD")
    (repo / "secrets.txt").write_text("never shipped\n")  # ignored, untracked

    # A file, not :memory:: the runner's threads must see the same database.
    engine = make_engine(f"sqlite:///{tmp / 'slipway.db'}")
    migrate(engine)
    sessions = session_factory(engine)
    store = Store(sessions)
    store.put_service(
        "hello",
        spec={
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": {
                "name": "hello",
                "annotations": {
                    "slipway.dev/github-repository": REPO,
                    "slipway.dev/gitlab-project": REPO,
                },
            },
            "spec": {"template": {"spec": {"containers": [{"image": "x"}]}}},
        },
    )
    # A second service with its own webhook secret (tests/security/test_webhook_secrets.py).
    store.put_service("vault", spec=vault_service())
    vault_repo = tmp / f"{VAULT_REPO}.git"
    vault_repo.mkdir(parents=True)
    git(vault_repo, "init", "-q", "-b", "main")
    (vault_repo / "Dockerfile").write_text("FROM slipway/busybox:1.35-bookworm\n")
    git(vault_repo, "add", "-A")
    git(vault_repo, "commit", "-q", "-m", "vault")
    deliveries = Deliveries(sessions)
    deployer = RecordingDeployer()
    runner = Runner(deployer, deliveries, clone=CLONE_OVER_HTTP)
    secrets: dict[str, bytes | None] = {"github": SECRET, "gitlab": GITLAB_TOKEN}
    stack = contextlib.ExitStack()
    git_base = stack.enter_context(serving(tmp))
    app = FastAPI()
    app.include_router(
        create_router(
            github_secret=lambda: secrets["github"],
            gitlab_secret=lambda: secrets["gitlab"],
            store=store,
            deliveries=deliveries,
            runner=runner,
            # SLIPWAY_GITHUB_URL / SLIPWAY_GITLAB_URL: the local server stands for both hosts.
            hosts=GitHosts(github=git_base, gitlab=git_base),
            secret_of=lambda secret, key: SERVICE_SECRETS.get((secret, key)),
        )
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield Hooks(
            url=f"http://127.0.0.1:{port}", repo=repo, clone_url=f"{git_base}/{REPO}.git",
            sha=sha, first_sha=first_sha,
            deployer=deployer, deliveries=deliveries, runner=runner, secrets=secrets,
        )  # fmt: skip
        runner.wait_idle(30)
    finally:
        server.should_exit = True
        thread.join(10)
        stack.close()
        engine.dispose()


def files_in(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        out: dict[str, bytes] = {}
        for m in tar.getmembers():
            fh = tar.extractfile(m)
            out[m.name] = fh.read() if fh else b""
        return out


def test_push_clones_the_commit_and_deploys_it(hooks: Hooks) -> None:
    delivery = str(uuid.uuid4())
    r = hooks.post(hooks.push(sha=hooks.first_sha), event="push", delivery=delivery)
    assert r.status_code == 202, r.text
    assert r.json() == {
        "delivery": delivery,
        "actions": [
            {"action": "deploy", "service": "hello", "sha": hooks.first_sha,
             "branch": "main", "tag": ""},
        ],
    }  # fmt: skip
    hooks.settle()
    service, source, commit = hooks.deployer.deploys[-1]
    assert service == "hello"
    assert commit == Commit(sha=hooks.first_sha, branch="main", preview_tag="")
    # The tree at the FIRST commit, not the branch tip: HEAD was moved to the sha asked for.
    assert files_in(source) == {
        ".gitignore": b"secrets.txt\n",
        "Dockerfile": b"FROM slipway/busybox:1.35-bookworm\nCOPY . /www\n",
        "index.html": b"first\n",
    }
    row = hooks.deliveries.get(delivery)
    assert (row.provider, row.event, row.service) == ("github", "push", "hello")
    assert row.outcome.startswith("built: hello-")
    assert row.build_id is not None and row.build_id.startswith("b")


def test_replayed_delivery_is_not_built_again(hooks: Hooks) -> None:
    delivery = str(uuid.uuid4())
    body = hooks.push(sha=hooks.commit("third\n"))
    assert hooks.post(body, event="push", delivery=delivery).status_code == 202
    hooks.settle()
    built = len(hooks.deployer.deploys)
    assert files_in(hooks.deployer.deploys[-1][1])["index.html"] == b"third\n"
    again = hooks.post(body, event="push", delivery=delivery)
    assert again.status_code == 200
    assert again.json()["message"] == "duplicate delivery, not built again"
    hooks.settle()
    assert len(hooks.deployer.deploys) == built


def test_commit_not_in_repository_fails_with_the_reason(hooks: Hooks) -> None:
    delivery = str(uuid.uuid4())
    missing = "1234567" + "0" * 33
    built = len(hooks.deployer.deploys)
    assert hooks.post(hooks.push(sha=missing), event="push", delivery=delivery).status_code == 202
    hooks.settle()
    assert len(hooks.deployer.deploys) == built
    outcome = hooks.deliveries.get(delivery).outcome
    expected = f"failed: cloning {hooks.clone_url} at 1234567 failed: commit {missing}"
    assert outcome.startswith(expected)
    assert "is not in the repository" in outcome


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(None, id="missing"),
        pytest.param("sha256=" + "0" * 64, id="wrong"),
        pytest.param(github_signature(b"another secret", b"{}"), id="other-secret"),
    ],
)
def test_bad_signature_401_and_nothing_recorded(hooks: Hooks, signature: str | None) -> None:
    delivery = str(uuid.uuid4())
    built = len(hooks.deployer.deploys)
    r = hooks.post(hooks.push(sha=hooks.sha), event="push", delivery=delivery, signature=signature)
    assert r.status_code == 401, r.text
    assert "X-Hub-Signature-256" in r.json()["detail"]
    hooks.settle()
    assert len(hooks.deployer.deploys) == built
    assert all(d.id != delivery for d in hooks.deliveries.recent(limit=500))


def test_signature_over_other_bytes_than_sent_is_refused(hooks: Hooks) -> None:
    body = hooks.push(sha=hooks.sha)
    reformatted = json.dumps(json.loads(body), indent=2).encode()  # same JSON, other bytes
    r = hooks.post(reformatted, event="push", signature=github_signature(SECRET, body))
    assert r.status_code == 401


def test_non_json_400(hooks: Hooks) -> None:
    r = hooks.post(b"payload=%7B%7D", event="push")
    assert r.status_code == 400
    assert "not JSON" in r.json()["detail"]


def test_over_25_mb_413(hooks: Hooks) -> None:
    body = b" " * (MAX_PAYLOAD_BYTES + 1)
    r = hooks.post(body, event="push")
    assert r.status_code == 413
    assert "25 MB" in r.json()["detail"]


def test_over_25_mb_without_content_length_413(hooks: Hooks) -> None:
    chunk = b" " * (1024 * 1024)

    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_PAYLOAD_BYTES // len(chunk) + 1):
            yield chunk

    r = httpx.post(
        hooks.url + "/hooks/github",
        content=chunks(),
        headers={"X-GitHub-Event": "push", "X-GitHub-Delivery": str(uuid.uuid4())},
        timeout=30,
    )
    assert r.status_code == 413


def test_ping_200_pong(hooks: Hooks) -> None:
    r = hooks.post(json.dumps(fixture("ping_payload")).encode(), event="ping")
    assert r.status_code == 200
    assert r.json()["ignored"] == "pong"


def test_push_to_untracked_repository_200_with_reason(hooks: Hooks) -> None:
    body = json.dumps(fixture("push_with-new-branch.payload")).encode()
    r = hooks.post(body, event="push")
    assert r.status_code == 200
    assert r.json()["ignored"] == "no service tracks the repository Codertocat/Hello-World"


def test_branch_deleted_removes_its_tag(hooks: Hooks) -> None:
    delivery = str(uuid.uuid4())
    body = hooks.push(sha="0" * 40, ref="refs/heads/feature-x", deleted=True)
    built = len(hooks.deployer.deploys)
    r = hooks.post(body, event="push", delivery=delivery)
    assert r.status_code == 202
    hooks.settle()
    assert hooks.deployer.removed[-1] == ("hello", "branch-feature-x")
    assert len(hooks.deployer.deploys) == built
    assert hooks.deliveries.get(delivery).outcome == "removed tag: branch-feature-x"


def test_pull_request_opened_previews_and_closed_removes_tag(hooks: Hooks) -> None:
    opened = fixture("pull_request_opened.payload")
    opened["repository"]["full_name"] = REPO
    opened["pull_request"]["head"]["repo"]["full_name"] = REPO
    opened["pull_request"]["head"]["repo"]["clone_url"] = hooks.clone_url
    opened["pull_request"]["head"]["sha"] = hooks.sha
    r = hooks.post(json.dumps(opened).encode(), event="pull_request")
    assert r.status_code == 202, r.text
    hooks.settle()
    _, source, commit = hooks.deployer.deploys[-1]
    assert commit == Commit(sha=hooks.sha, branch="", preview_tag="pr-2")
    assert "about.html" in files_in(source)

    closed = fixture("pull_request_closed.payload")
    closed["repository"]["full_name"] = REPO
    r = hooks.post(json.dumps(closed).encode(), event="pull_request")
    assert r.status_code == 202
    hooks.settle()
    assert hooks.deployer.removed[-1] == ("hello", "pr-2")


def test_gitlab_push_with_token(hooks: Hooks) -> None:
    sha = hooks.commit("from gitlab\n")
    payload = {
        "object_kind": "push",
        "ref": "refs/heads/main",
        "after": sha,
        "checkout_sha": sha,
        "project": {"path_with_namespace": REPO, "git_http_url": hooks.clone_url},
    }
    body = json.dumps(payload).encode()
    delivery = str(uuid.uuid4())
    headers = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": delivery}
    refused = httpx.post(
        hooks.url + "/hooks/gitlab", content=body, timeout=30,
        headers={**headers, "X-Gitlab-Token": "wrong"},
    )  # fmt: skip
    assert refused.status_code == 401
    r = httpx.post(
        hooks.url + "/hooks/gitlab", content=body, timeout=30,
        headers={**headers, "X-Gitlab-Token": GITLAB_TOKEN.decode()},
    )  # fmt: skip
    assert r.status_code == 202, r.text
    hooks.settle()
    assert hooks.deployer.deploys[-1][2] == Commit(sha=sha, branch="main", preview_tag="")
    assert hooks.deliveries.get(delivery).provider == "gitlab"


def test_no_secret_configured_503(hooks: Hooks) -> None:
    hooks.secrets["github"] = None
    own = dict(SERVICE_SECRETS)
    SERVICE_SECRETS.clear()  # nor any service's own
    try:
        r = hooks.post(b"{}", event="ping")
    finally:
        hooks.secrets["github"] = SECRET
        SERVICE_SECRETS.update(own)
    assert r.status_code == 503
    assert "SLIPWAY_GITHUB_WEBHOOK_SECRET" in r.json()["detail"]
