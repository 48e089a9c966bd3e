"""Scale to zero and back through the activator, on the real engine and HAProxy."""

from __future__ import annotations

import asyncio
from pathlib import Path

import docker
import httpx
import pytest

from tests.integration.conftest import Slipway, httpd_app

pytestmark = pytest.mark.integration

# Freezing off: these tests are about the cold path (a container started while the activator
# holds the request); the frozen tier has its own, tests/integration/test_freeze.py.
IDLE = {"autoscaling.knative.dev/window": "6s", "slipway.dev/frozen-retention-period": "0"}

ECHO_CGI = """#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
cat
"""


def test_idle_revision_goes_to_zero_and_the_next_request_wakes_it(
    slipway: Slipway, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    app = httpd_app(tmp_path / "sleepy", "awake\n", {"echo": ECHO_CGI})
    slipway.replace_with_app(
        docker_client, app, "sleepy", annotations=IDLE
    )
    assert slipway.get("sleepy").text == "awake\n"

    def running() -> int:
        return slipway.running(docker_client, "sleepy")

    # Idle for the 6 s window plus the 5 s grace (the fixture's SLIPWAY_SCALE_TO_ZERO_GRACE).
    slipway.wait_for_zero(docker_client, "sleepy")

    # The next request is held by the activator while an instance starts, body intact.
    resp = httpx.post(
        f"http://127.0.0.1:{slipway.ingress_port}/cgi-bin/echo",
        headers={"Host": f"sleepy.localhost:{slipway.ingress_port}"},
        content=b"hello from zero",
        timeout=60,
    )
    assert resp.status_code == 200 and resp.text == "hello from zero"
    assert running() == 1
    assert slipway.get("sleepy").text == "awake\n"

    # A burst of 200 concurrent requests against the revision at zero: the activator holds them
    # all while instances start, and none fails.
    slipway.wait_for_zero(docker_client, "sleepy")

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=120) as client:
            calls = [
                client.get(
                    f"http://127.0.0.1:{slipway.ingress_port}/",
                    headers={"Host": f"sleepy.localhost:{slipway.ingress_port}"},
                )
                for _ in range(200)
            ]
            return [r.status_code for r in await asyncio.gather(*calls)]

    statuses = asyncio.run(burst())
    assert statuses.count(200) == 200, sorted(set(statuses))


# A WebSocket echo server in the standard library (the python base image has no `websockets`):
# the RFC 6455 handshake, then every text frame back, with the subprotocol the client offered
# first and the cookie it sent (proof the handshake's headers reached the app); "quit" makes it
# close with its own code.
WS_ECHO = r"""
import base64, hashlib, os, socket, struct, threading

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

def frames(conn):
    while True:
        head = conn.recv(2, socket.MSG_WAITALL)
        if len(head) < 2:
            return
        opcode, length = head[0] & 0x0F, head[1] & 0x7F
        if length == 126:
            length = struct.unpack("!H", conn.recv(2, socket.MSG_WAITALL))[0]
        elif length == 127:
            length = struct.unpack("!Q", conn.recv(8, socket.MSG_WAITALL))[0]
        mask = conn.recv(4, socket.MSG_WAITALL)
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(conn.recv(length, socket.MSG_WAITALL)))
        yield opcode, data

def send(conn, opcode, data):
    head = bytes([0x80 | opcode])
    head += bytes([len(data)]) if len(data) < 126 else bytes([126]) + struct.pack("!H", len(data))
    conn.sendall(head + data)

def serve(conn):
    raw = b""
    while b"\r\n\r\n" not in raw:
        raw += conn.recv(4096)
    lines = raw.split(b"\r\n\r\n")[0].decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
    if lines[0].startswith("GET /deny "):
        conn.sendall(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\n"
                     b"Content-Length: 9\r\nConnection: close\r\n\r\nno entry\n")
        return conn.close()
    if headers.get("upgrade", "").lower() != "websocket":
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nplain\n")
        return conn.close()
    accept = base64.b64encode(hashlib.sha1((headers["sec-websocket-key"] + GUID).encode()).digest())
    reply = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    reply += "Sec-WebSocket-Accept: " + accept.decode() + "\r\n"
    offered = headers.get("sec-websocket-protocol", "")
    if offered:
        reply += "Sec-WebSocket-Protocol: " + offered.split(",")[0].strip() + "\r\n"
    conn.sendall((reply + "\r\n").encode())
    send(conn, 1, ("cookie=" + headers.get("cookie", "")).encode())
    for opcode, data in frames(conn):
        if opcode == 8:
            send(conn, 8, data[:2])
            break
        if opcode == 1 and data == b"quit":
            send(conn, 8, struct.pack("!H", 4000) + b"bye")
            break
        if opcode == 1:
            send(conn, 1, b"echo:" + data)
    conn.close()

listener = socket.create_server(("0.0.0.0", int(os.environ["PORT"])))
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


def test_a_websocket_handshake_at_zero_is_held_and_relayed(
    slipway: Slipway, tmp_path: Path, docker_client: docker.DockerClient, python_image: str
) -> None:
    import socket

    from websockets import Subprotocol
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.sync.client import connect

    app = tmp_path / "ws"
    app.mkdir()
    (app / "server.py").write_text(WS_ECHO)
    (app / "Dockerfile").write_text(
        f"FROM {python_image}\nCOPY server.py /app/server.py\nUSER 10001\n"
        'CMD ["python3", "/app/server.py"]\n'
    )
    slipway.replace_with_app(
        docker_client, app, "ws", annotations=IDLE
    )

    def running() -> int:
        return slipway.running(docker_client, "ws")

    slipway.wait_for_zero(docker_client, "ws")

    # Through HAProxy's public listener, Host routing as for any request; at zero the handshake
    # goes to the activator, which waits for an instance and repeats it there.
    host = f"ws.localhost:{slipway.ingress_port}"
    sock = socket.create_connection(("127.0.0.1", slipway.ingress_port))
    with connect(
        f"ws://{host}/chat",
        sock=sock,
        subprotocols=[Subprotocol("chat.v2"), Subprotocol("chat.v1")],
        additional_headers={"Cookie": "session=abc"},
        open_timeout=60,
    ) as ws:
        assert ws.subprotocol == "chat.v2"
        assert ws.recv(timeout=10) == "cookie=session=abc"
        for text in ("one", "two", "x" * 5000):
            ws.send(text)
            assert ws.recv(timeout=10) == f"echo:{text}"
        assert running() == 1
        ws.send("quit")  # the app closes with its own code, which comes back through the relay
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
    assert (ws.close_code, ws.close_reason) == (4000, "bye")
    # Once an instance is up, the same handshake goes straight to it (no activator).
    sock = socket.create_connection(("127.0.0.1", slipway.ingress_port))
    with connect(f"ws://{host}/chat", sock=sock, open_timeout=30) as ws:
        assert ws.recv(timeout=10) == "cookie="
        ws.send("direct")
        assert ws.recv(timeout=10) == "echo:direct"

    # An app that refuses a handshake at zero: its own status, headers and body reach the client.
    slipway.wait_for_zero(docker_client, "ws")
    sock = socket.create_connection(("127.0.0.1", slipway.ingress_port))
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://{host}/deny", sock=sock, open_timeout=60)
    assert refused.value.response.status_code == 401
    assert refused.value.response.headers["WWW-Authenticate"] == "Bearer"
    assert refused.value.response.body == b"no entry\n"
