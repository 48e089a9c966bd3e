"""The Service's traffic block: Knative's normalisation, and what is refused (and where)."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.core.errors import InvalidSpec
from pipeline.spec import TrafficTarget, validate_traffic
from tests.unit.specdocs import assert_refused_at_its_path, edit

TRAFFIC_REFUSED = [
    pytest.param(
        edit(("spec.traffic", [{"latestRevision": True, "percent": 90}])),
        "spec.traffic: traffic percents sum to 90, want 100",
        id="percents-sum-90",
    ),
    pytest.param(
        edit(
            (
                "spec.traffic",
                [
                    {"latestRevision": True, "percent": 50, "tag": "blue"},
                    {"revisionName": "hello-00001", "percent": 50, "tag": "blue"},
                ],
            )
        ),
        "spec.traffic[1].tag: duplicate tag 'blue'",
        id="duplicate-tag",
    ),
    pytest.param(
        edit(("spec.traffic", [{"latestRevision": True, "percent": 100, "tag": "Bad_Tag"}])),
        "spec.traffic[0].tag: invalid traffic tag 'Bad_Tag'",
        id="invalid-tag",
    ),
    pytest.param(
        edit(("spec.traffic", [{"revisionName": "world-00001", "percent": 100}])),
        "spec.traffic[0].revisionName: 'world-00001' is not a revision of service 'hello'",
        id="revision-of-another-service",
    ),
    pytest.param(
        edit(("spec.traffic", [{"revisionName": "hello-world-00001", "percent": 100}])),
        "spec.traffic[0].revisionName: 'hello-world-00001' is not a revision of service",
        id="revision-of-service-with-same-prefix",
    ),
    pytest.param(
        edit(
            (
                "spec.traffic",
                [{"revisionName": "hello-00001", "latestRevision": True, "percent": 100}],
            )
        ),
        "spec.traffic[0].latestRevision: set either revisionName or 'latestRevision: true'",
        id="revision-name-and-latest",
    ),
    pytest.param(
        edit(("spec.traffic", [{"latestRevision": False, "percent": 100}])),
        "spec.traffic[0]: needs a target",
        id="no-target",
    ),
    pytest.param(
        edit(("spec.traffic", [{"latestRevision": True, "percent": 101}])),
        "spec.traffic[0].percent: must be at most 100, got 101",
        id="percent-above-100",
    ),
    pytest.param(
        edit(("spec.traffic", [{"configurationName": "hello", "percent": 100}])),
        "spec.traffic[0].configurationName: a Service routes only to its own configuration",
        id="configuration-name",
    ),
]


@pytest.mark.parametrize(("source", "expected"), TRAFFIC_REFUSED)
def test_traffic_refused_at_their_path(source: str | dict[str, Any], expected: str) -> None:
    assert_refused_at_its_path(source, expected)


def test_validate_traffic_normalises_like_knative() -> None:
    targets = validate_traffic(
        "hello",
        [
            TrafficTarget.model_validate({"percent": 60}),
            TrafficTarget.to_revision("hello-00001", percent=40, tag="old"),
        ],
    )
    assert [(t.latest_revision, t.revision_name, t.percent, t.tag) for t in targets] == [
        (True, None, 60, None),
        (False, "hello-00001", 40, "old"),
    ]


def test_validate_traffic_defaults_to_all_latest() -> None:
    assert validate_traffic("hello", []) == [TrafficTarget.to_latest(percent=100)]


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        pytest.param(
            [TrafficTarget.to_latest(percent=90)],
            "spec.traffic: traffic percents sum to 90, want 100",
            id="sum",
        ),
        pytest.param(
            [TrafficTarget.to_revision("other-00001", percent=100)],
            "spec.traffic[0].revisionName: 'other-00001' is not a revision of service 'hello'",
            id="other-service",
        ),
        pytest.param(
            [
                TrafficTarget.to_latest(percent=100, tag="a"),
                TrafficTarget.to_revision("hello-00001", percent=0, tag="a"),
            ],
            "spec.traffic[1].tag: duplicate tag 'a'",
            id="duplicate-tag",
        ),
    ],
)
def test_validate_traffic_refuses(targets: list[TrafficTarget], expected: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        validate_traffic("hello", targets)
    assert expected in str(caught.value)
