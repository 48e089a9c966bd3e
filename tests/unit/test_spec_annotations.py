"""The template's autoscaling annotations: what they read as, what is refused (and where),
and the durations they hold.
"""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.core.errors import InvalidSpec
from pipeline.spec import AutoscalingAnnotations, parse_duration
from tests.unit.specdocs import SCALE, SCALE_PATH, assert_refused_at_its_path, edit

ANNOTATIONS_REFUSED = [
    pytest.param(
        edit((f'{SCALE}min-scale"]', "-1")),
        f"{SCALE_PATH}min-scale: expected a whole number of instances",
        id="min-scale-negative",
    ),
    pytest.param(
        edit((f'{SCALE}min-scale"]', 1)),
        f"{SCALE_PATH}min-scale: expected a string, got the number 1; quote it",
        id="annotation-not-string",
    ),
    pytest.param(
        edit((f'{SCALE}min-scale"]', "5"), (f'{SCALE}max-scale"]', "2")),
        f"{SCALE_PATH}max-scale: max-scale 2 is below min-scale 5",
        id="max-below-min",
    ),
    pytest.param(
        edit((f'{SCALE}target"]', "0")),
        f"{SCALE_PATH}target: must be at least 0.01",
        id="target-zero",
    ),
    pytest.param(
        edit((f'{SCALE}target-utilization-percentage"]', "150")),
        f"{SCALE_PATH}target-utilization-percentage: must be between 1 and 100",
        id="utilization-above-100",
    ),
    pytest.param(
        edit((f'{SCALE}metric"]', "latency")),
        f"{SCALE_PATH}metric: expected 'concurrency' or 'rps', got 'latency'",
        id="metric-unknown",
    ),
    pytest.param(
        edit((f'{SCALE}class"]', "hpa.autoscaling.knative.dev")),
        f"{SCALE_PATH}class: not supported by Slipway yet",
        id="class-hpa",
    ),
    pytest.param(
        edit((f'{SCALE}min_scale"]', "1")),
        f"{SCALE_PATH}min_scale: unknown autoscaling annotation; did you mean "
        "'autoscaling.knative.dev/min-scale'?",
        id="unknown-autoscaling-annotation",
    ),
    pytest.param(
        edit((f'{SCALE}target-burst-capacity"]', "200")),
        f"{SCALE_PATH}target-burst-capacity: not supported by Slipway yet",
        id="knative-only-autoscaling-annotation",
    ),
    pytest.param(
        edit((f'{SCALE}window"]', "5s")),
        f"{SCALE_PATH}window: must be between 6s and 1h, got '5s'",
        id="window-too-short",
    ),
    pytest.param(
        edit((f'{SCALE}window"]', "2h")),
        f"{SCALE_PATH}window: must be between 6s and 1h, got '2h'",
        id="window-too-long",
    ),
    pytest.param(
        edit((f'{SCALE}window"]', "sixty")),
        f"{SCALE_PATH}window: 'sixty' is not a duration",
        id="window-not-a-duration",
    ),
    pytest.param(
        edit(('metadata.annotations["autoscaling.knative.dev/min-scale"]', "1")),
        "metadata.annotations.autoscaling.knative.dev/min-scale: autoscaling annotations "
        "belong on the revision template",
        id="autoscaling-on-service-metadata",
    ),
]


@pytest.mark.parametrize(("source", "expected"), ANNOTATIONS_REFUSED)
def test_annotations_refused_at_their_path(source: str | dict[str, Any], expected: str) -> None:
    assert_refused_at_its_path(source, expected)


@pytest.mark.parametrize(
    ("annotations", "container_concurrency", "target"),
    [
        pytest.param({}, 0, 70.0, id="default-100-at-70-percent"),
        pytest.param({}, 10, 7.0, id="container-concurrency"),
        pytest.param({"autoscaling.knative.dev/target": "20"}, 10, 14.0, id="annotation"),
        pytest.param({"autoscaling.knative.dev/metric": "rps"}, 0, 140.0, id="rps-default"),
        pytest.param(
            {"autoscaling.knative.dev/target-utilization-percentage": "100"},
            0,
            100.0,
            id="full-utilization",
        ),
    ],
)
def test_target_per_instance(
    annotations: dict[str, str], container_concurrency: int, target: float
) -> None:
    settings = AutoscalingAnnotations.from_annotations(annotations)
    assert settings.target_per_instance(container_concurrency) == pytest.approx(target)


def test_autoscaling_from_annotations_raises_invalid_spec() -> None:
    with pytest.raises(InvalidSpec) as caught:
        AutoscalingAnnotations.from_annotations({"autoscaling.knative.dev/window": "1s"})
    assert caught.value.path == "metadata.annotations.autoscaling.knative.dev/window"


def test_max_scale_zero_means_unbounded() -> None:
    settings = AutoscalingAnnotations.from_annotations(
        {"autoscaling.knative.dev/min-scale": "3", "autoscaling.knative.dev/max-scale": "0"}
    )
    assert (settings.min_scale, settings.max_scale) == (3, 0)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("60s", 60.0, id="seconds"),
        pytest.param("1m", 60.0, id="minutes"),
        pytest.param("1h30m", 5400.0, id="compound"),
        pytest.param("1.5s", 1.5, id="fraction"),
        pytest.param("500ms", 0.5, id="millis"),
        pytest.param("0", 0.0, id="zero"),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "60", "1x", "s", "-1s", "1m 30s"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)
