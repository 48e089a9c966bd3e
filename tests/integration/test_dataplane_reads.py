"""What the reconciler reads from a real HAProxy each pass (`HAProxyDataPlane`): the load per
backend and the servers its checks hold down, each in one runtime command for every backend."""

from __future__ import annotations

import csv
import io

import httpx
import pytest

from pipeline.dataplane.drains import HAProxyDataPlane
from pipeline.dataplane.model import Backend, DataPlane, Server
from pipeline.dataplane.process import HAProxyManager
from pipeline.dataplane.runtime import stat_columns
from tests.integration.haproxyplanes import Instance, free_port, route, srv, until, who
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


def _plane(instances: dict[str, Instance], dead_port: int) -> DataPlane:
    return DataPlane(
        routes=(route("hello.localhost", ("rev-hello-00001", 100)),
                route("other.localhost", ("rev-other-00001", 100))),
        backends=(
            Backend(name="rev-hello-00001", servers=(
                srv(instances, "a"),
                Server(name="i-dead", address="127.0.0.1", port=dead_port),
            )),
            Backend(name="rev-other-00001", servers=(srv(instances, "b"),)),
        ),
    )  # fmt: skip


def test_down_names_the_servers_checks_hold_down_in_every_backend(
    manager: HAProxyManager, client: httpx.Client, instances: dict[str, Instance]
) -> None:
    reads = HAProxyDataPlane(manager)
    assert reads.down() == {}  # HAProxy not running: nothing known down, no error
    manager.apply(_plane(instances, free_port()))
    # `check inter 2s fall 2`: the dead one is down after two failed checks.
    until(lambda: "i-dead" in reads.down().get("rev-hello-00001", set()), timeout_s=15)
    down = reads.down()
    assert down["rev-hello-00001"] == {"i-dead"}
    assert "i-b" not in down.get("rev-other-00001", set())
    assert who(client, "hello.localhost") == "a"  # the live one serves


def test_load_counts_requests_per_backend_from_one_show_stat(
    manager: HAProxyManager, client: httpx.Client, instances: dict[str, Instance]
) -> None:
    reads = HAProxyDataPlane(manager)
    assert reads.load() == {}
    manager.apply(_plane(instances, free_port()))
    for _ in range(3):  # each on its own connection: a kept-alive one still counts in flight
        answer = httpx.get(f"{client.base_url}", headers={"Host": "other.localhost"}, timeout=10)
        assert answer.json()["name"] == "b"
    until(lambda: reads.load()["rev-other-00001"].in_flight == 0)
    load = reads.load()
    assert load["rev-other-00001"].requests == 3
    assert load["rev-hello-00001"].requests == 0

    # The column picker reads HAProxy's real CSV as csv.DictReader does.
    out = manager.runtime.socket.command("show stat -1 6 -1")
    rows = list(csv.DictReader(io.StringIO(out[2:])))
    assert stat_columns(out, "pxname", "scur") == [(r["pxname"], r["scur"]) for r in rows]
    columns = stat_columns(out, "svname", "pxname", "no-such-column")
    assert ("i-b", "rev-other-00001", "") in columns
    assert ("BACKEND", "rev-other-00001", "") in columns
