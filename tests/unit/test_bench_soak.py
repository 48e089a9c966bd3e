"""The soak bench's pure parts: nearest-rank percentiles and the per-window figures. Nothing here
runs the soak (`python -m bench.soak` does)."""

from __future__ import annotations

import pytest

from bench import common
from bench.soak import COLUMNS, Sample, percentile, windows


@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [
        pytest.param([], 99, 0.0, id="none"),
        pytest.param([5.0], 99, 5.0, id="one"),
        pytest.param([float(v) for v in range(1, 101)], 99, 99.0, id="hundred"),
        pytest.param([float(v) for v in range(1, 101)], 50, 50.0, id="median"),
        pytest.param([3.0, 1.0, 2.0], 100, 3.0, id="unsorted-max"),
    ],
)
def test_percentile_is_nearest_rank(values: list[float], pct: float, expected: float) -> None:
    assert percentile(values, pct) == expected


def test_samples_fall_into_their_window_and_late_ones_into_the_last() -> None:
    samples = [
        Sample(at=1.0, ms=10.0, ok=True),
        Sample(at=29.9, ms=30.0, ok=False),
        Sample(at=30.0, ms=20.0, ok=True),
        Sample(at=31.0, ms=900.0, ok=True, wake=True),
        Sample(at=75.0, ms=40.0, ok=True),  # after the last window closed: counted in it
    ]
    first, second = windows(samples, width_s=30, count=2)
    assert first == {"requests": 2, "failed": 1, "p50_ms": 10.0, "p99_ms": 30.0,
                     "wakes": 0, "wake_max_ms": 0.0}  # fmt: skip
    assert second == {"requests": 2, "failed": 0, "p50_ms": 20.0, "p99_ms": 40.0,
                      "wakes": 1, "wake_max_ms": 900.0}  # fmt: skip


def test_a_failed_wake_counts_as_failed_but_not_in_the_load_latency() -> None:
    (only,) = windows([Sample(at=0.5, ms=60_000.0, ok=False, wake=True)], width_s=30, count=1)
    assert (only["failed"], only["requests"], only["p99_ms"]) == (1, 0, 0.0)


def test_every_soak_figure_names_its_unit() -> None:
    case = {"name": "0-1 min", **windows([], width_s=60, count=1)[0],
            "cp_rss_mb": 1.0, "cp_fds": 2, "haproxy_rss_mb": 3.0, "haproxy_fds": 4}  # fmt: skip
    common.check_figures([case])
    assert {c.key for c in COLUMNS} == set(case)
