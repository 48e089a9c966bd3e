"""Wake from stopped: the activator's `instance_for` gets a started instance as soon as its first
probe passes (`reconcile.watches`), without waiting for the pass that puts it into HAProxy; that
pass then takes it as ready without probing it again."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from pipeline.core.revisions import Readiness
from pipeline.reconcile.watches import Watches
from tests.unit.factories import instance
from tests.unit.test_reconciler import World

BACKEND = "rev-hello-00001"


def at_zero(tmp_path: Path) -> World:
    world = World(tmp_path, scale_to_zero=True, zero_grace_s=5)
    _, inst = world.serving("hello", "img:1")
    world.listening.discard(inst.address)
    for _ in range(70):  # the 60 s window and the 5 s grace without a request
        world.now += 1
        world.reconciler.reconcile_once()
    assert world.engine.list_instances() == []
    return world


def test_the_activator_gets_the_instance_when_its_first_probe_passes(tmp_path: Path) -> None:
    world = at_zero(tmp_path)
    got: list[str | None] = []
    asking = threading.Thread(target=lambda: got.append(
        world.reconciler.instance_for("hello-00001", 10)))  # fmt: skip
    asking.start()
    world.plane.in_flight[BACKEND] = 1  # the activator's held request, as HAProxy counts it
    world.now += 1
    world.reconciler.reconcile_once()  # starts one
    (inst,) = world.engine.list_instances()
    passes = world.reconciler.passes
    world.listening.add(inst.address)  # the app listens: its watch sees it within milliseconds
    asking.join(timeout=5)
    assert got == [f"{inst.address}:8080"]
    assert world.reconciler.passes == passes  # no pass was needed for the hand-over
    assert world.plane.planes[-1].backends[0].servers == ()  # not in HAProxy yet
    world.now += 1
    world.reconciler.reconcile_once()
    assert [s.address for s in world.plane.planes[-1].backends[0].servers] == [inst.address]
    assert world.reconciler._watches.tracked() == frozenset()  # settled: ready in the pass


def test_a_watch_that_never_passes_leaves_the_instance_to_the_passes() -> None:
    probes: list[float] = []
    found = threading.Event()

    def probe(address: str, port: int, readiness: Readiness) -> bool:
        probes.append(time.monotonic())
        return False

    watches = Watches(probe=probe, found=found.set)
    inst = instance("hello-00001", "a1", address="10.0.0.7")
    watches.watch(inst, port=8080, readiness=Readiness())
    time.sleep(0.3)
    assert watches.tracked() == {inst.id} and watches.address("hello-00001") is None
    # Every few milliseconds at first (the passes probe 0.2 s apart); loosely: a loaded machine
    # stretches the sleeps.
    assert len(probes) >= 5
    watches.settle([inst.id])  # a pass found it gone
    count = len(probes)
    time.sleep(0.1)
    assert len(probes) <= count + 1 and not found.is_set()


@pytest.mark.parametrize("address", ["", "10.0.0.8"])
def test_a_passed_watch_is_handed_out_until_a_pass_settles_it(address: str) -> None:
    watches = Watches(probe=lambda a, p, r: True, found=lambda: None)
    inst = instance("hello-00001", "a1", address=address)
    watches.watch(inst, port=9000, readiness=Readiness())
    deadline = time.monotonic() + 5
    while address and watches.address("hello-00001") is None and time.monotonic() < deadline:
        time.sleep(0.005)
    expected = f"{address}:9000" if address else None  # no address: nothing to probe or hand out
    assert watches.address("hello-00001") == expected
    watches.settle([inst.id])
    assert watches.address("hello-00001") is None and watches.tracked() == frozenset()


def test_an_ask_is_demand_when_haproxy_counts_no_request(tmp_path: Path) -> None:
    """A request held by a worker that a reload retired is in no current worker's stats
    (bench.soak found it: the wake waited out the timeout). The ask itself starts one."""
    world = at_zero(tmp_path)
    got: list[str | None] = []
    asking = threading.Thread(target=lambda: got.append(
        world.reconciler.instance_for("hello-00001", 10)))  # fmt: skip
    asking.start()
    for _ in range(500):  # the ask is registered before the pass reads it
        if "hello-00001" in world.reconciler._asking:
            break
        time.sleep(0.01)
    assert world.plane.in_flight.get(BACKEND, 0) == 0  # HAProxy counts nothing
    world.now += 1
    world.reconciler.reconcile_once()
    (inst,) = world.engine.list_instances()
    world.listening.add(inst.address)
    asking.join(timeout=5)
    assert got == [f"{inst.address}:8080"]
    assert world.reconciler._asking == {}  # the ask is over: no demand left behind
