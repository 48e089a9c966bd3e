"""HAProxyManager against a real HAProxy and real HTTP servers on loopback: what a request
gets when no instance can answer (503, 504), a configuration HAProxy rejects, and a running
HAProxy adopted by a restarted control plane. Routing and changes are in
test_dataplane_haproxy.py; the shared HAProxy and instances are in haproxyplanes.py.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from pipeline.core.errors import Unavailable
from pipeline.dataplane import process
from pipeline.dataplane.model import Backend, Site
from pipeline.dataplane.process import HAProxyManager
from tests.integration.haproxyplanes import (
    HAPROXY,
    HELLO,
    Instance,
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


def test_backend_without_servers_answers_503(
    manager: HAProxyManager, client: httpx.Client, instances: dict[str, Instance]
) -> None:
    manager.apply(plane_one(instances))
    r = client.get("/", headers=HELLO)
    assert r.status_code == 503
    assert r.text == "slipway: revision hello-00001 has no ready instance\n"

    manager.apply(plane_one(instances, "a", draining=True))
    assert client.get("/", headers=HELLO).status_code == 503


def test_request_past_timeout_gets_504(
    manager: HAProxyManager, client: httpx.Client, instances: dict[str, Instance]
) -> None:
    plane = plane_one(instances, "a")
    plane = replace(plane, backends=(replace(plane.backends[0], timeout_s=1),))
    manager.apply(plane)
    r = client.get("/?sleep=2", headers=HELLO)
    assert r.status_code == 504
    assert r.text == "slipway: revision hello-00001 did not answer within its timeout of 1s\n"


def test_no_free_instance_within_queue_timeout_gets_503(
    manager: HAProxyManager, client: httpx.Client, instances: dict[str, Instance], site: Site
) -> None:
    busy = replace(srv(instances, "a"), maxconn=1)
    manager.apply(
        replace(
            plane_one(instances),
            backends=(Backend(name="rev-hello-00001", servers=(busy,), queue_timeout_s=1),),
        )
    )
    slow = threading.Thread(
        target=lambda: httpx.get(f"http://{site.bind}/?sleep=2", headers=HELLO, timeout=10)
    )
    slow.start()
    until(lambda: manager.server_sessions("rev-hello-00001").get("i-a") == 1)
    r = client.get("/", headers=HELLO)
    slow.join()
    assert r.status_code == 503
    assert "no instance was free within 1s" in r.text


def test_invalid_config_keeps_the_old_one_serving(
    manager: HAProxyManager,
    client: httpx.Client,
    instances: dict[str, Instance],
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
    manager: HAProxyManager, client: httpx.Client, instances: dict[str, Instance], site: Site
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
