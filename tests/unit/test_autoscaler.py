"""The KPA decision over traces: samples in, desired scale out (no clock, no I/O)."""

from __future__ import annotations

from typing import Literal

import pytest

from pipeline.autoscale.kpa import Decision, Sample, Spec, State, decide
from pipeline.autoscale.scaler import BUSY_RPS, Load, observed

TARGET = 7.0  # containerConcurrency 10 x 70% utilization


def run(trace: list[float], spec: Spec, *, ready: int, start: float = 1000.0) -> list[Decision]:
    """One sample a second; `ready` follows each decision, as if instances came up at once."""
    samples: list[Sample] = []
    state = State(last_active=start)
    out = []
    for i, in_flight in enumerate(trace):
        now = start + i
        samples.append(Sample(at=now, value=in_flight))
        d = decide(samples[-120:], spec, ready=ready, now=now, state=state)
        state, ready = d.state, d.desired
        out.append(d)
    return out


@pytest.mark.parametrize(
    ("trace", "spec", "ready", "expected"),
    [
        pytest.param([7.0] * 30, Spec(target=TARGET), 1, 1, id="at-target-stays"),
        pytest.param([70.0] * 10, Spec(target=TARGET), 1, 10, id="burst-panics-up"),
        pytest.param([70.0] * 10, Spec(target=TARGET, max_scale=4), 1, 4, id="max-scale-caps"),
        pytest.param([0.0] * 30, Spec(target=TARGET, min_scale=2), 2, 2, id="min-scale-floor"),
    ],
)
def test_final_scale(trace: list[float], spec: Spec, ready: int, expected: int) -> None:
    assert run(trace, spec, ready=ready)[-1].desired == expected


def test_panic_only_scales_up_until_a_stable_window_passes() -> None:
    spec = Spec(target=TARGET, window_s=60)
    decisions = run([70.0] * 10 + [0.0] * 80, spec, ready=1)
    # Over the threshold at t=0 (10 wanted for 1 ready): panic, straight to 10.
    assert decisions[0].panicking and decisions[0].desired == 10
    # Load gone at t=10, but panic holds the scale for a stable window after it began.
    assert all(d.panicking and d.desired == 10 for d in decisions[:60])
    assert not decisions[60].panicking
    assert decisions[60].desired == 5, "then down, at most halving per step"
    assert decisions[-1].desired == 1, "one instance until the quiet window and grace pass"


def test_scale_down_rate_halves_at_most() -> None:
    d = decide([Sample(at=0, value=0)], Spec(target=TARGET), ready=10, now=0,
               state=State(last_active=0))  # fmt: skip
    assert d.desired == 5


def test_zero_only_after_a_quiet_window_and_the_grace_period() -> None:
    spec = Spec(target=TARGET, window_s=10, scale_to_zero_grace_s=5)
    decisions = run([3.0] + [0.0] * 20, spec, ready=1)
    desired = [d.desired for d in decisions]
    quiet_since = 0  # the last request was in the first second
    zero_at = desired.index(0)
    assert zero_at - quiet_since >= 15
    assert all(x == 1 for x in desired[:zero_at])


def test_scale_down_delay_holds_the_highest_recent_recommendation() -> None:
    spec = Spec(target=TARGET, window_s=6, scale_down_delay_s=20, panic_threshold_percent=1000)
    decisions = run([28.0] * 8 + [7.0] * 15, spec, ready=4)
    assert [d.desired for d in decisions][-1] == 4, "held for the delay"


def test_excess_burst_capacity_goes_negative_under_a_burst() -> None:
    d = run([70.0], Spec(target=TARGET), ready=1)[-1]
    assert d.panic == 70.0 and d.excess_burst_capacity == pytest.approx(7.0 - 70.0)


def test_instances_lost_before_the_quiet_window_are_replaced() -> None:
    # Deployed 5 s ago, no traffic yet, its only instance just crashed: not a scale to zero.
    d = decide([Sample(at=5, value=0)], Spec(target=TARGET), ready=0, now=5,
               state=State(last_active=0))  # fmt: skip
    assert d.desired == 1
    # After the quiet window and grace, nothing comes back until a request does.
    later = decide([Sample(at=200, value=0)], Spec(target=TARGET), ready=0, now=200,
                   state=State(last_active=0))  # fmt: skip
    assert later.desired == 0


@pytest.mark.parametrize(
    ("metric", "load", "previous", "now", "value"),
    [
        pytest.param("concurrency", Load(3, 900), (0.0, 100), 2.0, 3.0, id="concurrency"),
        pytest.param("rps", Load(0, 300), (10.0, 100), 12.0, 100.0, id="rate-since-last-pass"),
        pytest.param("rps", Load(0, 300), None, 12.0, 0.0, id="first-pass-no-interval"),
        pytest.param("rps", Load(0, 40), (10.0, 5000), 12.0, 20.0, id="counter-reset-by-reload"),
        pytest.param("rps", Load(2, 100), (10.0, 100), 12.0, BUSY_RPS, id="busy-never-zero"),
        pytest.param("rps", Load(1, 0), None, 12.0, BUSY_RPS, id="held-at-zero-is-demand"),
        pytest.param("rps", Load(0, 100), (12.0, 100), 12.0, 0.0, id="same-instant"),
    ],
)  # fmt: skip
def test_the_observed_sample(
    metric: Literal["concurrency", "rps"],
    load: Load,
    previous: tuple[float, int] | None,
    now: float,
    value: float,
) -> None:
    assert observed(metric, load, previous=previous, now=now) == value


def test_rps_wakes_a_revision_at_zero_for_one_held_request() -> None:
    spec = Spec(target=140.0)  # Knative's rps default 200 x 70%
    sample = Sample(at=100, value=observed("rps", Load(1, 0), previous=None, now=100))
    d = decide([sample], spec, ready=0, now=100, state=State(last_active=0))
    assert d.desired == 1
