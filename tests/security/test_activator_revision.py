"""Attack: a client names the revision the activator wakes and forwards to.

The activator learns a request's revision from the server name HAProxy sends
(`render.SERVER_HEADER`, the activator's server being named after the revision). A client that
sent that header itself, naming another revision (say a private service's, whose token rules it
never passed), would have the activator wake that revision and forward the request to it. Real
HAProxy, rendered config, and a loopback HTTP server standing in for the activator and for an
instance, recording the header each request arrives with.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from pipeline.dataplane.model import Backend, DataPlane, Server, Site
from pipeline.dataplane.process import HAProxyManager
from pipeline.dataplane.render import SERVER_HEADER
from tests.integration.haproxyplanes import HAPROXY, route
from tests.integration.haproxyplanes import instances as instances  # fixture of `site`
from tests.integration.haproxyplanes import site as site

pytestmark = pytest.mark.integration


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Recorder

    def do_GET(self) -> None:
        self.server.seen.append(self.headers.get_all(SERVER_HEADER) or [])
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


class Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Recorder)
        self.seen: list[list[str]] = []
        self.port = self.server_address[1]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    threading.Thread(target=rec.serve_forever, daemon=True).start()
    yield rec
    rec.shutdown()
    rec.server_close()


def test_a_client_cannot_name_the_revision_the_activator_serves(
    site: Site, recorder: Recorder
) -> None:
    # The recorder is the activator of both revisions, and b's one instance.
    site = replace(site, activator=f"127.0.0.1:{recorder.port}")
    plane = DataPlane(
        routes=(
            route("a.localhost", ("rev-a-00001", 100)),
            route("b.localhost", ("rev-b-00001", 100)),
        ),
        backends=(
            Backend(name="rev-a-00001"),  # at zero: HAProxy sends the activator
            Backend(
                name="rev-b-00001",
                servers=(Server(name="i-b1", address="127.0.0.1", port=recorder.port),),
            ),
        ),
    )
    manager = HAProxyManager(site=site, binary=HAPROXY)
    try:
        assert manager.apply(plane) == "started"
        forged = [
            (SERVER_HEADER, "activator-b-00001"),
            (SERVER_HEADER.lower(), "activator-private-00001"),
        ]
        with httpx.Client(base_url=f"http://{site.bind}", timeout=10) as client:
            for host in ("a.localhost", "b.localhost"):
                reply = client.get("/", headers=[("Host", host), *forged])
                assert reply.status_code == 200, reply.text
    finally:
        manager.stop()
    # Each arrived with HAProxy's one value only: the activator's for a at zero, the
    # instance's for b; neither forged value got through.
    assert recorder.seen == [["activator-a-00001"], ["i-b1"]]
