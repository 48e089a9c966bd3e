"""The KPA on the real engine: a burst scales a revision out, zero errors, and back in after."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import docker
import httpx
import pytest

from tests.integration.conftest import Slipway, httpd_app

pytestmark = pytest.mark.integration

WORK_CGI = """#!/bin/sh
sleep 1
printf 'Content-Type: text/plain\\r\\n\\r\\ndone\\n'
"""


def test_burst_scales_out_then_in_with_zero_errors(
    slipway: Slipway, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    app = httpd_app(tmp_path / "busy", "busy\n", {"work": WORK_CGI})
    slipway.replace_with_app(docker_client, app, "busy", concurrency=2, annotations={
        "autoscaling.knative.dev/window": "6s", "autoscaling.knative.dev/max-scale": "4",
    })  # fmt: skip

    def instances() -> int:
        return slipway.running(docker_client, "busy")

    errors: list[str] = []
    peak = 0
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=60) as c:
            while not stop.is_set():
                r = slipway.get("busy", "/cgi-bin/work", client=c)
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text.strip()}")

    threads = [threading.Thread(target=client) for _ in range(12)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline:
        peak = max(peak, instances())
        time.sleep(0.5)
    view = slipway.api_get("/v1/services/busy").json()["revisions"][0]["autoscaler"]
    stop.set()
    for t in threads:
        t.join()

    assert errors == []
    assert peak == 4, f"12 clients x 1 s at concurrency 2 want 6 instances, capped at 4: {peak}"
    assert view is not None and view["desired"] == 4 and view["in_flight_stable"] > 0

    # Scale-in under a light steady load: instances drain and go, no request fails.
    stop.clear()
    steady = threading.Thread(target=client)
    steady.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and instances() > 1:
        time.sleep(1)
    stop.set()
    steady.join()
    assert instances() == 1, "scaled back in once the burst ended"
    assert errors == []


def test_rps_metric_scales_on_the_rate_real_haproxy_counts(
    slipway: Slipway, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    """One client, one request at a time (never more than one in flight), ~10 per second: with
    metric rps and a target of 2 (x 70%), the rate HAProxy's counter shows asks for 3 instances
    (max-scale); on concurrency the same load would have kept one."""
    app = httpd_app(tmp_path / "rate", "rate\n")
    slipway.replace_with_app(docker_client, app, "rate", annotations={
        "autoscaling.knative.dev/metric": "rps", "autoscaling.knative.dev/target": "2",
        "autoscaling.knative.dev/window": "6s", "autoscaling.knative.dev/max-scale": "3",
    })  # fmt: skip

    def instances() -> int:
        return slipway.running(docker_client, "rate")

    assert instances() == 1
    statuses: list[int] = []
    deadline = time.monotonic() + 60
    with httpx.Client(timeout=30) as client:
        while time.monotonic() < deadline and instances() < 3:
            for _ in range(10):
                reply = client.get(
                    f"http://127.0.0.1:{slipway.ingress_port}/",
                    headers={"Host": f"rate.localhost:{slipway.ingress_port}"},
                )
                statuses.append(reply.status_code)
                time.sleep(0.1)
    assert instances() == 3, f"{len(statuses)} requests did not scale the rps revision out"
    assert set(statuses) == {200}
    view = slipway.api_get("/v1/services/rate").json()["revisions"][0]["autoscaler"]
    assert view["metric"] == "rps" and view["desired"] == 3
    assert view["in_flight_stable"] > 2, "the stable figure is requests per second here"
