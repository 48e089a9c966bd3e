"""Per-service webhook secrets: a service with `slipway.dev/webhook-secret` moves only for a
delivery signed with its own secret; the platform's secret (or another service's) is not enough.

Through the real webhook route, runner and store of the integration tests (`hooks`), signed the
way GitHub signs; only the deployer records instead of building.
"""

from __future__ import annotations

import copy
import json

import pytest

from tests.integration.test_webhooks import (
    REPO,
    SECRET,
    VAULT_REPO,
    VAULT_SECRET,
    Hooks,
    fixture,
    git,
    hooks,
)
from webhooks.signatures import github_signature

__all__ = ["hooks"]


def _push(repository: str, sha: str) -> bytes:
    payload = copy.deepcopy(fixture("push_with-new-branch.payload"))
    payload.update(ref="refs/heads/main", after=sha)
    payload["repository"]["full_name"] = repository
    return json.dumps(payload).encode()


@pytest.mark.parametrize(
    ("repository", "secret", "deploys", "ignored"),
    [
        pytest.param(VAULT_REPO, SECRET, [], "vault: not signed with its webhook secret",
                     id="platform-secret-cannot-move-a-service-with-its-own"),
        pytest.param(VAULT_REPO, VAULT_SECRET, ["vault"], "", id="its-own-secret-moves-it"),
        pytest.param(REPO, VAULT_SECRET, [], "hello: not signed with its webhook secret",
                     id="a-service-secret-cannot-move-the-others"),
    ],
)  # fmt: skip
def test_who_may_sign_for_a_service(
    hooks: Hooks, repository: str, secret: bytes, deploys: list[str], ignored: str
) -> None:
    repo = hooks.repo if repository == REPO else hooks.repo.parent / "vault.git"
    body = _push(repository, git(repo, "rev-parse", "HEAD"))
    before = len(hooks.deployer.deploys)

    answer = hooks.post(body, event="push", signature=github_signature(secret, body))
    hooks.settle()

    assert answer.status_code == (202 if deploys else 200), answer.text  # 200: nothing to run
    assert [d[0] for d in hooks.deployer.deploys[before:]] == deploys
    reasons = [a.get("reason", "") for a in answer.json()["actions"]]
    assert (ignored in reasons) if ignored else not any(reasons), reasons


def test_a_signature_from_no_known_secret_is_401(hooks: Hooks) -> None:
    body = _push(VAULT_REPO, "a" * 40)

    answer = hooks.post(body, event="push", signature=github_signature(b"guessed", body))

    assert answer.status_code == 401
