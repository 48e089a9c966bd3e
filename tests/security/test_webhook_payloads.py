"""A signed payload may say which repository moved, never where to clone from.

Before, `repository.clone_url` was cloned as given: a payload signed with the (one, global)
secret and `clone_url` = a local path or `file://` deployed that repository into a tracked
service. The classification below is the real code the webhook route runs; the clone URL it
hands the runner must be the configured host's, whatever the payload carries.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from pipeline.core.errors import InvalidInput
from pipeline.core.records import Service
from tests.integration.test_webhooks import FIXTURES
from webhooks.actions import Deploy
from webhooks.github import github_actions
from webhooks.gitlab import gitlab_actions
from webhooks.hosts import GitHosts

HOSTILE_URLS = ["/var/lib/slipway/repos/billing.git", "file:///root/secrets.git",
                "ssh://attacker.example/x.git", "ext::sh -c 'id>&2'"]  # fmt: skip


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _service(**annotations: str) -> Service:
    spec = {"metadata": {"name": "shop", "annotations": annotations}, "spec": {}}
    return Service(name="shop", spec=spec, generation=1, created_at=T0)


def _push(**repository: Any) -> dict[str, Any]:
    recorded = (FIXTURES / "push_with-new-branch.payload.json").read_text()
    payload: dict[str, Any] = copy.deepcopy(json.loads(recorded))
    payload["repository"].update(repository)
    return payload


@pytest.mark.parametrize("hostile", HOSTILE_URLS)
def test_github_push_clone_url_is_ignored(hostile: str) -> None:
    shop = _service(**{"slipway.dev/github-repository": "Codertocat/Hello-World"})

    (action,) = github_actions("push", _push(clone_url=hostile), [shop])

    assert isinstance(action, Deploy)
    assert action.clone_url == "https://github.com/Codertocat/Hello-World.git"


@pytest.mark.parametrize("hostile", HOSTILE_URLS)
def test_gitlab_push_url_is_ignored(hostile: str) -> None:
    lab = _service(**{"slipway.dev/gitlab-project": "group/app"})
    project = {"path_with_namespace": "group/app", "git_http_url": hostile}
    payload = {"ref": "refs/heads/main", "after": "a" * 40, "checkout_sha": "a" * 40,
               "project": project}  # fmt: skip
    corp = GitHosts(gitlab="https://git.corp")

    (action,) = gitlab_actions("Push Hook", payload, [lab], hosts=corp)

    assert isinstance(action, Deploy) and action.clone_url == "https://git.corp/group/app.git"


@pytest.mark.parametrize("name", ["../../etc/x", "owner/../../x", "/abs/path", "a/b/c", "-x/y"])
def test_repository_paths_that_are_not_owner_name_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="not an owner/name path"):
        GitHosts().clone_url("github", name)
