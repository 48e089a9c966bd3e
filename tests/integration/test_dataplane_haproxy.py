"""HAProxyManager against a real HAProxy and real HTTP servers on loopback: routing, splits,
and changes (runtime API, map edits, hitless reloads). What it refuses and how it recovers is in
test_dataplane_haproxy_refusals.py; the shared HAProxy and instances are in haproxyplanes.py.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import replace

import httpx
import pytest

from pipeline.dataplane.model import Backend, DataPlane, Site
from pipeline.dataplane.process import HAProxyManager
from tests.integration.haproxyplanes import (
    HELLO,
    Instance,
    outcome,
    plane_one,
    route,
    srv,
    until,
    who,
)
from tests.integration.haproxyplanes import (  # fixtures, shared by import
    client as client,
)
from tests.integration.haproxyplanes import (
    instances as instances,
)
from tests.integration.haproxyplanes import (
    manager as manager,
)
from tests.integration.haproxyplanes import (
    site as site,
)

pytestmark = pytest.mark.integration


def test_routes_by_host_and_bare_domain(
    manager: HAProxyManager, client: httpx.Client, instances: dict[str, Instance], site: Site
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


def test_started_means_the_master_answers_too(
    manager: HAProxyManager, instances: dict[str, Instance]
) -> None:
    """A worker answers on the admin socket before its master listens on the master socket;
    "started" returned there made the next reload fail with "HAProxy is not running" (CI, stop
    25). Asked at once, the master must answer."""
    assert manager.apply(plane_one(instances, "a")) == "started"
    assert "# workers" in manager.master.command("show proc")


def test_split_is_per_request_on_one_connection(
    manager: HAProxyManager, client: httpx.Client, instances: dict[str, Instance]
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
    manager: HAProxyManager, client: httpx.Client, instances: dict[str, Instance]
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
    until(lambda: manager.server_sessions("rev-hello-00001").get("i-a") == 1)
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
    manager: HAProxyManager, client: httpx.Client, instances: dict[str, Instance]
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
    manager: HAProxyManager, instances: dict[str, Instance], site: Site
) -> None:
    base = plane_one(instances, "a", "b")
    manager.apply(base)
    stop = threading.Event()
    results: dict[str, Counter[str]] = {"keep-alive": Counter(), "new-connection": Counter()}

    def keep_alive() -> None:
        with httpx.Client(base_url=f"http://{site.bind}", timeout=10) as c:
            while not stop.is_set():
                results["keep-alive"][outcome(lambda: c.get("/", headers=HELLO))] += 1

    def new_connections() -> None:
        while not stop.is_set():
            results["new-connection"][
                outcome(lambda: httpx.get(f"http://{site.bind}/", headers=HELLO, timeout=10))
            ] += 1

    def in_flight() -> None:
        # Still running on the old worker when the reload happens.
        url = f"http://{site.bind}/?sleep=1"
        results["in-flight"][outcome(lambda: httpx.get(url, headers=HELLO, timeout=10))] += 1

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


def test_the_same_plane_again_reads_nothing_back_until_the_worker_changes(
    manager: HAProxyManager, client: httpx.Client, instances: dict[str, Instance],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Most reconcile passes hand the same plane: after one full sync, HAProxy is asked only
    which worker runs. A new worker (a reload by someone else) is read back in full again, and
    a server removed behind Slipway's back in it comes back."""
    one = plane_one(instances, "a")
    assert manager.apply(one) == "started"
    assert manager.apply(one) == "unchanged"  # the first pass on this worker reads it back
    sent: list[str] = []
    command = manager.runtime.socket.command

    def counting(line: str, **kwargs: str) -> str:
        sent.append(line)
        return command(line, **kwargs)

    monkeypatch.setattr(manager.runtime.socket, "command", counting)
    assert manager.apply(replace(one)) == "unchanged"  # equal, though another object
    assert sent == ["show info"]

    monkeypatch.undo()
    before = manager.worker_pid()
    manager.master.command("reload")  # as an operator's `systemctl reload` would
    until(lambda: manager._worker() not in (None, before))
    pid = manager.worker_pid()
    manager.runtime.maint("rev-hello-00001", "i-a")
    manager.runtime.del_server("rev-hello-00001", "i-a")
    assert manager.apply(one).startswith("runtime:")  # read back, the server added again
    assert manager.worker_pid() == pid
    assert who(client, "hello.localhost") == "a"
