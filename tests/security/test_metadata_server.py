"""Starving the metadata server: connections that never finish a request, from one instance.

The server runs in this process on loopback, built by the same `make_server` the daemon serves
with, with a caller lookup that knows 127.0.0.1 as an instance of `caller` (next to Docker it
asks dockerd; the lookup is not what is attacked). The attackers use other loopback source
addresses (127.0.0.2, 127.0.0.3), as another instance would have its own bridge address. The
limits are the production ones except the request deadline, shortened so the test waits
seconds, not the real 10 s.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt as pyjwt
import pytest

from pipeline.identity.callers import Caller
from pipeline.identity.connections import BoundedServer, Limits
from pipeline.identity.keys import KeyStore
from pipeline.identity.metadata import DEFAULT_LIMITS, Issuer, make_server

DEADLINE_S = 2.0
LIMITS = Limits(
    request_s=DEADLINE_S,
    per_peer=DEFAULT_LIMITS.per_peer,
    connections=DEFAULT_LIMITS.connections,
)
ATTACKER = "127.0.0.2"
DRIPPER = "127.0.0.3"
IDENTITY = "/computeMetadata/v1/instance/service-accounts/default/identity?audience=http://t"


def _lookup(address: str) -> Caller | None:
    if address == "127.0.0.1":
        return Caller(service="caller", revision="caller-00001", instance="abc123")
    return None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[BoundedServer]:
    keys = KeyStore(tmp_path / "keys")
    keys.ensure()
    issuer = Issuer(issuer="http://localhost:8080", domain="localhost", project="t", keys=keys)
    srv = make_server(bind="127.0.0.1", port=0, lookup=_lookup, issuer=issuer, limits=LIMITS)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


def _port(srv: BoundedServer) -> int:
    return int(srv.server_address[1])


def _half_open(port: int, *, source: str, count: int) -> list[socket.socket]:
    """Connections that send the start of a request and never its end."""
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
        s.sendall(b"GET /computeMetadata/v1/ HTTP/1.1\r\nHost: metadata\r\n")
        socks.append(s)
    return socks


def _closed_by_server(s: socket.socket, *, within_s: float) -> bool:
    """True once the server has closed `s` (EOF or reset), waiting at most `within_s`."""
    return bool(_closed_within([s], within_s=within_s))


def _closed_within(socks: list[socket.socket], *, within_s: float) -> list[socket.socket]:
    """Those of `socks` the server closes (EOF or reset) within `within_s`, watched together."""
    closed: list[socket.socket] = []
    deadline = time.monotonic() + within_s
    while len(closed) < len(socks) and (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([s for s in socks if s not in closed], [], [], left)
        for s in readable:
            try:
                data = s.recv(1024, socket.MSG_DONTWAIT)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            assert data == b"", f"the server answered a request it never got whole: {data!r}"
            closed.append(s)
    return closed


def _token(port: int) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    reply = httpx.get(
        f"http://127.0.0.1:{port}{IDENTITY}", headers={"Metadata-Flavor": "Google"}, timeout=5
    )
    return reply, time.monotonic() - started


def _drip(port: int, stop: threading.Event, closed: list[float]) -> None:
    """A request sent one byte every 0.3 s: each read is quick, the request never ends."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(DRIPPER, 0)) as s:
        for byte in b"GET /computeMetadata/v1/ HTTP/1.1\r\nHost: metadata\r\nX-Pad: " + b"a" * 100:
            if stop.wait(0.3):
                return
            try:
                s.sendall(bytes([byte]))
            except OSError:
                closed.append(time.monotonic() - started)
                return
        if _closed_by_server(s, within_s=5):
            closed.append(time.monotonic() - started)


def test_half_open_connections_from_one_instance_leave_others_their_token(
    server: BoundedServer,
) -> None:
    port = _port(server)
    attackers = _half_open(port, source=ATTACKER, count=3 * LIMITS.per_peer)
    try:
        time.sleep(0.3)  # the accept loop has seen them all
        held = server.open_connections().get(ATTACKER, 0)

        reply, took = _token(port)

        assert held == LIMITS.per_peer, "one address holds no more than its share"
        assert reply.status_code == 200, reply.text
        assert took < 1.0, f"the token took {took:.2f}s behind the half-open connections"
        claims = pyjwt.decode(reply.text, options={"verify_signature": False})
        assert claims["sub"] == "service:caller"
    finally:
        for s in attackers:
            s.close()


def test_connections_over_the_per_instance_cap_are_closed_at_once(server: BoundedServer) -> None:
    attackers = _half_open(_port(server), source=ATTACKER, count=2 * LIMITS.per_peer)
    try:
        closed = _closed_within(attackers, within_s=0.5)

        assert len(closed) == LIMITS.per_peer, "the connections over the cap, and only those"
    finally:
        for s in attackers:
            s.close()


def test_idle_and_half_open_connections_are_closed_after_the_deadline(
    server: BoundedServer,
) -> None:
    port = _port(server)
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(ATTACKER, 0))]
    half = _half_open(port, source=ATTACKER, count=4)
    started = time.monotonic()
    try:
        closed = _closed_within(idle + half, within_s=DEADLINE_S + 2)
        still_open = [s for s in idle + half if s not in closed]
        took = time.monotonic() - started

        assert not still_open, f"{len(still_open)} connections outlived the deadline"
        assert took >= DEADLINE_S - 0.5, "closed for their idleness, not at once"
        deadline = time.monotonic() + 2
        while server.open_connections() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.open_connections() == {}, "their threads are gone too"
    finally:
        for s in idle + half:
            s.close()


def test_a_request_dripped_a_byte_at_a_time_is_cut_off_at_the_deadline(
    server: BoundedServer,
) -> None:
    """Each byte arrives well inside any per-read timeout: only a deadline on the whole request
    ends this connection."""
    stop, closed = threading.Event(), []
    dripper = threading.Thread(target=_drip, args=(_port(server), stop, closed))
    dripper.start()
    dripper.join(timeout=DEADLINE_S + 6)
    stop.set()
    dripper.join(timeout=5)

    assert closed, "the dripped request kept its connection"
    assert closed[0] < DEADLINE_S + 1.5, f"closed only after {closed[0]:.1f}s"


def test_a_keep_alive_caller_is_served_again_on_the_same_connection(
    server: BoundedServer,
) -> None:
    """The deadline is per request: a caller that reuses its connection keeps being answered."""
    with httpx.Client(base_url=f"http://127.0.0.1:{_port(server)}", timeout=5) as client:
        for _ in range(3):
            reply = client.get(IDENTITY, headers={"Metadata-Flavor": "Google"})
            assert reply.status_code == 200
            time.sleep(DEADLINE_S / 3)
