"""How the control plane knows its own helper answers on a port (`app.daemons`): the real
metadata server and the real activator app, each on a free loopback port, against a plain
HTTP server that holds the port but is neither (another process, or a stale predecessor).
Starting and replacing the helper processes runs in tests/chaos/test_activator_outlives.py."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.client import HTTPResponse
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from pathlib import Path

import pytest
import uvicorn

from pipeline.app.daemons import _activates, _flavored, _http_answers
from pipeline.dataplane.activator import create_app
from pipeline.identity import keys
from pipeline.identity.metadata import Issuer, make_server

Check = Callable[[HTTPResponse], bool]
FLAVOR = {"Metadata-Flavor": "Google"}


@pytest.fixture
def metadata_port(tmp_path: Path) -> Iterator[int]:
    store = keys.KeyStore(tmp_path)
    store.ensure()
    issuer = Issuer(issuer="http://localhost:8080", domain="localhost", project="p", keys=store)
    yield from _serving(
        make_server(bind="127.0.0.1", port=0, lookup=lambda _address: None, issuer=issuer)
    )


def _serving(server: HTTPServer) -> Iterator[int]:
    """Its port while it serves in a thread; shut and closed afterwards."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def activator_port() -> Iterator[int]:
    app = create_app(wait_for_instance=lambda _revision, _timeout: None, timeout_s=1)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the activator did not start"
        time.sleep(0.02)
    yield port
    server.should_exit = True
    thread.join()


class _Stranger(BaseHTTPRequestHandler):
    """Some other HTTP server on the port: 200 to everything, no Metadata-Flavor echoed."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def stranger_port() -> Iterator[int]:
    yield from _serving(ThreadingHTTPServer(("127.0.0.1", 0), _Stranger))


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # bound once, never listened on: the connect is refused


@pytest.mark.parametrize(
    ("listener", "headers", "check", "answers"),
    [
        pytest.param("metadata_port", FLAVOR, _flavored, True, id="metadata-is-metadata"),
        pytest.param("activator_port", {}, _activates, True, id="activator-is-the-activator"),
        pytest.param("stranger_port", FLAVOR, _flavored, False, id="stranger-is-not-metadata"),
        pytest.param("stranger_port", {}, _activates, False, id="stranger-is-not-the-activator"),
        pytest.param("metadata_port", {}, _activates, False, id="metadata-is-not-the-activator"),
        pytest.param("activator_port", FLAVOR, _flavored, False, id="activator-is-not-metadata"),
        pytest.param("closed_port", FLAVOR, _flavored, False, id="nothing-listens-metadata"),
        pytest.param("closed_port", {}, _activates, False, id="nothing-listens-activator"),
    ],
)  # fmt: skip
def test_a_helper_is_known_by_its_answer_not_by_an_open_port(
    request: pytest.FixtureRequest,
    listener: str,
    headers: dict[str, str],
    check: Check,
    answers: bool,
) -> None:
    port: int = request.getfixturevalue(listener)
    assert _http_answers("127.0.0.1", port, headers, check) is answers
