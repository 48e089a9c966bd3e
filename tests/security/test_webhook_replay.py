"""Replaying an old signed push under a new delivery id must not roll a service back.

GitHub does not sign `X-GitHub-Delivery`, so a captured body can be sent again with a fresh id.
The commit check runs on a real clone: a real repository made with `git`, served over smart
HTTP (tests/gitserver.py stands for GitHub), cloned by dulwich.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.build import gitsources
from pipeline.build.gitsources import StaleCommit
from tests.gitserver import serving

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
