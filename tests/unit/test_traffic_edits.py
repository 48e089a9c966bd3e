"""Traffic block edits made by deployments: state in → state out."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline import traffic
from tests.unit.factories import revision

LATEST: dict[str, Any] = {"latestRevision": True, "percent": 100}


def test_preview_pins_what_serves_by_name() -> None:
    pinned = traffic.pin_latest([LATEST], latest_ready=revision("hello", 3))
    assert pinned == [{"revisionName": "hello-00003", "percent": 100}]
    assert traffic.pin_latest([LATEST], latest_ready=None) == [LATEST]


@pytest.mark.parametrize(
    ("entries", "kwargs", "expected"),
    [
        pytest.param(
            [LATEST], {"revision": "hello-00002", "tags": ["commit-abc1234"], "promote": True},
            [LATEST, {"tag": "commit-abc1234", "revisionName": "hello-00002", "percent": 0}],
            id="deploy-branch-push",
        ),
        pytest.param(
            [{"revisionName": "hello-00001", "percent": 100}],
            {"revision": "hello-00002", "tags": ["commit-abc1234", "branch-login"],
             "promote": False},
            [{"revisionName": "hello-00001", "percent": 100},
             {"tag": "commit-abc1234", "revisionName": "hello-00002", "percent": 0},
             {"tag": "branch-login", "revisionName": "hello-00002", "percent": 0}],
            id="preview-keeps-traffic",
        ),
        pytest.param(
            [{"revisionName": "hello-00001", "percent": 100},
             {"tag": "branch-login", "revisionName": "hello-00002", "percent": 0}],
            {"revision": "hello-00003", "tags": ["branch-login"], "promote": True},
            [LATEST, {"tag": "branch-login", "revisionName": "hello-00003", "percent": 0}],
            id="tag-moves-and-pinned-traffic-returns-to-latest",
        ),
    ],
)  # fmt: skip
def test_retag(entries: list[dict[str, Any]], kwargs: dict[str, Any], expected: Any) -> None:
    assert traffic.retag(entries, keep_commit_tags=5, **kwargs) == expected


def test_only_the_newest_commit_tags_are_kept() -> None:
    entries: list[dict[str, Any]] = [LATEST]
    for n in range(1, 5):
        entries = traffic.retag(
            entries, revision=f"hello-0000{n}", tags=[f"commit-000000{n}"], promote=True,
            keep_commit_tags=2,
        )  # fmt: skip
    assert [e.get("tag") for e in entries] == [None, "commit-0000003", "commit-0000004"]


def test_removing_a_tag_keeps_its_traffic() -> None:
    entries = [
        {"tag": "stable", "revisionName": "hello-00001", "percent": 100},
        {"tag": "branch-x", "revisionName": "hello-00002", "percent": 0},
    ]
    assert traffic.without_tags(entries, {"stable", "branch-x"}) == [
        {"revisionName": "hello-00001", "percent": 100}
    ]
