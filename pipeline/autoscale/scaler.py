"""The autoscaler's memory per revision, as values: each pass folds HAProxy's figures into it.

The reconciler's plan hands `step` a revision's `Track` from the previous pass and HAProxy's
figures for the revision (requests in flight plus queued, and the backend's cumulative request
count), and keeps the new `Track` it returns; `desired` reads the instance count off it
(pipeline.autoscale.kpa.decide does the deciding). The revision's `metric` annotation picks what
the KPA averages: the in-flight count, or the request rate since the previous pass. Zero is
allowed only with the activator in place (it holds the first request while an instance starts).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from pipeline.autoscale.kpa import Decision, Sample, Spec, State, decide
from pipeline.core.revisions import config_of
from pipeline.spec.autoscaling import AutoscalingAnnotations

MAX_SAMPLES = 3600  # an hour at one a second: the longest window Knative allows
# The rps signal while a request is in flight but none completed lately: never zero, so a
# revision serving (or holding, at zero) a request keeps or gets one instance.
BUSY_RPS = 1e-6


class Load(NamedTuple):
    """One backend in HAProxy's stats."""

    in_flight: int  # requests in flight plus queued
    requests: int  # cumulative requests since HAProxy (re)started: reloads reset it


def observed(
    metric: Literal["concurrency", "rps"],
    load: Load,
    *,
    previous: tuple[float, int] | None,
    now: float,
) -> float:
    """The sample the KPA averages. For rps, the requests counted since the previous pass over
    the time between them; a counter lower than before was reset by a reload, so all of it is
    new. Requests in flight keep the rate above zero (see BUSY_RPS)."""
    if metric == "concurrency":
        return float(load.in_flight)
    rate = 0.0
    if previous is not None and now > previous[0]:
        at, count = previous
        new = load.requests - count if load.requests >= count else load.requests
        rate = new / (now - at)
    return max(rate, BUSY_RPS) if load.in_flight > 0 else rate


def with_demand(load: Load | None) -> Load:
    """The figures of a revision the activator answered from a thawed instance since the last
    pass: at least one request in flight, which a one-second sample can miss (a thaw answers
    in milliseconds), so the KPA sees the revision active and keeps the instance."""
    if load is None:
        return Load(in_flight=1, requests=0)
    return Load(in_flight=max(load.in_flight, 1), requests=load.requests)


def _annotations(template: dict[str, Any]) -> AutoscalingAnnotations:
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    return AutoscalingAnnotations.from_annotations(annotations)


def spec_of(template: dict[str, Any], *, zero_grace_s: float = 30.0) -> Spec:
    auto = _annotations(template)
    concurrency = config_of(template, image="").container_concurrency
    return Spec(
        target=auto.target_per_instance(concurrency),
        metric=auto.metric,
        min_scale=auto.min_scale,
        max_scale=auto.max_scale,
        window_s=auto.window_seconds,
        scale_down_delay_s=auto.scale_down_delay_seconds,
        scale_to_zero_grace_s=zero_grace_s,
    )


def initial_scale(template: dict[str, Any]) -> int:
    auto = _annotations(template)
    return max(auto.initial_scale, auto.min_scale, 1)


@dataclass(frozen=True, kw_only=True)
class Track:
    """One revision's samples and KPA state, as the last pass left them."""

    samples: tuple[Sample, ...] = ()  # those within the stable window (MAX_SAMPLES at most)
    state: State
    last: Decision | None = None
    counted: tuple[float, int] | None = None  # (when, cumulative requests) at the last pass
    metric: str = "concurrency"
    window_s: float = 60.0  # the stable window: older samples are dropped


def _within(samples: tuple[Sample, ...], *, since: float) -> tuple[Sample, ...]:
    """The samples at or after `since` (they are in time order), at most MAX_SAMPLES - 1: the
    KPA averages none older than its stable window, and keeping them made a step's cost grow
    with the time a revision had been up (an hour's 3,600 samples, twice, per pass)."""
    if not samples or samples[0].at >= since:
        first = 0  # nothing aged out (most passes): no search
    else:
        first = bisect.bisect_left(samples, since, key=lambda s: s.at)
    return samples[max(first, len(samples) - (MAX_SAMPLES - 1)) :]


def step(
    track: Track | None,
    *,
    template: dict[str, Any],
    load: Load | None,
    ready: int,
    now: float,
    zero_grace_s: float = 30.0,
) -> Track:
    """The track after one more pass. `load` None: HAProxy has no figures for the revision (yet,
    or it is down). `track` None: the revision's first pass."""
    if track is None:
        track = Track(state=State(last_active=now))
    spec = spec_of(template, zero_grace_s=zero_grace_s)
    if load is None:
        value, counted = 0.0, None  # no counter to take a rate from
    else:
        value = observed(spec.metric, load, previous=track.counted, now=now)
        counted = (now, load.requests)
    samples = (*_within(track.samples, since=now - spec.window_s), Sample(at=now, value=value))
    decision = decide(samples, spec, ready=ready, now=now, state=track.state)
    return Track(
        samples=samples, state=decision.state, last=decision, counted=counted, metric=spec.metric,
        window_s=spec.window_s,
    )  # fmt: skip


def resting(track: Track | None, *, load: Load | None, ready: int) -> bool:
    """Whether the revision is at rest: the KPA last decided zero, it has no ready instance,
    and HAProxy shows no request in flight or queued and none counted since the last pass. The
    KPA's step would then decide zero again and change nothing but its window's samples, so
    `rest` stands for it: at 500 services, stepping every idle revision was most of a pass."""
    if track is None or track.last is None or track.last.desired != 0 or ready:
        return False
    if load is None:
        return track.counted is None
    return load.in_flight == 0 and track.counted is not None and track.counted[1] == load.requests


def rest(track: Track, *, now: float) -> Track:
    """A resting revision's track after one more pass: a zero sample in the window (the
    averages the KPA takes once demand returns count the quiet passes, as `step` would), the
    decision and the KPA's state left as they are (at rest they decide nothing new: the panic
    and scale-down-delay memories only ever hold zeros by then)."""
    samples = (*_within(track.samples, since=now - track.window_s), Sample(at=now, value=0.0))
    counted = (now, track.counted[1]) if track.counted is not None else None
    return Track(samples=samples, state=track.state, last=track.last, counted=counted,
                 metric=track.metric, window_s=track.window_s)  # fmt: skip


def desired(track: Track, *, floor: int) -> int:
    """The instance count the track's last decision asks for; `floor` 1 without an activator."""
    wanted = track.last.desired if track.last is not None else 0
    return max(wanted, floor)


def view(track: Track | None, *, floor: int) -> dict[str, Any] | None:
    if track is None or track.last is None:
        return None
    d = track.last
    return {
        "desired": max(d.desired, floor),
        "metric": track.metric,  # the two averages below are per second for rps
        "in_flight_stable": round(d.stable, 2),
        "in_flight_panic": round(d.panic, 2),
        "panic": d.panicking,
        "excess_burst_capacity": round(d.excess_burst_capacity, 2),
    }
