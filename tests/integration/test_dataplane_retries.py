"""Which requests HAProxy resends when an instance closes the connection without answering,
against a real HAProxy with Slipway's rendered config.

`retry-on empty-response` is there for the race of a request sent on a keep-alive connection the
app is closing at that moment; an app crashing mid-request looks the same from HAProxy. So a
request that may be sent twice (RFC 9110's idempotent methods, or an idempotency key, as Go's
http.Transport decides) is resent to an instance and answered, and any other (a POST, a PATCH)
reaches the app once and gets HAProxy's 502, never a second run.

The instances here stand for an app that drops the connection: the first time a path arrives at
either of them, they close it without a byte of answer; afterwards they answer it.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from pipeline.dataplane.model import Backend, DataPlane, Server, Site
from pipeline.dataplane.process import HAProxyManager
from tests.integration.haproxyplanes import (  # fixtures, shared by import
    instances as instances,
)
from tests.integration.haproxyplanes import (
    manager as manager,
)
from tests.integration.haproxyplanes import outcome, route
from tests.integration.haproxyplanes import (
    site as site,
)

pytestmark = pytest.mark.integration


class _Dropping(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Dropper

    def _any(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.server.arrive(self.path):
            # As a crash would: the connection closes, no status line is sent.
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        body = self.server.name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

    def log_message(self, format: str, *args: object) -> None:
        pass


class Dropper(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str, arrivals: Counter[str], guard: threading.Lock) -> None:
        super().__init__(("127.0.0.1", 0), _Dropping)
        self.name = name
        self.arrivals = arrivals  # shared by both instances: path -> times it reached an app
        self.guard = guard

    def arrive(self, path: str) -> bool:
        """Count the arrival; True if it is the path's first anywhere (then it is dropped)."""
        with self.guard:
            self.arrivals[path] += 1
            return self.arrivals[path] == 1


@pytest.fixture
def droppers() -> Iterator[tuple[Dropper, ...]]:
    arrivals: Counter[str] = Counter()
    guard = threading.Lock()
    servers = tuple(Dropper(name, arrivals, guard) for name in ("x", "y"))
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield servers
    for s in servers:
        s.shutdown()
        s.server_close()


def plane(droppers: tuple[Dropper, ...]) -> DataPlane:
    servers = tuple(
        Server(name=f"i-{d.name}", address="127.0.0.1", port=d.server_address[1]) for d in droppers
    )
    return DataPlane(
        routes=(route("hello.localhost", ("rev-hello-00001", 100)),),
        backends=(Backend(name="rev-hello-00001", servers=servers),),
    )


@pytest.mark.parametrize(
    ("method", "headers", "resent"),
    [
        ("GET", {}, True),
        ("PUT", {}, True),
        ("DELETE", {}, True),
        ("POST", {}, False),
        ("PATCH", {}, False),
        ("POST", {"Idempotency-Key": "8e03978e"}, True),
        ("POST", {"X-Idempotency-Key": "8e03978e"}, True),
    ],
)
def test_only_requests_that_may_run_twice_are_resent(
    manager: HAProxyManager,
    site: Site,
    droppers: tuple[Dropper, ...],
    method: str,
    headers: dict[str, str],
    resent: bool,
) -> None:
    assert manager.apply(plane(droppers)) == "started"
    path = f"/{uuid.uuid4().hex}"
    # A fresh client connection: HAProxy answers 502 for a request it does not resend (on a
    # reused server connection it may close the client's connection instead; either is fine).
    replies: list[httpx.Response] = []

    def send() -> httpx.Response:
        reply = client.request(
            method, path, headers={"Host": "hello.localhost", **headers}, content=b"{}"
        )
        replies.append(reply)
        return reply

    with httpx.Client(base_url=f"http://{site.bind}", timeout=10) as client:
        result = outcome(send)
    arrivals = droppers[0].arrivals[path]
    if resent:
        assert (result, arrivals) == ("200", 2), "dropped once, then resent and answered"
    else:
        assert arrivals == 1, f"a {method} reached the app {arrivals} times"
        assert result in ("502", "RemoteProtocolError"), result
        if replies:  # the 502 says what happened and how to have it resent
            assert replies[0].text.startswith(
                "slipway: revision hello-00001 sent no valid answer: the instance closed"
            ), replies[0].text
            assert "send an Idempotency-Key header" in replies[0].text
