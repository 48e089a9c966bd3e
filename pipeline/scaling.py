"""The autoscaler loop's memory: per revision, the samples and KPA state between passes.

The reconciler feeds it HAProxy's in-flight + queued count per revision on every pass and gets
back a desired instance count (pipeline.autoscaler.decide does the deciding). Zero is allowed
only with the activator in place (it holds the first request while an instance starts).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from pipeline.autoscaler import Decision, Sample, Spec, State, decide
from pipeline.revisions import config_of
from pipeline.spec.autoscaling import AutoscalingAnnotations

MAX_SAMPLES = 3600  # an hour at one a second: the longest window Knative allows


def spec_of(template: dict[str, Any], *, zero_grace_s: float = 30.0) -> Spec:
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    auto = AutoscalingAnnotations.from_annotations(annotations)
    concurrency = config_of(template, image="").container_concurrency
    return Spec(
        target=auto.target_per_instance(concurrency),
        min_scale=auto.min_scale,
        max_scale=auto.max_scale,
        window_s=auto.window_seconds,
        scale_down_delay_s=auto.scale_down_delay_seconds,
        scale_to_zero_grace_s=zero_grace_s,
    )


def initial_scale(template: dict[str, Any]) -> int:
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    auto = AutoscalingAnnotations.from_annotations(annotations)
    return max(auto.initial_scale, auto.min_scale, 1)


@dataclass
class _Track:
    samples: deque[Sample]
    state: State
    last: Decision | None = None


class Scaler:
    def __init__(self, *, allow_zero: bool = False, zero_grace_s: float = 30.0) -> None:
        self._tracks: dict[str, _Track] = {}
        self._floor = 0 if allow_zero else 1
        self._zero_grace_s = zero_grace_s

    def observe(
        self, revision: str, *, template: dict[str, Any], in_flight: int, ready: int, now: float
    ) -> int:
        track = self._tracks.get(revision)
        if track is None:
            track = self._tracks[revision] = _Track(
                samples=deque(maxlen=MAX_SAMPLES), state=State(last_active=now)
            )
        track.samples.append(Sample(at=now, in_flight=float(in_flight)))
        spec = spec_of(template, zero_grace_s=self._zero_grace_s)
        decision = decide(list(track.samples), spec, ready=ready, now=now, state=track.state)
        track.state, track.last = decision.state, decision
        return max(decision.desired, self._floor)

    def forget(self, keep: set[str]) -> None:
        for name in set(self._tracks) - keep:
            del self._tracks[name]

    def view(self, revision: str) -> dict[str, Any] | None:
        track = self._tracks.get(revision)
        if track is None or track.last is None:
            return None
        d = track.last
        return {
            "desired": max(d.desired, self._floor),
            "in_flight_stable": round(d.stable, 2),
            "in_flight_panic": round(d.panic, 2),
            "panic": d.panicking,
            "excess_burst_capacity": round(d.excess_burst_capacity, 2),
        }
