"""`GET /v1/services/{name}/logs`: the route on its own app with a stand-in platform.

Bad input and the NDJSON shape go through httpx's ASGI transport; following goes through a real
uvicorn on loopback, because the promises are about the wire: another request is answered while
a follow is open (the event loop is not held), and a client that hangs up closes the streams
the follow opened.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from pipeline.api import errors, logs
from pipeline.core.errors import NotFound, Unavailable
from pipeline.dataplane.requestlogs import RequestLine, RequestLogs
from pipeline.engines.logs import NS, Source
from tests.unit.logfakes import FakeReader, source
from tests.unit.test_logs import datagram

TOKEN = "slw_test"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T = 1_796_040_000 * NS
URL = "/v1/services/hello/logs"


def get_service(name: str) -> Any:
    if name != "hello":
        raise NotFound(f"service {name!r} not found")
    return SimpleNamespace(name=name)


def reader() -> FakeReader:
    return FakeReader(
        [source("a")],
        {("a", "stdout"): [(T + 1, "listening")], ("a", "stderr"): [(T + 2, "warning: x")]},
    )


def app_with(log_reader: Any, *, rings: RequestLogs | None = None) -> FastAPI:
    app = FastAPI()
    app.state.platform = SimpleNamespace(
        token=TOKEN,
        store=SimpleNamespace(
            get_service=get_service,
            list_revisions=lambda _name: [SimpleNamespace(name="hello-00001")],
        ),
        engine=SimpleNamespace(logs_reader=lambda: log_reader),
        request_logs=rings,
    )
    errors.install(app)
    app.include_router(logs.router)
    app.add_api_route("/healthz", lambda: {"status": "ok"})
    return app


def call(app: FastAPI, path: str, **kwargs: Any) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://slipway") as client:
            return await client.get(path, headers=AUTH, **kwargs)

    return asyncio.run(send())


def events(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("path", "params", "status", "says"),
    [
        pytest.param("/v1/services/nope/logs", {}, 404, "'nope' not found", id="no-service"),
        pytest.param(URL, {"revision": "hello-00009"}, 404, "no revision", id="no-revision"),
        pytest.param(URL, {"since": "yesterday"}, 400, "10m", id="bad-since"),
        pytest.param(URL, {"tail": "-1"}, 400, "0 or more", id="negative-tail"),
        pytest.param(URL, {"tail": "many"}, 400, "tail", id="tail-not-a-number"),
        pytest.param(URL, {"requests": "1"}, 400, "Knative", id="requests-on-knative"),
    ],
)
def test_bad_requests_are_refused_before_streaming(
    path: str, params: dict[str, str], status: int, says: str
) -> None:
    response = call(app_with(reader()), path, params=params)
    assert response.status_code == status, response.text
    assert says in response.json()["detail"]


def test_the_token_is_required() -> None:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app_with(reader()))
        async with httpx.AsyncClient(transport=transport, base_url="http://slipway") as client:
            return await client.get(URL)

    assert asyncio.run(send()).status_code == 401


def test_app_logs_are_ndjson_lines_in_time_order() -> None:
    response = call(app_with(reader()), URL)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    assert events(response) == [
        {"event": "log", "time": "2026-11-30T12:00:00.000000001Z", "revision": "hello-00001",
         "instance": "i-a", "stream": "stdout", "line": "listening"},
        {"event": "log", "time": "2026-11-30T12:00:00.000000002Z", "revision": "hello-00001",
         "instance": "i-a", "stream": "stderr", "line": "warning: x"},
    ]  # fmt: skip


def request(t_ms: int, path: str, *, revision: str = "hello-00001") -> RequestLine:
    return RequestLine(
        time_ms=t_ms, revision=revision, instance="i-a", method="GET", path=path, status=200,
        duration_ms=4,
    )  # fmt: skip


def test_request_logs_are_ndjson_lines() -> None:
    rings = RequestLogs()
    rings.receive(datagram(request(1796040000123, "/old")))
    rings.receive(datagram(request(1796040000456, "/new")))
    response = call(app_with(reader(), rings=rings), URL, params={"requests": "1", "tail": "1"})
    assert events(response) == [
        {"event": "request", "time": "2026-11-30T12:00:00.456000000Z", "revision": "hello-00001",
         "instance": "i-a", "method": "GET", "path": "/new", "status": 200, "duration_ms": 4},
    ]  # fmt: skip


class Broken(FakeReader):
    def sources(self, *, service: str, revision: str = "") -> list[Source]:
        raise Unavailable("Docker Engine is not reachable")


def test_an_engine_failure_ends_the_stream_with_an_error_event() -> None:
    response = call(app_with(Broken([], {})), URL)
    assert events(response) == [
        {"event": "error", "error": "Unavailable", "status": 503,
         "message": "Docker Engine is not reachable"},
    ]  # fmt: skip


# --- on the wire ----------------------------------------------------------------------------------


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[FastAPI], str]]:
    monkeypatch.setattr(logs, "KEEPALIVE_S", 0.1)  # a departed client is noticed at the next one
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(app: FastAPI) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        servers.append((server, thread))
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


def eventually(check: Callable[[], bool], *, what: str) -> None:
    deadline = time.monotonic() + 5
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_a_follow_holds_no_event_loop_and_ends_when_the_client_hangs_up(
    serve: Callable[[FastAPI], str],
) -> None:
    fake = reader()
    base = serve(app_with(fake))
    with httpx.Client(base_url=base, headers=AUTH, timeout=5) as client:
        with client.stream("GET", URL, params={"follow": "1"}) as response:
            lines = response.iter_lines()
            assert json.loads(next(lines))["line"] == "listening"
            eventually(lambda: len(fake.follows()) == 2, what="both streams followed")
            fake.push(("a", "stdout"), (T + 5 * NS, "live line"))
            assert json.loads(next(x for x in lines if x.strip() and "live" in x))["line"] == (
                "live line"
            )
            # While the follow waits for more, the same server answers other requests.
            assert client.get("/healthz").json() == {"status": "ok"}
        # The client hung up: every stream the follow opened is closed.
        eventually(
            lambda: all(o.log.closed.is_set() for o in fake.follows()),
            what="the followed streams closed after the client left",
        )


def test_a_request_follow_shows_history_then_new_requests_in_order(
    serve: Callable[[FastAPI], str],
) -> None:
    rings = RequestLogs()
    rings.receive(datagram(request(1, "/before")))
    base = serve(app_with(reader(), rings=rings))
    with httpx.Client(base_url=base, headers=AUTH, timeout=5) as client:
        params = {"requests": "1", "follow": "1", "revision": "hello-00001"}
        with client.stream("GET", URL, params=params) as response:
            lines = (json.loads(x) for x in response.iter_lines() if x.strip())
            assert next(lines)["path"] == "/before"
            rings.receive(datagram(request(2, "/other-revision", revision="hello-00002")))
            rings.receive(datagram(request(3, "/after")))
            assert next(lines)["path"] == "/after"
    eventually(lambda: not rings._watchers, what="the watch ended with the client")
