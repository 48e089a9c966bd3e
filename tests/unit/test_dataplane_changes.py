"""The runtime changes the manager sends, as tables: the plane's backend and what the running
HAProxy reports in → the commands out (the real HAProxy runs them in
tests/integration/test_dataplane_haproxy.py). And the master's `show proc`, parsed."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline.dataplane.changes import Change, invoker_changes, route_changes, server_changes
from pipeline.dataplane.model import Backend, Server
from pipeline.dataplane.procs import Procs
from pipeline.dataplane.render import server_args
from pipeline.dataplane.runtime import ServerState

B = "rev-hello-00001"
WANTED = Server(name="i-a1", address="10.0.0.2", port=8080, maxconn=10)
AS_WANTED = ServerState(
    name="i-a1", address="10.0.0.2", port=8080, admin="ready", up=True, weight=1, maxconn=10,
    sessions=0, queued=0,
)  # fmt: skip


def ops(changes: list[Change]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for c in changes:
        detail = {
            "add": c.args, "address": f"{c.address}:{c.port}", "weight": str(c.number),
            "maxconn": str(c.number),
        }.get(c.op)  # fmt: skip
        out.append((c.op, c.server) if detail is None else (c.op, c.server, detail))
    return out


@pytest.mark.parametrize(
    ("wanted", "running", "expected"),
    [
        pytest.param((WANTED,), {"i-a1": AS_WANTED}, [], id="in-line-nothing-to-send"),
        pytest.param((WANTED,), {},
                     [("add", "i-a1", server_args(WANTED)), ("health", "i-a1"), ("ready", "i-a1")],
                     id="new-server-added-checked-ready"),
        pytest.param((replace(WANTED, draining=True),), {},
                     [("add", "i-a1", server_args(replace(WANTED, draining=True))),
                      ("health", "i-a1"), ("drain", "i-a1")],
                     id="new-draining-server-added-draining"),
        pytest.param((replace(WANTED, draining=True),), {"i-a1": AS_WANTED}, [("drain", "i-a1")],
                     id="drain"),
        pytest.param((WANTED,), {"i-a1": replace(AS_WANTED, admin="drain")}, [("ready", "i-a1")],
                     id="undrain"),
        pytest.param((WANTED,), {"i-a1": replace(AS_WANTED, weight=0)},
                     [("weight", "i-a1", "1"), ("ready", "i-a1")],
                     id="weight-zero-from-the-file-back-to-one"),
        pytest.param((WANTED,), {"i-a1": replace(AS_WANTED, admin="maint")}, [("ready", "i-a1")],
                     id="out-of-maintenance"),
        pytest.param((WANTED,), {"i-a1": replace(AS_WANTED, address="10.0.0.9", maxconn=0)},
                     [("address", "i-a1", "10.0.0.2:8080"), ("maxconn", "i-a1", "10")],
                     id="address-and-maxconn-set"),
        pytest.param((), {"i-a1": AS_WANTED, "i-b2": replace(AS_WANTED, name="i-b2",
                                                             admin="maint")},
                     [("maint", "i-a1"), ("delete", "i-a1"), ("delete", "i-b2")],
                     id="unwanted-to-maintenance-then-deleted"),
    ],
)  # fmt: skip
def test_server_changes(
    wanted: tuple[Server, ...], running: dict[str, ServerState], expected: list[tuple[str, ...]]
) -> None:
    changes = server_changes(Backend(name=B, servers=wanted), running)
    assert all(c.backend == B for c in changes)
    assert ops(changes) == expected


def test_invoker_changes_revoke_then_grant() -> None:
    live = {"target service:old": "1", "target user:alice": "1"}
    wanted = {"target user:alice": "1", "target service:caller": "1"}
    assert invoker_changes(wanted, live) == [
        Change(op="revoke", key="target service:old"),
        Change(op="grant", key="target service:caller", value="1"),
    ]
    assert invoker_changes(wanted, wanted) == []


M = "/run/routes.map"


@pytest.mark.parametrize(
    ("wanted", "live", "expected"),
    [
        pytest.param(
            {"hello.localhost": "rev-hello-00002"}, {"hello.localhost": "rev-hello-00001"},
            [Change(op="route", map=M, key="hello.localhost", value="rev-hello-00002",
                    replace=True)],
            id="deploy-moves-the-host",
        ),
        pytest.param(
            {"a.localhost": "rev-a-00001", "b.localhost": "rev-b-00001"}, {"b.localhost": "rev-x"},
            [Change(op="route", map=M, key="a.localhost", value="rev-a-00001"),
             Change(op="route", map=M, key="b.localhost", value="rev-b-00001", replace=True)],
            id="new-host-added-and-other-moved",
        ),
        pytest.param(
            {"v2--a.localhost": "rev-a-00002"}, {"v1--a.localhost": "rev-a-00001"},
            [Change(op="route", map=M, key="v2--a.localhost", value="rev-a-00002"),
             Change(op="unroute", map=M, key="v1--a.localhost")],
            id="new-tag-before-the-old-one-goes",
        ),
        pytest.param({"a.localhost": "rev-a"}, {"a.localhost": "rev-a"}, [], id="unchanged"),
    ],
)  # fmt: skip
def test_route_changes(
    wanted: dict[str, str], live: dict[str, str], expected: list[Change]
) -> None:
    assert route_changes(M, wanted, live) == expected


SHOW_PROC = """\
#<PID>          <type>          <reloads>       <uptime>        <version>
4211            master          2 [failed: 1]   0d00h01m02s     2.6.12
# workers
4305            worker          0               0d00h00m10s     2.6.12
# old workers
4290            worker          1               0d00h00m40s     2.6.12
4250            worker          2               0d00h01m00s     2.6.12
# programs
"""


@pytest.mark.parametrize(
    ("out", "expected"),
    [
        pytest.param(SHOW_PROC, Procs(worker=4305, failed=1, old_workers=2), id="after-reloads"),
        pytest.param("", Procs(worker=None, failed=0, old_workers=0), id="nothing-answered"),
    ],
)
def test_show_proc(out: str, expected: Procs) -> None:
    assert Procs.parse(out) == expected
