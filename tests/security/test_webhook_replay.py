"""Replaying an old signed push under a new delivery id must not roll a service back.

GitHub does not sign `X-GitHub-Delivery`, so a captured body can be sent again with a fresh id.
The commit check runs on a real clone: a real repository made with `git`, served over smart
HTTP (tests/gitserver.py stands for GitHub), cloned by dulwich; the last case sends the signed
bodies through the real webhook route and runner (only the deployer records instead of building).
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.build import gitsources
from pipeline.build.gitsources import StaleCommit
from tests.gitserver import serving
from tests.integration.test_webhooks import Hooks, hooks

__all__ = ["hooks"]  # the real webhook route, runner and store of the integration tests

HTTP = frozenset({"https", "http"})
GIT_ENV = {"GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.test",
           "GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@example.test",
           "PATH": "/usr/bin:/bin"}  # fmt: skip


def _commit(repo: Path, text: str) -> str:
    (repo / "index.html").write_text(text)
    for args in (["add", "-A"], ["commit", "-q", "-m", text]):
        subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, check=True)
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, env=GIT_ENV, check=True,
                         capture_output=True, text=True)  # fmt: skip
    return out.stdout.strip()


@pytest.fixture
def history(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    repo = tmp_path / "acme" / "app.git"
    repo.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, env=GIT_ENV, check=True)
    shas = [_commit(repo, f"v{i}\n") for i in range(3)]
    with serving(tmp_path) as base:
        yield f"{base}/acme/app.git", shas


def test_an_older_commit_is_refused(history: tuple[str, list[str]]) -> None:
    url, (v0, _v1, v2) = history

    with pytest.raises(StaleCommit, match=f"{v0[:7]} is older than {v2[:7]}"):
        gitsources.clone_at(url, v0, schemes=HTTP, newer_than=v2)


def test_the_deployed_commit_again_is_refused(history: tuple[str, list[str]]) -> None:
    url, (_v0, _v1, v2) = history

    with pytest.raises(StaleCommit, match="already deployed"):
        gitsources.clone_at(url, v2, schemes=HTTP, newer_than=v2)


def test_a_newer_commit_and_a_force_push_are_built(history: tuple[str, list[str]]) -> None:
    url, (v0, v1, v2) = history

    assert gitsources.clone_at(url, v2, schemes=HTTP, newer_than=v1)
    # The deployed commit is not in the history any more (force-pushed away): build.
    assert gitsources.clone_at(url, v0, schemes=HTTP, newer_than="f" * 40)


def test_an_old_push_replayed_under_a_new_delivery_id_is_recorded_not_built(hooks: Hooks) -> None:
    old = hooks.commit("old\n")
    new = hooks.commit("new\n")
    for sha in (old, new):  # the history as GitHub sent it, each with its own delivery id
        assert hooks.post(hooks.push(sha=sha), event="push").status_code == 202
        hooks.settle()
    built = len(hooks.deployer.deploys)

    replays = {}
    for sha in (old, new):  # captured bodies, signed as they were, sent again with fresh ids
        delivery = str(uuid.uuid4())
        assert hooks.post(hooks.push(sha=sha), event="push", delivery=delivery).status_code == 202
        replays[sha] = delivery
    hooks.settle()

    assert len(hooks.deployer.deploys) == built
    assert hooks.deliveries.get(replays[old]).outcome == (
        f"ignored: {old[:7]} is older than {new[:7]}, which is deployed"
    )
    assert hooks.deliveries.get(replays[new]).outcome == f"ignored: {new[:7]} is already deployed"
