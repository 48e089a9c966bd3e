"""Knative's `autoscaling.knative.dev/*` revision annotations, checked and typed.

Slipway's autoscaler implements Knative's KPA, so it reads the same annotations with the same
defaults (Knative's `config-autoscaler`). Annotations are strings on the wire; this module is the
one place that turns them into numbers. The keys themselves are declared in `core.annotations`.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pipeline.core.annotations import (
    AUTOSCALING_PREFIX,
    CLASS_ANNOTATION,
    FROZEN_RETENTION_ANNOTATION,
    HPA_CLASS,
    INITIAL_SCALE_ANNOTATION,
    KNATIVE_ONLY_AUTOSCALING,
    KPA_CLASS,
    LEGACY_AUTOSCALING,
    MAX_SCALE_ANNOTATION,
    METRIC_ANNOTATION,
    MIN_SCALE_ANNOTATION,
    SCALE_DOWN_DELAY_ANNOTATION,
    TARGET_ANNOTATION,
    TARGET_UTILIZATION_ANNOTATION,
    WINDOW_ANNOTATION,
)
from pipeline.spec.base import NOT_YET, SpecProblem
from pipeline.spec.quantities import parse_duration

SUPPORTED = (
    MIN_SCALE_ANNOTATION,
    MAX_SCALE_ANNOTATION,
    INITIAL_SCALE_ANNOTATION,
    TARGET_ANNOTATION,
    TARGET_UTILIZATION_ANNOTATION,
    WINDOW_ANNOTATION,
    SCALE_DOWN_DELAY_ANNOTATION,
    METRIC_ANNOTATION,
    CLASS_ANNOTATION,
)

WINDOW_MIN_SECONDS = 6.0
WINDOW_MAX_SECONDS = 3600.0
SCALE_DOWN_DELAY_MAX_SECONDS = 3600.0
TARGET_MIN = 0.01  # Knative's autoscaling.TargetMin
# Knative's config-autoscaler defaults.
CONCURRENCY_TARGET_DEFAULT = 100.0
RPS_TARGET_DEFAULT = 200.0
TARGET_UTILIZATION_DEFAULT = 70.0
# An idle instance is kept frozen this long (Cloud Run keeps idle instances up to 15 minutes).
FROZEN_RETENTION_DEFAULT_SECONDS = 900.0
FROZEN_RETENTION_MAX_SECONDS = 24 * 3600.0


@dataclass(frozen=True, kw_only=True)
class AutoscalingAnnotations:
    """Typed autoscaling settings of one revision; unset annotations take Knative's defaults."""

    autoscaler_class: str = KPA_CLASS
    metric: Literal["concurrency", "rps"] = "concurrency"
    min_scale: int = 0
    max_scale: int = 0  # 0 means no upper bound, as in Knative
    initial_scale: int = 1
    target: float | None = None  # None: containerConcurrency, else the metric's default
    target_utilization_percentage: float = TARGET_UTILIZATION_DEFAULT
    window_seconds: float = 60.0
    scale_down_delay_seconds: float = 0.0

    @classmethod
    def from_annotations(cls, annotations: Mapping[str, str]) -> AutoscalingAnnotations:
        """Read and check the autoscaling annotations; `InvalidSpec` names the bad key."""
        try:
            return parse_autoscaling(annotations)
        except SpecProblem as problem:
            raise problem.to_invalid_spec("metadata.annotations") from None

    def target_per_instance(self, container_concurrency: int) -> float:
        """Requests in flight (or per second) per instance the KPA aims for.

        Knative's ResolveMetricTarget: the target annotation, else containerConcurrency, else
        the metric's default; times the utilization percentage.
        """
        if self.target is not None:
            total = self.target
        elif self.metric == "rps":
            total = RPS_TARGET_DEFAULT
        elif container_concurrency > 0:
            total = float(container_concurrency)
        else:
            total = CONCURRENCY_TARGET_DEFAULT
        return max(TARGET_MIN, total * self.target_utilization_percentage / 100)


def parse_autoscaling(annotations: Mapping[str, str]) -> AutoscalingAnnotations:
    """Raise SpecProblem with the annotation key, as spelled, as path for the first bad one."""
    current = with_current_keys(annotations)
    try:
        return _parse(current)
    except SpecProblem as problem:
        raise SpecProblem(problem.message, path=_as_written(problem.path, annotations)) from None


def _parse(annotations: Mapping[str, str]) -> AutoscalingAnnotations:
    for key in annotations:
        if key.startswith(AUTOSCALING_PREFIX) and key not in SUPPORTED:
            raise SpecProblem(_unknown_key(key), path=key)
    values = {key: annotations[key] for key in SUPPORTED if key in annotations}
    settings = AutoscalingAnnotations(
        autoscaler_class=_class(values.get(CLASS_ANNOTATION, KPA_CLASS)),
        metric=_metric(values.get(METRIC_ANNOTATION, "concurrency")),
        min_scale=_whole(values, MIN_SCALE_ANNOTATION, 0),
        max_scale=_whole(values, MAX_SCALE_ANNOTATION, 0),
        initial_scale=_whole(values, INITIAL_SCALE_ANNOTATION, 1),
        target=_number(values, TARGET_ANNOTATION, low=TARGET_MIN, high=math.inf),
        target_utilization_percentage=_number(
            values, TARGET_UTILIZATION_ANNOTATION, low=1, high=100
        )
        or TARGET_UTILIZATION_DEFAULT,
        window_seconds=_duration(
            values, WINDOW_ANNOTATION, 60.0, WINDOW_MIN_SECONDS, WINDOW_MAX_SECONDS
        ),
        scale_down_delay_seconds=_duration(
            values, SCALE_DOWN_DELAY_ANNOTATION, 0.0, 0.0, SCALE_DOWN_DELAY_MAX_SECONDS
        ),
    )
    if settings.max_scale and settings.min_scale > settings.max_scale:
        raise SpecProblem(
            f"max-scale {settings.max_scale} is below min-scale {settings.min_scale}; "
            "raise max-scale, lower min-scale, or set max-scale to '0' for no upper bound",
            path=MAX_SCALE_ANNOTATION,
        )
    return settings


def frozen_retention_seconds(annotations: Mapping[str, str]) -> float:
    """`slipway.dev/frozen-retention-period`: seconds an idle instance stays frozen before it
    stops; 0 turns freezing off. SpecProblem, with the key as path, for a bad value."""
    return _duration(
        annotations, FROZEN_RETENTION_ANNOTATION, FROZEN_RETENTION_DEFAULT_SECONDS, 0.0,
        FROZEN_RETENTION_MAX_SECONDS,
    )  # fmt: skip


def with_current_keys(annotations: Mapping[str, str]) -> dict[str, str]:
    """The annotations with Knative's legacy spellings (`minScale`) under their current keys
    (`min-scale`), so one parser reads both; both spellings with different values are refused."""
    current = dict(annotations)
    for legacy, key in LEGACY_AUTOSCALING.items():
        if legacy not in annotations:
            continue
        value = current.pop(legacy)
        if key in annotations and annotations[key] != value:
            raise SpecProblem(
                f"{value!r} here but {annotations[key]!r} in {key!r}, the current spelling of "
                f"the same setting (Knative reads {key!r}): keep {key!r} and remove this one",
                path=legacy,
            )
        current[key] = value
    return current


def _as_written(key: str, annotations: Mapping[str, str]) -> str:
    """The key as the user spelled it, for error paths."""
    if key in annotations:
        return key
    return next(
        (old for old, new in LEGACY_AUTOSCALING.items() if new == key and old in annotations), key
    )


def _unknown_key(key: str) -> str:
    if key in KNATIVE_ONLY_AUTOSCALING:
        return f"{NOT_YET} (Slipway's autoscaler does not implement this Knative setting)"
    close = difflib.get_close_matches(key.lower(), SUPPORTED, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else "expected one of: " + ", ".join(SUPPORTED)
    return f"unknown autoscaling annotation; {hint}"


def _class(value: str) -> str:
    if value == KPA_CLASS:
        return value
    if value == HPA_CLASS:
        raise SpecProblem(
            f"{NOT_YET}: Slipway's autoscaler is Knative's KPA; use {KPA_CLASS!r} or omit it",
            path=CLASS_ANNOTATION,
        )
    raise SpecProblem(f"expected {KPA_CLASS!r}, got {value!r}", path=CLASS_ANNOTATION)


def _metric(value: str) -> Literal["concurrency", "rps"]:
    if value == "concurrency":
        return "concurrency"
    if value == "rps":
        return "rps"
    if value in ("cpu", "memory"):
        raise SpecProblem(
            f"metric {value!r} is {NOT_YET} (it needs Knative's HPA class); "
            "use 'concurrency' or 'rps'",
            path=METRIC_ANNOTATION,
        )
    raise SpecProblem(f"expected 'concurrency' or 'rps', got {value!r}", path=METRIC_ANNOTATION)


def _whole(values: Mapping[str, str], key: str, default: int) -> int:
    if key not in values:
        return default
    raw = values[key]
    if not raw.isascii() or not raw.isdigit():
        raise SpecProblem(f"expected a whole number of instances, 0 or more, got {raw!r}", path=key)
    return int(raw)


def _number(values: Mapping[str, str], key: str, *, low: float, high: float) -> float | None:
    if key not in values:
        return None
    raw = values[key]
    try:
        number = float(raw)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise SpecProblem(f"expected a number, got {raw!r}", path=key)
    if not low <= number <= high:
        bounds = f"at least {low:g}" if high == math.inf else f"between {low:g} and {high:g}"
        raise SpecProblem(f"must be {bounds}, got {raw!r}", path=key)
    return number


def _duration(
    values: Mapping[str, str], key: str, default: float, low: float, high: float
) -> float:
    if key not in values:
        return default
    raw = values[key]
    try:
        seconds = parse_duration(raw)
    except ValueError as exc:
        raise SpecProblem(str(exc), path=key) from None
    if not low <= seconds <= high:
        raise SpecProblem(
            f"must be between {_show_seconds(low)} and {_show_seconds(high)}, got {raw!r}",
            path=key,
        )
    return seconds


def _show_seconds(seconds: float) -> str:
    return f"{seconds / 3600:g}h" if seconds and seconds % 3600 == 0 else f"{seconds:g}s"
