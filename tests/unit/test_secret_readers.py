"""Which serving revisions read a secret (what `DELETE /v1/secrets/{name}` refuses over), and the
`slipway secrets delete` command that asks, with and without --force."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from pipeline.api.secrets import in_use, readers
from pipeline.core.records import Revision
from tests.unit.clirecorder import Recorder, install, run
from tests.unit.factories import instance, revision, service, snapshot


def reading(rev: Revision, **env: str) -> Revision:
    """`rev` with env vars read from secrets: VAR="secret:key"."""
    refs = [
        {"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        for var, (secret, _, key) in ((var, ref.partition(":")) for var, ref in env.items())
    ]
    template: dict[str, Any] = {"spec": {"containers": [{"image": "x", "env": refs}]}}
    return replace(rev, template=template)


OLD = reading(revision("web", 1), DB_PASSWORD="db:password")
NEW = reading(revision("web", 2), DB_PASSWORD="db:password", TOKEN="api:token")
OTHER = reading(revision("api", 1), API_DB="db:url")


BOTH = {"web-00001": ["DB_PASSWORD"], "web-00002": ["DB_PASSWORD"]}
SPLIT = [{"revisionName": "web-00001", "percent": 50}, {"revisionName": "web-00002", "percent": 50}]
TAGGED = [
    {"latestRevision": True, "percent": 100},
    {"revisionName": "web-00001", "percent": 0, "tag": "old"},
]
PINNED = [{"revisionName": "web-00001", "percent": 100}]


@pytest.mark.parametrize(
    ("traffic", "instances", "expected"),
    [
        pytest.param(None, [], {"web-00002": ["DB_PASSWORD"]}, id="latest-serves"),
        pytest.param(SPLIT, [], BOTH, id="split"),
        pytest.param(TAGGED, [], BOTH, id="tag-url-at-zero"),
        pytest.param(None, [instance("web-00001", "a1")], BOTH, id="still-has-an-instance"),
        pytest.param(PINNED, [], {"web-00001": ["DB_PASSWORD"]}, id="old-pinned"),
    ],
)
def test_readers_are_the_revisions_that_serve_and_read_the_secret(
    traffic: list[dict[str, Any]] | None, instances: list[Any], expected: dict[str, list[str]]
) -> None:
    state = snapshot([service("web", traffic)], [OLD, NEW])

    assert readers(state, instances, "db") == expected


def test_a_revision_without_traffic_or_instances_does_not_count() -> None:
    state = snapshot([service("web"), service("api", [])], [OLD, NEW, OTHER])

    assert readers(state, [], "api") == {"web-00002": ["TOKEN"]}
    assert readers(state, [], "nope") == {}


def test_the_refusal_names_revisions_env_and_the_ways_on() -> None:
    message = in_use("db", {"web-00001": ["DB_PASSWORD"], "api-00001": ["A", "B"]})

    assert "web-00001 (env DB_PASSWORD); api-00001 (env A, B)" in message
    assert "--remove-env" in message and "slipway secrets delete db --force" in message


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    return install(monkeypatch)


def test_secrets_delete_sends_force_only_when_asked(recorder: Recorder) -> None:
    recorder.replies[("DELETE", "/v1/secrets/db")] = {"deleted": "db", "breaks": []}

    plain = run("secrets", "delete", "db")

    assert plain.exit_code == 0 and plain.stdout == "Deleted secret db\n"
    assert recorder.calls[-1][2] == {"params": None}


def test_secrets_delete_force_says_which_revisions_break(recorder: Recorder) -> None:
    recorder.replies[("DELETE", "/v1/secrets/db")] = {
        "deleted": "db", "breaks": ["web-00001", "web-00002"],
    }  # fmt: skip

    forced = run("secrets", "delete", "db", "--force")

    assert forced.exit_code == 0
    assert recorder.calls[-1][2] == {"params": {"force": "true"}}
    assert forced.stdout.splitlines() == [
        "Deleted secret db",
        "These revisions cannot start new instances now (a scale-up, a restart or a crash "
        "fails): web-00001, web-00002; deploy their services without db.",
    ]

