"""Traffic resolution, desired scale and the data plane, as tables: state in → values out."""

from __future__ import annotations

import pytest

from pipeline.dataplane.model import Backend, Route, Server, Split
from pipeline.reconcile.routing import build_plane, desired_scale, resolve_traffic
from tests.unit.factories import instance, revision, service, snapshot


@pytest.mark.parametrize(
    ("traffic", "statuses", "expected"),
    [
        pytest.param(None, ["Ready"], [("hello-00001", 100, "")], id="default-latest"),
        pytest.param(None, ["Ready", "Pending"], [("hello-00001", 100, "")],
                     id="latest-ignores-pending"),
        pytest.param(None, ["Ready", "Failed"], [("hello-00001", 100, "")],
                     id="latest-ignores-failed"),
        pytest.param(None, ["Pending"], [], id="nothing-ready-yet"),
        pytest.param(
            [{"revisionName": "hello-00001", "percent": 90},
             {"latestRevision": True, "percent": 10, "tag": "canary"}],
            ["Ready", "Ready"],
            [("hello-00001", 90, ""), ("hello-00002", 10, "canary")],
            id="split-with-tag",
        ),
        pytest.param([{"revisionName": "hello-00009", "percent": 100}], ["Ready"], [],
                     id="unknown-revision-dropped"),
    ],
)  # fmt: skip
def test_resolve_traffic(
    traffic: list[dict[str, object]] | None,
    statuses: list[str],
    expected: list[tuple[str, int, str]],
) -> None:
    revs = [revision("hello", i + 1, s) for i, s in enumerate(statuses)]
    got = resolve_traffic(service("hello", traffic), revs)
    assert [(t.revision, t.percent, t.tag) for t in got] == expected


@pytest.mark.parametrize(
    ("statuses", "traffic", "expected"),
    [
        pytest.param(["Ready"], None, {"hello-00001": 1}, id="serving"),
        pytest.param(["Ready", "Pending"], None, {"hello-00001": 1, "hello-00002": 1},
                     id="new-revision-proving-itself"),
        pytest.param(["Ready", "Ready"], None, {"hello-00001": 0, "hello-00002": 1},
                     id="old-revision-drains"),
        pytest.param(["Ready", "Failed"], None, {"hello-00001": 1, "hello-00002": 0},
                     id="failed-gets-nothing"),
        pytest.param(["Ready", "Ready"], [{"revisionName": "hello-00001", "percent": 100},
                                          {"revisionName": "hello-00002", "percent": 0,
                                           "tag": "next"}],
                     {"hello-00001": 1, "hello-00002": 1}, id="tagged-zero-percent-serves"),
    ],
)  # fmt: skip
def test_desired_scale(
    statuses: list[str], traffic: list[dict[str, object]] | None, expected: dict[str, int]
) -> None:
    revs = [revision("hello", i + 1, s) for i, s in enumerate(statuses)]
    assert desired_scale(snapshot([service("hello", traffic)], revs)) == expected


def test_plane_routes_only_ready_instances_and_keeps_draining_backends() -> None:
    snap = snapshot(
        [service("hello")],
        [revision("hello", 1, "Ready"), revision("hello", 2, "Ready", concurrency=10, timeout=30)],
    )
    old = instance("hello-00001", "aaa", address="10.0.0.2")
    new = instance("hello-00002", "bbb", address="10.0.0.3")
    unready = instance("hello-00002", "ccc", address="10.0.0.4")

    plane = build_plane(
        snap,
        instances=[old, new, unready],
        ready={old.id, new.id},
        draining={old.id},
        domain="localhost",
    )

    assert plane.routes == (
        Route(
            host="hello.localhost",
            service="hello",
            splits=(Split(backend="rev-hello-00002", percent=100),),
        ),
    )
    assert plane.backends == (
        Backend(
            name="rev-hello-00001",
            servers=(Server(name="i-aaa", address="10.0.0.2", port=8080, draining=True),),
        ),
        Backend(
            name="rev-hello-00002",
            servers=(Server(name="i-bbb", address="10.0.0.3", port=8080, maxconn=10),),
            timeout_s=30,
        ),
    )


def test_plane_tag_hosts_and_split() -> None:
    traffic = [
        {"revisionName": "hello-00001", "percent": 90, "tag": "stable"},
        {"latestRevision": True, "percent": 10},
    ]
    snap = snapshot([service("hello", traffic)], [revision("hello", 1), revision("hello", 2)])
    plane = build_plane(snap, instances=[], ready=set(), draining=set(), domain="example.test")
    assert [r.host for r in plane.routes] == ["hello.example.test", "stable--hello.example.test"]
    assert plane.routes[0].splits == (
        Split(backend="rev-hello-00001", percent=90),
        Split(backend="rev-hello-00002", percent=10),
    )
    # Routed revisions without ready instances still get a backend (it answers 503, not 404).
    assert [b.name for b in plane.backends] == ["rev-hello-00001", "rev-hello-00002"]
    assert all(b.servers == () for b in plane.backends)


def test_describe_uses_the_urls_the_engine_published() -> None:
    from pipeline.api.views import with_published_urls

    view = {
        "name": "hello",
        "url": "http://hello.localhost:8080",
        "traffic": [
            {"revision": "hello-00001", "percent": 100},
            {"revision": "hello-00002", "percent": 0, "tag": "canary",
             "url": "http://canary--hello.localhost:8080"},
        ],
    }  # fmt: skip
    knative = ["https://hello.apps.example.com", "https://canary--hello.apps.example.com"]
    out = with_published_urls(view, knative)
    assert out["url"] == "https://hello.apps.example.com"
    assert out["traffic"][1]["url"] == "https://canary--hello.apps.example.com"
    assert with_published_urls(view, []) == view  # nothing published yet: the derived ones
