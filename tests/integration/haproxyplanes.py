"""What the HAProxyManager tests share (tests/integration/test_dataplane_haproxy*.py): a real
HAProxy per test (master-worker daemon) on a free 127.0.0.1 port with its run directory under
pytest's tmp dir, stopped in teardown, and instances that are threaded `http.server`s answering
with their own name, so every assertion reads which instance served. The fixtures are imported
by the test modules that use them.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from pipeline.dataplane.model import Backend, DataPlane, Route, Server, Site, Split
from pipeline.dataplane.process import HAProxyManager

HAPROXY = "/usr/sbin/haproxy"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real instance
    wbufsize = -1  # headers and body in one write: no Nagle + delayed-ACK stall per request
    server: Instance

    def do_GET(self) -> None:
        query = parse_qs(urlparse(self.path).query)
        if "sleep" in query:
            time.sleep(float(query["sleep"][0]))
        body = json.dumps(
            {
                "name": self.server.name,
                "xff": self.headers.get("X-Forwarded-For"),
                "xfp": self.headers.get("X-Forwarded-Proto"),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Instance(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.name = name
        self.port = self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # HAProxy resets idle keep-alive connections to instances when an old worker exits.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def instances() -> Iterator[dict[str, Instance]]:
    servers = {name: Instance(name) for name in ("a", "b", "c", "api")}
    for srv in servers.values():
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield servers
    for srv in servers.values():
        srv.shutdown()
        srv.server_close()


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def site(tmp_path_factory: pytest.TempPathFactory, instances: dict[str, Instance]) -> Site:
    # A short path: unix socket paths are limited to 108 bytes.
    return Site(
        bind=f"127.0.0.1:{free_port()}",
        domain="localhost",
        api_server=f"127.0.0.1:{instances['api'].port}",
        run_dir=tmp_path_factory.mktemp("hx"),
    )


@pytest.fixture
def manager(site: Site) -> Iterator[HAProxyManager]:
    mgr = HAProxyManager(site=site, binary=HAPROXY)
    yield mgr
    mgr.stop()


@pytest.fixture
def client(site: Site) -> Iterator[httpx.Client]:
    # One connection at most: every request of a test rides the same keep-alive connection.
    with httpx.Client(
        base_url=f"http://{site.bind}", limits=httpx.Limits(max_connections=1), timeout=10
    ) as c:
        yield c


def srv(instances: dict[str, Instance], name: str, *, draining: bool = False) -> Server:
    return Server(
        name=f"i-{name}", address="127.0.0.1", port=instances[name].port, draining=draining
    )


def route(host: str, *splits: tuple[str, int]) -> Route:
    return Route(host=host, splits=tuple(Split(backend=b, percent=p) for b, p in splits))


def plane_one(instances: dict[str, Instance], *names: str, draining: bool = False) -> DataPlane:
    return DataPlane(
        routes=(route("hello.localhost", ("rev-hello-00001", 100)),),
        backends=(
            Backend(
                name="rev-hello-00001",
                servers=tuple(srv(instances, n, draining=draining) for n in names),
            ),
        ),
    )


def who(c: httpx.Client, host: str, path: str = "/") -> str:
    r = c.get(path, headers={"Host": host})
    assert r.status_code == 200, r.text
    return str(r.json()["name"])


HELLO = {"Host": "hello.localhost"}


def outcome(send: Callable[[], httpx.Response]) -> str:
    try:
        return str(send().status_code)
    except httpx.HTTPError as exc:
        return type(exc).__name__


def until(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)
