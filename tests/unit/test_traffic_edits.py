"""Traffic block edits made by deployments: state in → state out."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.core import traffic
from pipeline.core.errors import InvalidInput
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


def _revs(*statuses: str) -> list[Any]:
    return [revision("hello", i + 1, s) for i, s in enumerate(statuses)]


@pytest.mark.parametrize(
    ("entries", "edit", "expected"),
    [
        pytest.param([LATEST], traffic.Change(to_revisions={"hello-00001": 90, "hello-00002": 10}),
                     [{"revisionName": "hello-00001", "percent": 90},
                      {"revisionName": "hello-00002", "percent": 10}], id="split"),
        pytest.param([LATEST, {"tag": "canary", "revisionName": "hello-00002", "percent": 0}],
                     traffic.Change(to_tags={"canary": 5}, to_latest=True),
                     [{"latestRevision": True, "percent": 95},
                      {"tag": "canary", "revisionName": "hello-00002", "percent": 5}],
                     id="tag-share-rest-to-latest"),
        pytest.param([LATEST, {"tag": "old", "revisionName": "hello-00001", "percent": 0}],
                     traffic.Change(set_tags={"canary": "hello-00002"}, remove_tags=("old",)),
                     [LATEST, {"tag": "canary", "revisionName": "hello-00002", "percent": 0}],
                     id="tags-only-keep-split"),
        pytest.param([{"latestRevision": True, "percent": 95},
                      {"tag": "canary", "revisionName": "hello-00002", "percent": 5}],
                     traffic.Change(set_tags={"old": "hello-00001"}),
                     [{"latestRevision": True, "percent": 95},
                      {"tag": "canary", "revisionName": "hello-00002", "percent": 5},
                      {"tag": "old", "revisionName": "hello-00001", "percent": 0}],
                     id="a-carrying-tag-stays-on-its-share"),
        pytest.param([{"latestRevision": True, "percent": 95},
                      {"tag": "canary", "revisionName": "hello-00002", "percent": 5}],
                     traffic.Change(set_tags={"canary": "hello-00001"}),
                     [{"latestRevision": True, "percent": 95},
                      {"revisionName": "hello-00002", "percent": 5},
                      {"tag": "canary", "revisionName": "hello-00001", "percent": 0}],
                     id="a-moved-tag-leaves-the-share-untagged"),
        pytest.param([{"tag": "stable", "revisionName": "hello-00001", "percent": 100}],
                     traffic.Change(to_latest=True),
                     [LATEST, {"tag": "stable", "revisionName": "hello-00001", "percent": 0}],
                     id="tag-stays-when-split-moves"),
    ],
)  # fmt: skip
def test_change(entries: list[dict[str, Any]], edit: traffic.Change, expected: Any) -> None:
    assert traffic.change(entries, edit, revisions=_revs("Ready", "Ready", "Failed")) == expected


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        pytest.param(traffic.Change(to_revisions={"hello-00001": 90}), "sum to 90, want 100",
                     id="short"),
        pytest.param(traffic.Change(to_revisions={"hello-00009": 100}), "no revision 'hello-00009'",
                     id="unknown-revision"),
        pytest.param(traffic.Change(to_revisions={"hello-00003": 100}),
                     "failed revision is refused", id="failed-revision"),
        pytest.param(traffic.Change(to_tags={"nope": 100}), "no tag 'nope'", id="unknown-tag"),
        pytest.param(traffic.Change(remove_tags=("nope",)), "no tag 'nope'", id="remove-unknown"),
        pytest.param(traffic.Change(to_revisions={"hello-00001": 60, "hello-00002": 60},
                                    to_latest=True), "over 100", id="over"),
    ],
)  # fmt: skip
def test_bad_changes(edit: traffic.Change, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        traffic.change([LATEST], edit, revisions=_revs("Ready", "Ready", "Failed"))


def test_rollback_target() -> None:
    revs = _revs("Ready", "Failed", "Ready", "Ready")
    assert traffic.previous_serving([LATEST], revisions=revs) == "hello-00003"
    pinned = [{"revisionName": "hello-00003", "percent": 100}]
    assert traffic.previous_serving(pinned, revisions=revs) == "hello-00001"
    with pytest.raises(InvalidInput, match="no previous ready revision"):
        traffic.previous_serving([LATEST], revisions=_revs("Ready"))


def test_garbage_collection_never_takes_serving_or_tagged_revisions() -> None:
    revs = _revs("Ready", "Ready", "Failed", "Ready", "Ready", "Pending")
    entries = [
        {"revisionName": "hello-00002", "percent": 100},
        {"tag": "keep", "revisionName": "hello-00001", "percent": 0},
    ]
    # Idle: 3 (failed) and 4, 5 (ready, unrouted); 6 is pending. Keep the newest one idle.
    assert traffic.collectable(entries, revisions=revs, keep=1) == ["hello-00003", "hello-00004"]
    assert traffic.collectable([LATEST], revisions=revs, keep=0) == [
        "hello-00001", "hello-00002", "hello-00003", "hello-00004",
    ]  # fmt: skip
