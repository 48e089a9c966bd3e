"""HAProxyManager against a real HAProxy and real HTTP servers on loopback.

Each test starts its own HAProxy (master-worker daemon) on a free 127.0.0.1 port with its run
directory under pytest's tmp dir, and stops it in teardown. The instances are threaded
`http.server`s that answer with their own name, so every assertion reads which instance served.
"""

from __future__ import annotations

import json
import pickle
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from pipeline.core.errors import Unavailable
from pipeline.dataplane import process
from pipeline.dataplane.model import Backend, DataPlane, Route, Server, Site, Split
from pipeline.dataplane.process import HAProxyManager

pytestmark = pytest.mark.integration

HAPROXY = "/usr/sbin/haproxy"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real instance
    wbufsize = -1  # headers and body in one write: no Nagle + delayed-ACK stall per request
    server: _Instance

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


class _Instance(ThreadingHTTPServer):
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
def instances() -> Iterator[dict[str, _Instance]]:
    servers = {name: _Instance(name) for name in ("a", "b", "c", "api")}
    for srv in servers.values():
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield servers
    for srv in servers.values():
        srv.shutdown()
        srv.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def site(tmp_path_factory: pytest.TempPathFactory, instances: dict[str, _Instance]) -> Site:
    # A short path: unix socket paths are limited to 108 bytes.
    return Site(
        bind=f"127.0.0.1:{_free_port()}",
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


def srv(instances: dict[str, _Instance], name: str, *, draining: bool = False) -> Server:
    return Server(
        name=f"i-{name}", address="127.0.0.1", port=instances[name].port, draining=draining
    )


def route(host: str, *splits: tuple[str, int]) -> Route:
    return Route(host=host, splits=tuple(Split(backend=b, percent=p) for b, p in splits))


def plane_one(instances: dict[str, _Instance], *names: str, draining: bool = False) -> DataPlane:
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


def test_routes_by_host_and_bare_domain(
    manager: HAProxyManager, client: httpx.Client, instances: dict[str, _Instance], site: Site
) -> None:
    assert manager.apply(plane_one(instances, "a")) == "started"
    port = site.bind.rsplit(":", 1)[1]

    assert who(client, "hello.localhost") == "a"
    assert who(client, f"hello.localhost:{port}") == "a"
    assert who(client, "HELLO.Localhost") == "a"
    assert who(client, f"localhost:{port}") == "api"
    served = client.get("/", headers={"Host": "hello.localhost"}).json()
    assert served["xff"] == "127.0.0.1"
    assert served["xfp"] == "http"

    metrics = client.get("/metrics/haproxy", headers={"Host": "localhost"})
    assert metrics.status_code == 200
    assert 'haproxy_backend_http_responses_total{proxy="rev-hello-00001"' in metrics.text

    missing = client.get("/", headers={"Host": f"nope.localhost:{port}"})
    assert missing.status_code == 404
    assert missing.text == (
        "slipway: no service answers to host 'nope.localhost'; "
        "`slipway services list` shows what is deployed\n"
    )


def test_split_is_per_request_on_one_connection(
    manager: HAProxyManager, client: httpx.Client, instances: dict[str, _Instance]
) -> None:
    plane = DataPlane(
        routes=(route("hello.localhost", ("rev-hello-00001", 90), ("rev-hello-00002", 10)),),
        backends=(
            Backend(name="rev-hello-00001", servers=(srv(instances, "a"),)),
            Backend(name="rev-hello-00002", servers=(srv(instances, "b"),)),
        ),
    )
    manager.apply(plane)
    seen = Counter(who(client, "hello.localhost") for _ in range(1000))
    # Binomial(1000, 0.1): mean 100, sd 9.5; 60..140 is beyond 4 sd either way.
    assert 60 <= seen["b"] <= 140, seen
    assert seen["a"] + seen["b"] == 1000


def test_servers_change_through_the_runtime_api(
    manager: HAProxyManager, client: httpx.Client, instances: dict[str, _Instance]
) -> None:
    manager.apply(plane_one(instances, "a"))
    pid = manager.worker_pid()

    assert manager.apply(plane_one(instances, "a", "b")).startswith("runtime:")
    assert manager.worker_pid() == pid
    assert {who(client, "hello.localhost") for _ in range(40)} == {"a", "b"}
    assert manager.apply(plane_one(instances, "a", "b")) == "unchanged"

    # Drain a while one of its requests is in flight: it finishes, new requests go to b.
    slow: list[httpx.Response] = []
    pinned = plane_one(instances, "a")
    manager.apply(pinned)  # a alone, so the slow request surely lands on it
    t = threading.Thread(
        target=lambda: slow.append(
            httpx.get(
                f"http://{manager.site.bind}/?sleep=1",
                headers={"Host": "hello.localhost"},
                timeout=10,
            )
        )
    )
    t.start()
    _until(lambda: manager.server_sessions("rev-hello-00001").get("i-a") == 1)
    draining = DataPlane(
        routes=pinned.routes,
        backends=(
            Backend(
                name="rev-hello-00001",
                servers=(srv(instances, "a", draining=True), srv(instances, "b")),
            ),
        ),
    )
    assert manager.apply(draining).startswith("runtime:")
    assert {who(client, "hello.localhost") for _ in range(20)} == {"b"}
    assert manager.sessions("rev-hello-00001") >= 1
    t.join()
    assert slow[0].status_code == 200 and slow[0].json()["name"] == "a"

    assert manager.apply(plane_one(instances, "b")).startswith("runtime:")
    assert [s.name for s in manager.runtime.show_servers("rev-hello-00001")] == ["i-b"]
    assert {who(client, "hello.localhost") for _ in range(10)} == {"b"}

    # Same instance name, new address and concurrency: changed in place.
    moved = replace(srv(instances, "b"), port=instances["c"].port, maxconn=3)
    manager.apply(replace(pinned, backends=(replace(pinned.backends[0], servers=(moved,)),)))
    [state] = manager.runtime.show_servers("rev-hello-00001")
    assert (state.port, state.maxconn) == (instances["c"].port, 3)
    assert {who(client, "hello.localhost") for _ in range(10)} == {"c"}
    assert manager.worker_pid() == pid


def test_a_deploy_reloads_once_and_moves_traffic_at_runtime(
    manager: HAProxyManager, client: httpx.Client, instances: dict[str, _Instance]
) -> None:
    """A deploy: the new revision's backend appears (one reload), then the service's host and a
    tag move to it and the old tag goes: `set map` / `add map` / `del map`, the same worker."""
    old = Backend(name="rev-hello-00001", servers=(srv(instances, "a"),))
    new = Backend(name="rev-hello-00002", servers=(srv(instances, "b"),))
    tag = route("v1--hello.localhost", ("rev-hello-00001", 100))
    serving = DataPlane(routes=(route("hello.localhost", ("rev-hello-00001", 100)), tag),
                        backends=(old,))  # fmt: skip
    manager.apply(serving)
    assert manager.apply(replace(serving, backends=(old, new))) == "reloaded"
    pid = manager.worker_pid()
    assert who(client, "hello.localhost") == "a"

    moved = DataPlane(
        routes=(route("hello.localhost", ("rev-hello-00002", 100)),
                route("v2--hello.localhost", ("rev-hello-00002", 100))),
        backends=(old, new),
    )  # fmt: skip
    assert manager.apply(moved) == "runtime: 3 changes"  # set, add, del in the routes map
    assert manager.worker_pid() == pid
    assert {who(client, "hello.localhost") for _ in range(10)} == {"b"}
    assert who(client, "v2--hello.localhost") == "b"
    assert client.get("/", headers={"Host": "v1--hello.localhost"}).status_code == 404
    assert manager.apply(moved) == "unchanged"


def test_reload_loses_no_request(
    manager: HAProxyManager, instances: dict[str, _Instance], site: Site
) -> None:
    base = plane_one(instances, "a", "b")
    manager.apply(base)
    stop = threading.Event()
    results: dict[str, Counter[str]] = {"keep-alive": Counter(), "new-connection": Counter()}

    def keep_alive() -> None:
        with httpx.Client(base_url=f"http://{site.bind}", timeout=10) as c:
            while not stop.is_set():
                results["keep-alive"][_outcome(lambda: c.get("/", headers=_HELLO))] += 1

    def new_connections() -> None:
        while not stop.is_set():
            results["new-connection"][
                _outcome(lambda: httpx.get(f"http://{site.bind}/", headers=_HELLO, timeout=10))
            ] += 1

    def in_flight() -> None:
        # Still running on the old worker when the reload happens.
        url = f"http://{site.bind}/?sleep=1"
        results["in-flight"][_outcome(lambda: httpx.get(url, headers=_HELLO, timeout=10))] += 1

    results["in-flight"] = Counter()
    threads = [
        threading.Thread(target=f) for f in (keep_alive, keep_alive, new_connections, in_flight)
    ]
    for t in threads:
        t.start()
    pids = {manager.worker_pid()}
    try:
        for i in range(3):
            time.sleep(0.3)
            # A new backend is structure (a new route alone is a map entry, no reload).
            extra = route(f"r{i}.localhost", (f"rev-r{i}-00001", 100))
            added = Backend(name=f"rev-r{i}-00001", servers=base.backends[0].servers)
            more = replace(base, routes=(*base.routes, extra), backends=(*base.backends, added))
            assert manager.apply(more) == "reloaded"
            pids.add(manager.worker_pid())
            with httpx.Client(base_url=f"http://{site.bind}") as fresh:
                assert who(fresh, f"r{i}.localhost") in "ab"
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert len(pids) == 4
    assert results.pop("in-flight") == {"200": 1}
    for kind, outcomes in results.items():
        assert set(outcomes) == {"200"}, (kind, outcomes)
        assert outcomes["200"] > 10, (kind, outcomes)


def test_backend_without_servers_answers_503(
    manager: HAProxyManager, client: httpx.Client, instances: dict[str, _Instance]
) -> None:
    manager.apply(plane_one(instances))
    r = client.get("/", headers=_HELLO)
    assert r.status_code == 503
    assert r.text == "slipway: revision hello-00001 has no ready instance\n"

    manager.apply(plane_one(instances, "a", draining=True))
    assert client.get("/", headers=_HELLO).status_code == 503


def test_request_past_timeout_gets_504(
    manager: HAProxyManager, client: httpx.Client, instances: dict[str, _Instance]
) -> None:
    plane = plane_one(instances, "a")
    plane = replace(plane, backends=(replace(plane.backends[0], timeout_s=1),))
    manager.apply(plane)
    r = client.get("/?sleep=2", headers=_HELLO)
    assert r.status_code == 504
    assert r.text == "slipway: revision hello-00001 did not answer within its timeout of 1s\n"


def test_no_free_instance_within_queue_timeout_gets_503(
    manager: HAProxyManager, client: httpx.Client, instances: dict[str, _Instance], site: Site
) -> None:
    busy = replace(srv(instances, "a"), maxconn=1)
    manager.apply(
        replace(
            plane_one(instances),
            backends=(Backend(name="rev-hello-00001", servers=(busy,), queue_timeout_s=1),),
        )
    )
    slow = threading.Thread(
        target=lambda: httpx.get(f"http://{site.bind}/?sleep=2", headers=_HELLO, timeout=10)
    )
    slow.start()
    _until(lambda: manager.server_sessions("rev-hello-00001").get("i-a") == 1)
    r = client.get("/", headers=_HELLO)
    slow.join()
    assert r.status_code == 503
    assert "no instance was free within 1s" in r.text


def test_invalid_config_keeps_the_old_one_serving(
    manager: HAProxyManager,
    client: httpx.Client,
    instances: dict[str, _Instance],
    site: Site,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plane = plane_one(instances, "a")
    manager.apply(plane)
    before = site.config_file.read_text()
    pid = manager.worker_pid()

    monkeypatch.setattr(process, "render", lambda plane, *, site: "frontend broken\n  bind\n")
    changed = replace(plane, routes=(*plane.routes, route("x.localhost", ("rev-hello-00001", 100))))
    with pytest.raises(Unavailable, match="HAProxy rejected the rendered configuration") as err:
        manager.apply(changed)
    assert "'bind' expects" in err.value.message
    with pytest.raises(Unavailable, match="HAProxy rejected"):
        manager.apply(plane_one(instances, "a", "b"))  # the runtime path checks the file too

    assert site.config_file.read_text() == before
    assert manager.worker_pid() == pid
    assert who(client, "hello.localhost") == "a"


def test_restarted_control_plane_adopts_running_haproxy(
    manager: HAProxyManager, client: httpx.Client, instances: dict[str, _Instance], site: Site
) -> None:
    plane = plane_one(instances, "a")
    # Started by a Python process that then exits: HAProxy is its own daemon and keeps serving.
    script = (
        "import pickle, sys; from pipeline.dataplane.process import HAProxyManager; "
        "site, plane = pickle.loads(sys.stdin.buffer.read()); "
        f"print(HAProxyManager(site=site, binary={HAPROXY!r}).apply(plane))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        input=pickle.dumps((site, plane)),
        capture_output=True,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    assert out.stdout.decode().strip() == "started"
    assert who(client, "hello.localhost") == "a"

    pid = manager.worker_pid()
    assert manager.is_running()
    assert manager.apply(plane) == "unchanged"
    assert manager.apply(plane_one(instances, "a", "b")).startswith("runtime:")
    assert manager.worker_pid() == pid


_HELLO = {"Host": "hello.localhost"}


def _outcome(send: Callable[[], httpx.Response]) -> str:
    try:
        return str(send().status_code)
    except httpx.HTTPError as exc:
        return type(exc).__name__


def _until(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)
