"""The KPA decision over traces: samples in, desired scale out (no clock, no I/O)."""

from __future__ import annotations

import pytest

from pipeline.autoscaler import Decision, Sample, Spec, State, decide

TARGET = 7.0  # containerConcurrency 10 x 70% utilization


def run(trace: list[float], spec: Spec, *, ready: int, start: float = 1000.0) -> list[Decision]:
    """One sample a second; `ready` follows each decision, as if instances came up at once."""
    samples: list[Sample] = []
    state = State(last_active=start)
    out = []
    for i, in_flight in enumerate(trace):
        now = start + i
        samples.append(Sample(at=now, in_flight=in_flight))
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
    d = decide([Sample(at=0, in_flight=0)], Spec(target=TARGET), ready=10, now=0,
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
    d = decide([Sample(at=5, in_flight=0)], Spec(target=TARGET), ready=0, now=5,
               state=State(last_active=0))  # fmt: skip
    assert d.desired == 1
    # After the quiet window and grace, nothing comes back until a request does.
    later = decide([Sample(at=200, in_flight=0)], Spec(target=TARGET), ready=0, now=200,
                   state=State(last_active=0))  # fmt: skip
    assert later.desired == 0
