"""What keeps a reconcile pass from growing with services that did not change: revisions grouped in
one walk, a plane rendered once while it stays the same, and the pass time /metrics shows. No
timing is asserted (bench/scale.py measures); these check the work done, not how long it took."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.api import metrics
from pipeline.core.records import Revision, Service, Snapshot
from pipeline.dataplane import process
from pipeline.dataplane.model import Backend, DataPlane, Route, Server, Site, Split
from pipeline.dataplane.render import render, structure
from pipeline.reconcile.routing import revisions_by_service
from tests.unit.test_reconciler import World

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def revision(service: str, number: int) -> Revision:
    return Revision(
        name=f"{service}-{number:05d}", service=service, number=number, image="img",
        template={}, template_hash="h", status="Ready", reason="", message="", build_id=None,
        created_at=NOW, ready_at=NOW,
    )  # fmt: skip


def service(name: str) -> Service:
    return Service(name=name, spec={}, generation=1, created_at=NOW)


def test_revisions_by_service_is_revisions_of_for_every_service() -> None:
    snapshot = Snapshot(
        services=(service("a"), service("b"), service("empty")),
        revisions=(revision("b", 2), revision("a", 3), revision("b", 1), revision("a", 1)),
    )
    grouped = revisions_by_service(snapshot)
    assert grouped == {s.name: snapshot.revisions_of(s.name) for s in snapshot.services}
    assert [r.number for r in grouped["a"]] == [1, 3]
    assert grouped["empty"] == []


def plane(*servers: Server) -> DataPlane:
    return DataPlane(
        routes=(Route(host="a.localhost", splits=(Split(backend="rev-a-00001", percent=100),)),),
        backends=(Backend(name="rev-a-00001", servers=servers),),
    )


def test_a_plane_that_did_not_change_is_not_rendered_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered: list[DataPlane] = []

    def counting(p: DataPlane, *, site: Site) -> str:
        rendered.append(p)
        return render(p, site=site)

    monkeypatch.setattr(process, "render", counting)
    site = Site(bind="127.0.0.1:8080", domain="localhost", api_server="127.0.0.1:8081",
                run_dir=tmp_path)  # fmt: skip
    manager = process.HAProxyManager(site=site)
    first = plane(Server(name="i1", address="10.0.0.2", port=8080))
    text, key = manager._render(first)
    assert (text, key) == (render(first, site=site), structure(first, site=site))
    assert manager._render(replace(first)) == (text, key)  # equal, though another object
    assert len(rendered) == 1
    second = plane(Server(name="i2", address="10.0.0.3", port=8080))
    text2, key2 = manager._render(second)
    assert len(rendered) == 2
    assert text2 != text and key2 == key  # servers differ, the structure does not


def test_each_pass_is_timed_for_metrics(tmp_path: Path) -> None:
    world = World(tmp_path)
    assert world.reconciler.pass_seconds == (0.0, 0.0)
    world.serving("hello", "img:1")
    total, last = world.reconciler.pass_seconds
    assert 0 < last <= total
    world.reconciler.reconcile_once()
    assert world.reconciler.pass_seconds[0] > total


def test_metrics_show_the_pass_time() -> None:
    inputs = metrics.Inputs(
        snapshot=Snapshot(services=(), revisions=()), reconcile_seconds=(12.5, 0.25)
    )
    text = metrics.render(inputs)
    assert "slipway_reconcile_pass_seconds_total 12.5\n" in text
    assert "slipway_reconcile_last_pass_seconds 0.25\n" in text
