"""The activator's pure parts (which headers cross it) and its routes alone, on an app of their
own with an in-process instance (the relays run in tests/integration/test_scale_to_zero.py
against real HAProxy and instances)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from pipeline.core.logs import get as get_log
from pipeline.dataplane.activator import (
    Activation,
    activate,
    create_app,
    forwarded_headers,
    handshake_headers,
)
from pipeline.dataplane.render import SERVER_HEADER

CLIENT = [
    ("Host", "ws.localhost:8080"),
    ("Connection", "Upgrade"),
    ("Upgrade", "websocket"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Extensions", "permessage-deflate"),
    ("Sec-WebSocket-Protocol", "chat.v2, chat.v1"),
    (SERVER_HEADER, "activator-ws-00001"),
    ("Cookie", "a=1"),
    ("Cookie", "b=2"),
    ("Authorization", "Bearer t"),
    ("Origin", "https://app.example.com"),
    ("X-Forwarded-For", "203.0.113.9"),
]


def test_a_handshake_repeats_end_to_end_headers_only() -> None:
    assert handshake_headers(CLIENT) == [
        ("Cookie", "a=1"),
        ("Cookie", "b=2"),
        ("Authorization", "Bearer t"),
        ("Origin", "https://app.example.com"),
        ("X-Forwarded-For", "203.0.113.9"),
    ]


def test_a_request_keeps_host_and_repeated_headers_but_not_hop_by_hop_ones() -> None:
    kept = forwarded_headers(CLIENT)
    names = [k for k, _ in kept]
    assert "Host" in names and names.count("Cookie") == 2
    assert not {"Connection", "Upgrade", SERVER_HEADER} & set(names)


def handshake(app: Any, headers: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """One WebSocket handshake through the ASGI app, as uvicorn drives it (with the
    websocket.http.response extension uvicorn offers); what the app sends back."""
    scope = {
        "type": "websocket", "asgi": {"version": "3.0"}, "scheme": "ws", "path": "/chat",
        "raw_path": b"/chat", "query_string": b"", "root_path": "", "client": ("10.0.0.9", 1),
        "server": ("127.0.0.1", 8082), "subprotocols": [],
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
        "extensions": {"websocket.http.response": {}},
    }  # fmt: skip
    sent: list[dict[str, Any]] = []
    incoming = [{"type": "websocket.connect"}]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_a_handshake_that_gets_no_instance_is_refused_with_503_and_why() -> None:
    """The refusal is an HTTP response to the handshake, not a bare close: the client learns
    why, as a plain request at zero does."""
    woken: list[bool] = []
    app = create_app(
        wake=lambda: woken.append(True), wait_for_instance=lambda _r, _t: None, timeout_s=7
    )
    sent = handshake(app, [("Host", "ws.localhost"), (SERVER_HEADER, "activator-ws-00001")])
    assert [m["type"] for m in sent] == [
        "websocket.http.response.start", "websocket.http.response.body"
    ]  # fmt: skip
    assert sent[0]["status"] == 503
    assert b"revision ws-00001 got no ready instance within 7s" in sent[1]["body"]
    assert woken == [True]

    lost = handshake(app, [("Host", "ws.localhost")])
    assert lost[0]["status"] == 400


Handler = Callable[[httpx.Request], httpx.Response]


def through_activate(
    *, address: str | None, handler: Handler | None = None, **request: Any
) -> httpx.Response:
    """One request through the `activate` route alone, on an app of its own whose state is set
    by hand; the instance is an in-process handler."""
    app = Starlette(routes=[Route("/{path:path}", activate, methods=["GET", "POST"])])

    async def call() -> httpx.Response:
        app.state.activation = Activation(
            wake=lambda: None,
            wait_for_instance=lambda _revision, _timeout: address,
            timeout_s=7,
            client=httpx.AsyncClient(transport=httpx.MockTransport(handler or _unreachable)),
            log=get_log(component="activator"),
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            return await c.request(**request)

    return asyncio.run(call())


def _unreachable(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"nothing should reach an instance: {request.url}")


def test_a_request_is_forwarded_to_the_instance_without_hop_by_hop_headers() -> None:
    seen: list[httpx.Request] = []

    async def body() -> AsyncIterator[bytes]:  # streamed, as from a real instance
        yield b"made"

    def instance(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, headers=[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")],
                              content=body())  # fmt: skip

    reply = through_activate(
        address="10.0.0.2:8080", handler=instance, method="POST", url="/items?x=1",
        content=b"body", headers={SERVER_HEADER: "activator-hello-00001", "Cookie": "c=3"},
    )  # fmt: skip
    assert (reply.status_code, reply.content) == (201, b"made")
    assert reply.headers.get_list("set-cookie") == ["a=1", "b=2"]
    (request,) = seen
    assert str(request.url) == "http://10.0.0.2:8080/items?x=1" and request.content == b"body"
    assert request.headers["cookie"] == "c=3" and SERVER_HEADER.lower() not in request.headers


@pytest.mark.parametrize(
    ("headers", "status", "says"),
    [
        pytest.param({}, 400, "without a revision", id="no-server-header"),
        # An instance's name, as HAProxy sends to instances: not the activator's, so no revision.
        pytest.param({SERVER_HEADER: "i-3f2a"}, 400, "without a revision", id="not-the-activator"),
        pytest.param({SERVER_HEADER: "activator-hello-00001"}, 503,
                     "revision hello-00001 got no ready instance within 7s", id="no-instance-came"),
    ],
)  # fmt: skip
def test_a_request_nothing_can_serve_is_refused_with_why(
    headers: dict[str, str], status: int, says: str
) -> None:
    reply = through_activate(address=None, method="GET", url="/", headers=headers)
    assert reply.status_code == status and says in reply.text


@pytest.mark.parametrize(
    ("method", "headers", "error", "sent"),
    [
        pytest.param("GET", {}, httpx.ReadError, 2, id="get-reset"),
        pytest.param("POST", {}, httpx.ReadError, 1, id="post-reset"),
        pytest.param("POST", {"Idempotency-Key": "k1"}, httpx.ReadError, 2, id="keyed-post-reset"),
        pytest.param("POST", {}, httpx.ConnectError, 2, id="post-refused"),
    ],
)
def test_a_reset_after_sending_is_sent_again_only_if_it_may_run_twice(
    method: str, headers: dict[str, str], error: type[httpx.TransportError], sent: int
) -> None:
    """An instance just started may reset a connection before reading it (a short accept
    backlog) or after acting on it: a bodyless POST is not sent again (`resends`), a refused
    connect always is (nothing was sent)."""
    seen: list[httpx.Request] = []

    async def body() -> AsyncIterator[bytes]:  # streamed, as from a real instance
        yield b"ran"

    def instance(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            raise error("the instance dropped it", request=request)
        return httpx.Response(200, content=body())

    reply = through_activate(
        address="10.0.0.2:8080", handler=instance, method=method, url="/run",
        headers={SERVER_HEADER: "activator-hello-00001", **headers},
    )  # fmt: skip
    assert len(seen) == sent
    assert reply.status_code == (200 if sent == 2 else 502), reply.text
