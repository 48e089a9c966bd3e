"""The activator's pure parts: which headers cross it (the relays run in
tests/integration/test_scale_to_zero.py against real HAProxy and instances)."""

from __future__ import annotations

import asyncio
from typing import Any

from pipeline.dataplane.activator import create_app, forwarded_headers, handshake_headers
from pipeline.dataplane.render import REVISION_HEADER

CLIENT = [
    ("Host", "ws.localhost:8080"),
    ("Connection", "Upgrade"),
    ("Upgrade", "websocket"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Extensions", "permessage-deflate"),
    ("Sec-WebSocket-Protocol", "chat.v2, chat.v1"),
    (REVISION_HEADER, "ws-00001"),
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
    assert not {"Connection", "Upgrade", REVISION_HEADER} & set(names)


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
    sent = handshake(app, [("Host", "ws.localhost"), (REVISION_HEADER, "ws-00001")])
    assert [m["type"] for m in sent] == [
        "websocket.http.response.start", "websocket.http.response.body"
    ]  # fmt: skip
    assert sent[0]["status"] == 503
    assert b"revision ws-00001 got no ready instance within 7s" in sent[1]["body"]
    assert woken == [True]

    lost = handshake(app, [("Host", "ws.localhost")])
    assert lost[0]["status"] == 400
