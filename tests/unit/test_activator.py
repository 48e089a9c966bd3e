"""The activator's pure parts: which headers cross it (the relays run in
tests/integration/test_scale_to_zero.py against real HAProxy and instances)."""

from __future__ import annotations

from pipeline.activator import forwarded_headers, handshake_headers
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
