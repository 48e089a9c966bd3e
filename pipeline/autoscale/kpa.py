"""Knative's KPA, as a pure function: samples of the metric in, a desired scale out.

The metric is requests in flight (`concurrency`, the default) or requests per second (`rps`);
the algorithm is the same for both, only the target's unit differs.

The loop around it (`pipeline.autoscale.scaler`) samples HAProxy every second and hands the
decision to the reconciler. Same semantics and defaults as Knative's config-autoscaler:

- desired = ceil(average in-flight / (target x utilization)) over the stable window (60 s) and,
  separately, over the panic window (10% of it);
- panic starts when the panic figure is >= 2x the ready instances, lasts at least a stable
  window, and while it lasts the scale only goes up;
- each step is clamped by the max scale-up rate (x1000) and scale-down rate (/2), then by
  min-scale / max-scale; a scale-down is held back by scale-down-delay;
- zero only after a whole stable window without a request, plus the scale-to-zero grace period.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

PANIC_WINDOW_PERCENT = 10.0
PANIC_THRESHOLD_PERCENT = 200.0
MAX_SCALE_UP_RATE = 1000.0
MAX_SCALE_DOWN_RATE = 2.0
SCALE_TO_ZERO_GRACE_S = 30.0


@dataclass(frozen=True, kw_only=True)
class Spec:
    target: float  # per instance, in the metric's unit (target x utilization already applied)
    metric: Literal["concurrency", "rps"] = "concurrency"  # what the samples measure
    min_scale: int = 0
    max_scale: int = 0  # 0: no upper bound
    window_s: float = 60.0
    scale_down_delay_s: float = 0.0
    scale_to_zero_grace_s: float = SCALE_TO_ZERO_GRACE_S
    panic_window_percent: float = PANIC_WINDOW_PERCENT
    panic_threshold_percent: float = PANIC_THRESHOLD_PERCENT
    max_scale_up_rate: float = MAX_SCALE_UP_RATE
    max_scale_down_rate: float = MAX_SCALE_DOWN_RATE


@dataclass(frozen=True, kw_only=True)
class Sample:
    at: float  # seconds
    # `concurrency`: requests in flight plus queued, all instances and the activator;
    # `rps`: requests per second since the previous sample (see pipeline.autoscale.scaler.observed).
    value: float


@dataclass(frozen=True, kw_only=True)
class State:
    """What the KPA remembers between decisions."""

    panic_since: float | None = None
    max_panic: int = 0
    last_active: float | None = None  # last time a request was in flight
    recent: tuple[tuple[float, int], ...] = field(default_factory=tuple)  # for scale-down delay


@dataclass(frozen=True, kw_only=True)
class Decision:
    desired: int
    stable: float  # average in-flight over the stable window
    panic: float  # average in-flight over the panic window
    panicking: bool
    excess_burst_capacity: float
    state: State


def _average(samples: Sequence[Sample], *, since: float) -> float:
    window = [s.value for s in samples if s.at >= since]
    return sum(window) / len(window) if window else 0.0


def decide(
    samples: Sequence[Sample], spec: Spec, *, ready: int, now: float, state: State
) -> Decision:
    stable = _average(samples, since=now - spec.window_s)
    panic_window = spec.window_s * spec.panic_window_percent / 100
    panic = _average(samples, since=now - panic_window)
    active = any(s.value > 0 for s in samples if s.at >= now - panic_window)
    last_active = now if active else state.last_active

    ready_for_rates = max(ready, 1)
    up_limit = math.ceil(spec.max_scale_up_rate * ready_for_rates)
    down_limit = math.floor(ready_for_rates / spec.max_scale_down_rate)
    want_stable = min(max(math.ceil(stable / spec.target), down_limit), up_limit)
    want_panic = min(max(math.ceil(panic / spec.target), down_limit), up_limit)

    over = want_panic / ready_for_rates >= spec.panic_threshold_percent / 100 and want_panic > 0
    panic_since = state.panic_since
    if over:
        panic_since = now  # start, or extend, the panic
    elif panic_since is not None and now - panic_since >= spec.window_s:
        panic_since = None
    if panic_since is not None:
        desired = max(want_panic, state.max_panic, ready)  # never scale down while panicking
        max_panic = desired
    else:
        desired = want_stable
        max_panic = 0

    # Scale-down delay: the highest recommendation of the last `delay` seconds wins.
    recent = tuple((t, d) for t, d in state.recent if t > now - spec.scale_down_delay_s)
    recent = (*recent, (now, desired))
    if spec.scale_down_delay_s > 0:
        desired = max(d for _, d in recent)

    # Zero only after a quiet stable window plus the grace period (the activator takes over),
    # also when instances vanished for another reason (crashed, marked down): they come back.
    if desired == 0:
        quiet_for = now - last_active if last_active is not None else math.inf
        if quiet_for < spec.window_s + spec.scale_to_zero_grace_s:
            desired = 1
    desired = max(desired, spec.min_scale)
    if spec.max_scale:
        desired = min(desired, spec.max_scale)

    return Decision(
        desired=desired,
        stable=stable,
        panic=panic,
        panicking=panic_since is not None,
        # Spare capacity at the target (Knative also subtracts target-burst-capacity; Slipway
        # has none): negative means requests are already waiting for instances.
        excess_burst_capacity=ready * spec.target - panic,
        state=State(
            panic_since=panic_since, max_panic=max_panic, last_active=last_active, recent=recent
        ),
    )
