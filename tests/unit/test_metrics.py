"""pipeline.api.metrics: canned HAProxy stat rows, snapshots and builds in, Prometheus text out.

The text is checked with prometheus_client's own parser (the format Prometheus scrapes), then
read back as {(sample name, labels): value} so each test states the series it expects.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.api import metrics
from pipeline.core.records import Build
from tests.unit.factories import T0, instance, revision, service, snapshot

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def backend_row(revision: str, **values: str) -> dict[str, str]:
    row = {"pxname": f"rev-{revision}", "svname": "BACKEND", "status": "UP"}
    return row | values


def server_row(revision: str, inst: str, status: str = "UP") -> dict[str, str]:
    return {"pxname": f"rev-{revision}", "svname": f"i-{inst}", "status": status}


def build(build_id: str, svc: str, status: str, seconds: float | None) -> Build:
    return Build(
        id=build_id, service=svc, status=status, builder="dockerfile", image="", error="",
        created_at=T0, finished_at=None if seconds is None else T0 + timedelta(seconds=seconds),
    )  # fmt: skip


def scrape(inputs: metrics.Inputs) -> Series:
    text = metrics.render(inputs)
    series: Series = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in series, f"duplicate series {key}"
            series[key] = s.value
    return series


def get(series: Series, name: str, **labels: str) -> float:
    return series[(name, frozenset(labels.items()))]


HELLO = service(
    "hello",
    traffic=[
        {"revisionName": "hello-00001", "percent": 90},
        {"revisionName": "hello-00002", "percent": 10, "tag": "canary"},
        {"revisionName": "hello-00002", "percent": 0, "tag": "commit-abc1234"},
    ],
)
SNAP = snapshot(
    [HELLO],
    [revision("hello", 1), revision("hello", 2), revision("hello", 3, status="Failed")],
)
STATS = [
    backend_row(
        "hello-00001",
        hrsp_1xx="0",
        hrsp_2xx="900",
        hrsp_3xx="3",
        hrsp_4xx="40",
        hrsp_5xx="7",
        hrsp_other="0",
        scur="5",
        qcur="2",
        qtime="1",
        ctime="0",
        rtime="12",
        ttime="15",
        qtime_max="30",
        ctime_max="1",
        rtime_max="250",
        ttime_max="260",
        econ="1",
        eresp="2",
    ),
    server_row("hello-00001", "a1"),
    server_row("hello-00001", "a2", status="DRAIN"),
    backend_row("hello-00002", hrsp_2xx="100"),
    server_row("hello-00002", "b1", status="DOWN"),
    # Not a revision the store knows (reserved backends, a revision deleted meanwhile).
    {"pxname": "slipway-api", "svname": "BACKEND", "hrsp_2xx": "8"},
    backend_row("gone-00001", hrsp_2xx="1"),
]
INSTANCES = [
    instance("hello-00001", "a1"),
    instance("hello-00001", "a2"),
    instance("hello-00002", "b1"),
    instance("hello-00002", "b2"),  # running, not yet in HAProxy
    instance("hello-00003", "c1", running=False),
]


def test_requests_by_status_class_per_service_and_revision() -> None:
    s = scrape(metrics.Inputs(snapshot=SNAP, stats=STATS, instances=INSTANCES))
    rev1 = {"service": "hello", "revision": "hello-00001"}
    assert get(s, "slipway_requests_total", **rev1, response_code_class="2xx") == 900
    assert get(s, "slipway_requests_total", **rev1, response_code_class="3xx") == 3
    assert get(s, "slipway_requests_total", **rev1, response_code_class="4xx") == 40
    assert get(s, "slipway_requests_total", **rev1, response_code_class="5xx") == 7
    assert get(s, "slipway_requests_total", service="hello", revision="hello-00002",
               response_code_class="5xx") == 0  # fmt: skip
    assert get(s, "slipway_requests_in_flight", **rev1) == 5
    assert get(s, "slipway_requests_queued", **rev1) == 2
    assert get(s, "slipway_request_time_average_seconds", **rev1, phase="response") == 0.012
    assert get(s, "slipway_request_time_average_seconds", **rev1, phase="total") == 0.015
    assert get(s, "slipway_request_time_max_seconds", **rev1, phase="total") == 0.26
    assert get(s, "slipway_backend_errors_total", **rev1, kind="connect") == 1
    revisions_seen = {dict(labels).get("revision") for (_n, labels) in s}
    assert "gone-00001" not in revisions_seen
    assert not any(dict(labels).get("revision") == "slipway-api" for (_n, labels) in s)


def test_ready_instances_count_only_servers_taking_new_requests() -> None:
    s = scrape(metrics.Inputs(snapshot=SNAP, stats=STATS, instances=INSTANCES))
    assert get(s, "slipway_revision_ready_instances", service="hello", revision="hello-00001") == 1
    assert get(s, "slipway_revision_ready_instances", service="hello", revision="hello-00002") == 0


@pytest.mark.parametrize(
    ("rev", "state", "count"),
    [
        pytest.param("hello-00001", "ready", 1, id="up-is-ready"),
        pytest.param("hello-00001", "draining", 1, id="drain"),
        pytest.param("hello-00002", "unhealthy", 1, id="down-is-unhealthy"),
        pytest.param("hello-00002", "starting", 1, id="not-in-haproxy-yet"),
        pytest.param("hello-00003", "exited", 1, id="exited"),
        pytest.param("hello-00003", "ready", 0, id="zero-series-present"),
    ],
)
def test_instances_by_state(rev: str, state: str, count: int) -> None:
    s = scrape(metrics.Inputs(snapshot=SNAP, stats=STATS, instances=INSTANCES))
    assert get(s, "slipway_instances", service="hello", revision=rev, state=state) == count


def test_tags_map_from_the_traffic_table() -> None:
    s = scrape(metrics.Inputs(snapshot=SNAP))
    pct = "slipway_traffic_percent"
    assert get(s, pct, service="hello", revision="hello-00001", tag="") == 90
    assert get(s, pct, service="hello", revision="hello-00002", tag="canary") == 10
    assert get(s, pct, service="hello", revision="hello-00002", tag="commit-abc1234") == 0


def test_revisions_by_status() -> None:
    s = scrape(metrics.Inputs(snapshot=SNAP))
    assert get(s, "slipway_revisions", service="hello", status="Ready") == 2
    assert get(s, "slipway_revisions", service="hello", status="Failed") == 1
    assert get(s, "slipway_revisions", service="hello", status="Pending") == 0


def test_builds_by_outcome_with_exact_histograms() -> None:
    builds = [
        build("b1", "hello", "succeeded", 1.5),
        build("b2", "hello", "succeeded", 40),
        build("b3", "hello", "failed", 3),
        build("b4", "hello", "running", None),
    ]
    s = scrape(metrics.Inputs(snapshot=SNAP, builds=builds))
    ok = {"service": "hello", "outcome": "succeeded"}
    assert get(s, "slipway_builds_total", **ok) == 2
    assert get(s, "slipway_builds_total", service="hello", outcome="failed") == 1
    assert get(s, "slipway_builds_running", service="hello") == 1
    assert get(s, "slipway_build_duration_seconds_bucket", **ok, le="2.0") == 1
    assert get(s, "slipway_build_duration_seconds_bucket", **ok, le="60.0") == 2
    assert get(s, "slipway_build_duration_seconds_bucket", **ok, le="+Inf") == 2
    assert get(s, "slipway_build_duration_seconds_sum", **ok) == 41.5
    assert get(s, "slipway_build_duration_seconds_count", **ok) == 2


def test_deploy_duration_runs_from_build_start_to_ready() -> None:
    built = replace(
        revision("hello", 1), build_id="b1", created_at=T0 + timedelta(seconds=4),
        ready_at=T0 + timedelta(seconds=6),
    )  # fmt: skip
    image_only = replace(revision("hello", 2), created_at=T0, ready_at=T0 + timedelta(seconds=0.5))
    snap = snapshot([HELLO], [built, image_only, revision("hello", 3, status="Pending")])
    s = scrape(metrics.Inputs(snapshot=snap, builds=[build("b1", "hello", "succeeded", 4)]))
    assert get(s, "slipway_deploy_duration_seconds_count", service="hello") == 2
    assert get(s, "slipway_deploy_duration_seconds_sum", service="hello") == 6.5
    assert get(s, "slipway_deploy_duration_seconds_bucket", service="hello", le="0.5") == 1


def test_components_that_do_not_answer_are_reported_not_guessed() -> None:
    s = scrape(metrics.Inputs(snapshot=SNAP, stats=None, instances=[instance("hello-00001", "a")]))
    assert get(s, "slipway_component_up", component="dataplane") == 0
    assert get(s, "slipway_component_up", component="engine") == 1
    assert not any(name.startswith("slipway_requests") for (name, _l) in s)
    running = {"service": "hello", "revision": "hello-00001", "state": "running"}
    assert get(s, "slipway_instances", **running) == 1


def test_reconcile_passes_and_label_escaping() -> None:
    text = metrics.render(metrics.Inputs(snapshot=snapshot([], []), reconcile_passes=42))
    assert "slipway_reconcile_passes_total 42\n" in text
    fam = metrics.Family(name="x", kind="gauge", help='a "b"\nc')
    fam.add(1.5, tag='q"\\\n')
    assert metrics.exposition([fam]).splitlines()[-1] == 'x{tag="q\\"\\\\\\n"} 1.5'
    parsed = list(text_string_to_metric_families(metrics.exposition([fam])))
    assert parsed[0].samples[0].labels == {"tag": 'q"\\\n'}


def test_autoscaler_state_per_revision() -> None:
    from pipeline.api import metrics as m
    from tests.unit.factories import revision, service, snapshot

    text = m.render(
        m.Inputs(
            snapshot=snapshot([service("hello")], [revision("hello", 1)]),
            autoscaler={
                "hello-00001": {
                    "desired": 3, "in_flight_stable": 12.5, "in_flight_panic": 20.0,
                    "panic": True, "excess_burst_capacity": -6.0,
                },
                "gone-00001": {"desired": 1},  # revision no longer in the store: left out
            },
        )
    )  # fmt: skip
    labels = 'service="hello",revision="hello-00001"'
    assert f"slipway_autoscaler_desired_instances{{{labels}}} 3" in text
    assert f"slipway_autoscaler_panic_mode{{{labels}}} 1" in text
    assert f"slipway_autoscaler_excess_burst_capacity{{{labels}}} -6" in text
    assert "gone-00001" not in text
