"""webhooks.keys as a table: which secrets may have signed, and what each signature may move."""

from __future__ import annotations

import pytest

from webhooks.actions import Action, Deploy, Ignore, RemoveTag
from webhooks.keys import Signer, screened, signers
from webhooks.tracking import Tracking

OPEN = Tracking(service="open", github="acme/app")
OWN = Tracking(service="own", github="acme/app", secret=("own-hook", "token"))
GONE = Tracking(service="gone", github="acme/app", secret=("never-set", "token"))
STORE = {("own-hook", "token"): b"own-secret"}
PLATFORM = Signer(secret=b"platform", services=None)
OWN_SIGNER = Signer(secret=b"own-secret", services=frozenset({"own"}))


def _deploy(service: str) -> Deploy:
    return Deploy(service=service, clone_url="https://github.com/acme/app.git", sha="a" * 40,
                  branch="main", preview_tag="")  # fmt: skip


@pytest.mark.parametrize(
    ("platform", "trackers", "expected"),
    [
        pytest.param(b"platform", [OPEN], [PLATFORM], id="platform-only"),
        pytest.param(b"platform", [OPEN, OWN], [PLATFORM, OWN_SIGNER], id="and-a-service-own"),
        pytest.param(None, [OWN], [OWN_SIGNER], id="no-platform-secret"),
        pytest.param(None, [GONE], [], id="a-secret-never-set-signs-nothing"),
    ],
)
def test_signers(platform: bytes | None, trackers: list[Tracking], expected: list[Signer]) -> None:
    assert signers(platform, trackers, lambda s, k: STORE.get((s, k))) == expected


REFUSED = "not signed with its webhook secret"


@pytest.mark.parametrize(
    ("matched", "actions", "kept"),
    [
        pytest.param([PLATFORM], [_deploy("open"), _deploy("own")], ["open", f"own: {REFUSED}"],
                     id="platform-moves-only-services-without-their-own"),
        pytest.param([OWN_SIGNER], [_deploy("open"), _deploy("own")], [f"open: {REFUSED}", "own"],
                     id="own-secret-moves-only-its-service"),
        pytest.param([PLATFORM, OWN_SIGNER], [_deploy("open"), _deploy("own")], ["open", "own"],
                     id="same-secret-both"),
        pytest.param([PLATFORM], [RemoveTag(service="own", tag="pr-1"), Ignore(reason="pong")],
                     [f"own: {REFUSED}", "pong"], id="remove-tag-guarded-ignore-kept"),
    ],
)  # fmt: skip
def test_screened(matched: list[Signer], actions: list[Action], kept: list[str]) -> None:
    out = screened(actions, trackers=[OPEN, OWN], matched=matched)

    assert [a.reason if isinstance(a, Ignore) else a.service for a in out] == kept
