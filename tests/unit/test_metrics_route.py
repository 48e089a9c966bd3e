"""GET /metrics with in-process stand-ins for HAProxy, Docker and the store: no token, the
Prometheus content type, and a scrape that survives a component that does not answer."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import httpx
from fastapi import FastAPI

from pipeline.api import metrics_route
from pipeline.core.errors import Unavailable
from tests.unit.factories import instance, revision, service, snapshot


class Down:
    def __getattr__(self, name: str) -> Any:
        def fail(*_a: object, **_k: object) -> None:
            raise Unavailable("not running")

        return fail


def platform(*, haproxy_up: bool = True) -> Any:
    rows = [
        {"pxname": "rev-hello-00001", "svname": "BACKEND", "hrsp_2xx": "7", "status": "UP"},
        {"pxname": "rev-hello-00001", "svname": "i-a1", "status": "UP"},
    ]
    runtime = SimpleNamespace(show_stat=lambda: rows) if haproxy_up else Down()
    snap = snapshot([service("hello")], [revision("hello", 1)])
    return SimpleNamespace(
        dataplane=SimpleNamespace(manager=SimpleNamespace(runtime=runtime)),
        engine=SimpleNamespace(list_instances=lambda: [instance("hello-00001", "a1")]),
        store=SimpleNamespace(snapshot=lambda: snap, list_builds=lambda limit: []),
        reconciler=SimpleNamespace(passes=3),
    )


def scrape(plat: Any) -> httpx.Response:
    app = FastAPI()
    app.state.platform = plat
    app.include_router(metrics_route.router)

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            return await c.get("/metrics")

    return asyncio.run(get())


def test_metrics_need_no_token_and_speak_prometheus_text() -> None:
    resp = scrape(platform())
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert (
        'slipway_requests_total{service="hello",revision="hello-00001",'
        'response_code_class="2xx"} 7' in resp.text
    )
    assert 'slipway_instances{service="hello",revision="hello-00001",state="ready"} 1' in resp.text
    assert "slipway_reconcile_passes_total 3" in resp.text


def test_haproxy_down_still_scrapes_and_says_so() -> None:
    resp = scrape(platform(haproxy_up=False))
    assert resp.status_code == 200
    assert 'slipway_component_up{component="dataplane"} 0' in resp.text
    assert "slipway_requests_total" not in resp.text.replace("# HELP", "").replace("# TYPE", "")
