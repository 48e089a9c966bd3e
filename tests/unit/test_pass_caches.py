"""What a quiet pass no longer redoes: the store's row-cached snapshot, the autoscaler's rest for
idle revisions, and the route table kept per snapshot. Each must decide exactly what the full
work decides; these tests hold that (the time saved is bench.scale's figure, not asserted)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pipeline.autoscale import scaler
from pipeline.autoscale.scaler import Load, Track
from pipeline.reconcile import routing
from pipeline.store import db
from pipeline.store.state import Store
from tests.unit.factories import instance, revision, service, snapshot

WINDOW = {"metadata": {"annotations": {"autoscaling.knative.dev/window": "6s"}}}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    engine = db.make_engine(f"sqlite:///{tmp_path}/state.db")
    db.migrate(engine)
    return Store(db.session_factory(engine))


def manifest(name: str, env: str = "") -> dict[str, Any]:
    container: dict[str, Any] = {"image": "x", "env": [{"name": "E", "value": env}]}
    return {"metadata": {"name": name}, "spec": {"template": {"spec": {"containers": [container]}}}}


# the snapshot -------------------------------------------------------------------------------------
def test_an_unchanged_store_gives_the_same_snapshot(store: Store) -> None:
    store.put_service("a", spec=manifest("a"))
    store.create_revision("a", image="i", template={"spec": {}}, template_hash="h")
    first = store.snapshot()
    assert store.snapshot() is first


def test_only_changed_rows_are_new_objects(store: Store) -> None:
    for name in ("a", "b"):
        store.put_service(name, spec=manifest(name))
        store.create_revision(name, image="i", template={"spec": {}}, template_hash="h")
    before = store.snapshot()
    store.mark_revision("a-00001", status="Ready")
    store.put_service("b", spec=manifest("b", env="2"))
    after = store.snapshot()
    old_revs = {r.name: r for r in before.revisions}
    new_revs = {r.name: r for r in after.revisions}
    assert new_revs["a-00001"].status == "Ready" and new_revs["a-00001"] is not old_revs["a-00001"]
    assert new_revs["b-00001"] is old_revs["b-00001"]
    old_svcs = {s.name: s for s in before.services}
    new_svcs = {s.name: s for s in after.services}
    assert new_svcs["a"] is old_svcs["a"]
    assert new_svcs["b"].spec == manifest("b", env="2") and new_svcs["b"].generation == 2


def test_notes_deletes_and_a_recreated_service_are_seen(store: Store) -> None:
    store.put_service("a", spec=manifest("a"))
    store.create_revision("a", image="i1", template={"spec": {"v": 1}}, template_hash="h1")
    store.snapshot()
    store.note("a-00001", reason="CrashLoopBackOff", message="exited")
    assert store.snapshot().revisions[0].reason == "CrashLoopBackOff"
    store.delete_service("a")
    assert store.snapshot().services == () and store.snapshot().revisions == ()
    # Same name, generation 1 and revision 1 again: a different service all the same.
    store.put_service("a", spec=manifest("a", env="new"))
    store.create_revision("a", image="i2", template={"spec": {"v": 2}}, template_hash="h2")
    again = store.snapshot()
    assert again.services[0].spec == manifest("a", env="new")
    assert (again.revisions[0].image, again.revisions[0].template) == ("i2", {"spec": {"v": 2}})


# the autoscaler at rest ---------------------------------------------------------------------------
def stepped(track: Track | None, load: Load | None, now: float) -> Track:
    return scaler.step(track, template=WINDOW, load=load, ready=0, now=now, zero_grace_s=2)


@pytest.mark.parametrize(
    ("later", "metric"),
    [
        pytest.param([3, 3, 0, 0], "concurrency", id="demand-returns"),
        pytest.param([1, 0, 0, 0, 5, 5, 5], "concurrency", id="a-burst-after-a-blip"),
        pytest.param([0, 0, 0], "concurrency", id="stays-quiet"),
    ],
)
def test_a_rested_revision_decides_as_a_stepped_one(later: list[int], metric: str) -> None:
    """Quiet passes taken by `rest` leave the same window behind as `step` would: once demand
    returns, the decisions are the same, pass after pass."""
    track, now, requests = None, 1000.0, 0
    while track is None or track.last is None or track.last.desired != 0:
        track = stepped(track, Load(in_flight=0, requests=requests), now)
        now += 1
    full = rested = track
    rests = 0
    for _ in range(20):  # quiet passes: one side steps, the other rests
        load = Load(in_flight=0, requests=requests)
        assert scaler.resting(rested, load=load, ready=0)
        full, rested = stepped(full, load, now), scaler.rest(rested, now=now)
        rests += 1
        now += 1
        assert scaler.desired(full, floor=0) == scaler.desired(rested, floor=0) == 0
    assert rested.samples == full.samples
    for in_flight in later:
        requests += in_flight
        load = Load(in_flight=in_flight, requests=requests)
        if scaler.resting(rested, load=load, ready=0):
            rested = scaler.rest(rested, now=now)
        else:
            rested = stepped(rested, load, now)
        full = stepped(full, load, now)
        now += 1
        assert scaler.desired(rested, floor=0) == scaler.desired(full, floor=0)
        assert rested.samples == full.samples
    assert rests == 20


@pytest.mark.parametrize(
    ("load", "ready", "counted", "rests"),
    [
        pytest.param(Load(in_flight=0, requests=7), 0, 7, True, id="quiet"),
        pytest.param(Load(in_flight=1, requests=7), 0, 7, False, id="a-request-in-flight"),
        pytest.param(Load(in_flight=0, requests=8), 0, 7, False, id="a-request-since-last-pass"),
        pytest.param(Load(in_flight=0, requests=0), 0, 7, False, id="haproxy-reloaded"),
        pytest.param(Load(in_flight=0, requests=7), 1, 7, False, id="an-instance-is-ready"),
        pytest.param(None, 0, None, True, id="no-figures-as-before"),
        pytest.param(None, 0, 7, False, id="figures-gone"),
    ],
)
def test_what_counts_as_rest(
    load: Load | None, ready: int, counted: int | None, rests: bool
) -> None:
    track = stepped(None, None, 0.0)
    zero = replace(track.last, desired=0) if track.last else None
    track = replace(track, last=zero, counted=None if counted is None else (0.0, counted))
    assert scaler.resting(track, load=load, ready=ready) is rests


def test_samples_older_than_the_window_are_dropped() -> None:
    track = None
    for t in range(100):
        track = stepped(track, Load(in_flight=0, requests=0), float(t))
    assert track is not None and track.window_s == 6.0
    assert [s.at for s in track.samples] == [93.0, 94.0, 95.0, 96.0, 97.0, 98.0, 99.0]


# the route table ----------------------------------------------------------------------------------
def test_the_plane_is_the_same_for_a_kept_snapshot_and_a_fresh_copy() -> None:
    snap = snapshot([service("a"), service("b")], [revision("a", 1), revision("b", 1)])
    up = instance("a-00001", "x1", address="10.0.0.9")
    kwargs: dict[str, Any] = {"instances": [up], "ready": {up.id}, "draining": set(),
                              "domain": "localhost"}  # fmt: skip
    kept = routing.build_plane(snap, **kwargs)
    assert routing.build_plane(snap, **kwargs) == kept
    copy = snapshot(list(snap.services), list(snap.revisions))  # not the same object: computed
    assert routing.build_plane(copy, **kwargs) == kept
    assert [len(b.servers) for b in kept.backends] == [1, 0]
    # The instance gone: the kept table serves again, without its server.
    assert [
        len(b.servers) for b in routing.build_plane(snap, **{**kwargs, "instances": []}).backends
    ] == [0, 0]
