"""/metrics on the bare domain, through HAProxy, against a real deploy and real requests."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import Slipway, write_app

pytestmark = pytest.mark.integration

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(slipway: Slipway) -> Series:
    """GET localhost:<port>/metrics through HAProxy, as Prometheus would: no token."""
    resp = httpx.get(
        f"http://127.0.0.1:{slipway.ingress_port}/metrics",
        headers={"Host": f"localhost:{slipway.ingress_port}"},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    series: Series = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            series[(s.name, frozenset(s.labels.items()))] = s.value
    return series


def value(series: Series, name: str, **labels: str) -> float:
    return series.get((name, frozenset(labels.items())), 0.0)


def test_requests_through_haproxy_show_up_per_service_and_revision(
    slipway: Slipway, tmp_path: Path
) -> None:
    slipway.cli("deploy", "counted", "--source", str(write_app(tmp_path / "c", body="hi\n")))
    rev = {"service": "counted", "revision": "counted-00001"}
    before = scrape(slipway)
    n = 50

    with httpx.Client(timeout=10) as client:
        for _ in range(n):
            r = client.get(
                f"http://127.0.0.1:{slipway.ingress_port}/",
                headers={"Host": f"counted.localhost:{slipway.ingress_port}"},
            )
            assert r.status_code == 200
        missing = client.get(
            f"http://127.0.0.1:{slipway.ingress_port}/nope",
            headers={"Host": f"counted.localhost:{slipway.ingress_port}"},
        )
        assert missing.status_code == 404
    after = scrape(slipway)

    ok = "slipway_requests_total"
    grew = value(after, ok, **rev, response_code_class="2xx") - value(
        before, ok, **rev, response_code_class="2xx"
    )
    assert grew >= n
    assert value(after, ok, **rev, response_code_class="4xx") >= 1
    assert value(after, "slipway_revision_ready_instances", **rev) == 1
    assert value(after, "slipway_instances", **rev, state="ready") == 1
    assert value(after, "slipway_revisions", service="counted", status="Ready") == 1
    assert value(after, "slipway_traffic_percent", **rev, tag="") == 100
    assert value(after, "slipway_builds_total", service="counted", outcome="succeeded") == 1
    assert value(after, "slipway_deploy_duration_seconds_count", service="counted") == 1
    assert value(after, "slipway_request_time_average_seconds", **rev, phase="total") >= 0
    assert value(after, "slipway_component_up", component="dataplane") == 1
    assert value(after, "slipway_component_up", component="engine") == 1
    assert value(after, "slipway_reconcile_passes_total") > 0


def test_haproxy_exporter_stays_reachable(slipway: Slipway) -> None:
    resp = httpx.get(
        f"http://127.0.0.1:{slipway.ingress_port}/metrics/haproxy",
        headers={"Host": f"localhost:{slipway.ingress_port}"},
        timeout=10,
    )
    assert resp.status_code == 200
    assert "haproxy_process_" in resp.text
