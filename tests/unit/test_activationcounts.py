"""The activator's log stays bounded under a burst (`dataplane.activationcounts`): the lines are
those a real structlog JSON logger writes, counted as the activator's log file would hold them.
The burst goes through the real activator app to a real HTTP server on loopback standing in for
an instance (any app answering on its port is one)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import structlog
from structlog.typing import FilteringBoundLogger

from pipeline.app.activatorserver import quiet_request_logs
from pipeline.dataplane.activationcounts import ActivationCounts
from pipeline.dataplane.activator import Activation, create_app
from pipeline.dataplane.render import SERVER_HEADER

PERIOD_S = 0.05


def json_log() -> tuple[FilteringBoundLogger, io.StringIO]:
    out = io.StringIO()
    log: FilteringBoundLogger = structlog.wrap_logger(
        structlog.PrintLogger(out),
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )
    return log, out


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def forwarded(events: list[dict[str, Any]], revision: str) -> int:
    """How many requests the lines account for: one each, or the count they carry."""
    mine = [e for e in events if e["revision"] == revision]
    return sum(e["count"] if e["event"] == "requests_activated" else 1 for e in mine)


def test_a_burst_is_one_line_then_one_count_and_quiet_starts_a_new_wake_up() -> None:
    log, out = json_log()

    async def run() -> None:
        counts = ActivationCounts(log, every_s=PERIOD_S)
        for i in range(1000):
            counts.activated("hello-00001", f"10.0.0.{2 + i % 2}:8080")
        counts.activated("other-00001", "10.0.0.9:8080")
        await asyncio.sleep(PERIOD_S * 4)  # the period ends, then a quiet one
        counts.activated("hello-00001", "10.0.0.4:8080")

    asyncio.run(run())
    assert [(e["event"], e["revision"]) for e in lines(out)] == [
        ("request_activated", "hello-00001"),
        ("request_activated", "other-00001"),
        ("requests_activated", "hello-00001"),
        ("request_activated", "hello-00001"),  # after a quiet period: a new wake-up
    ]
    first, _, burst, again = lines(out)
    assert first["instance"] == "10.0.0.2:8080" and again["instance"] == "10.0.0.4:8080"
    assert burst["count"] == 999 and burst["instances"] == ["10.0.0.2:8080", "10.0.0.3:8080"]


def test_requests_that_keep_coming_are_a_count_per_period_and_the_rest_is_flushed() -> None:
    log, out = json_log()

    async def run() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        counts = ActivationCounts(log, every_s=PERIOD_S)
        for _ in range(40):  # several periods' worth, 25 requests at a time
            for _ in range(25):
                counts.activated("hello-00001", "10.0.0.2:8080")
            await asyncio.sleep(PERIOD_S / 5)
        counts.flush()  # the activator stops: nothing counted is lost
        return loop.time() - started

    elapsed_s = asyncio.run(run())
    events = lines(out)
    assert forwarded(events, "hello-00001") == 1000
    assert events[0]["event"] == "request_activated"
    assert {e["event"] for e in events[1:]} == {"requests_activated"}
    # A count line a period at the most (and the flushed rest), not a line a request.
    periods = elapsed_s / PERIOD_S
    assert 2 <= len(events) <= 2 + periods < 1000, (len(events), periods)


class _Instance(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "6")
        self.end_headers()
        self.wfile.write(b"awake\n")

    def log_message(self, format: str, *args: object) -> None:
        quiet_request_logs()


@pytest.fixture
def instance() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Instance)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_burst_through_the_activator_logs_two_lines_with_the_right_count(instance: str) -> None:
    """60 requests at once, forwarded to the instance: the first is logged, the other 59 are
    one count, logged when the activator stops (its lifespan) before the period ends."""
    log, out = json_log()
    app = create_app(wait_for_instance=lambda _revision, _timeout: instance, timeout_s=10)
    activation: Activation = app.state.activation
    # A period longer than any burst: on a loaded machine 60 forwards took over the default 5 s,
    # and the count was logged by its period instead of by the lifespan this test is about.
    counts = ActivationCounts(log, every_s=3600)
    app.state.activation = dataclasses.replace(activation, counts=counts)

    async def burst(n: int) -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://nap.localhost") as c,
        ):
            headers = {SERVER_HEADER: "activator-nap-00001"}
            try:
                replies = await asyncio.gather(*(c.get("/", headers=headers) for _ in range(n)))
            finally:
                await activation.client.aclose()  # its keep-alive connections to the instance
            assert len(lines(out)) == 1, "the rest is counted, not logged yet"
        return [r.status_code for r in replies]

    assert asyncio.run(burst(60)) == [200] * 60
    events = lines(out)
    assert [e["event"] for e in events] == ["request_activated", "requests_activated"]
    assert events[1]["count"] == 59 and events[1]["instances"] == [instance]


def test_the_forwarding_client_logs_no_line_per_request(
    instance: str, caplog: pytest.LogCaptureFixture
) -> None:
    """At the activator's INFO level, httpx itself would log each request it forwards."""
    httpx_log = logging.getLogger("httpx")
    level = httpx_log.level
    caplog.set_level(logging.INFO)  # as `logs.configure` sets it in the activator
    try:
        quiet_request_logs()
        for _ in range(3):
            assert httpx.get(f"http://{instance}/").status_code == 200
    finally:
        httpx_log.setLevel(level)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("httpx")] == []


def test_websocket_sessions_are_counted_apart_from_requests() -> None:
    """A client reconnecting in a loop is a line per period, not one per session."""
    log, out = json_log()

    async def run() -> None:
        sessions = ActivationCounts(log, every_s=PERIOD_S, what="websocket")
        requests = ActivationCounts(log, every_s=PERIOD_S)
        for _ in range(50):
            sessions.activated("chat-00001", "10.0.0.2:8080")
        requests.activated("chat-00001", "10.0.0.2:8080")
        sessions.flush()
        requests.flush()

    asyncio.run(run())
    assert [(e["event"], e.get("count")) for e in lines(out)] == [
        ("websocket_activated", None),
        ("request_activated", None),
        ("websockets_activated", 49),
    ]
