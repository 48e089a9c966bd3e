"""The frozen tier: the pure decisions as tables, then reconcile passes with an in-process engine
that freezes and thaws (the real `docker pause` path is in tests/integration/test_freeze.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pipeline.autoscale.freezing import Choice, Idle, choose, memory_low, retention_s
from pipeline.core.annotations import FROZEN_RETENTION_ANNOTATION
from pipeline.core.errors import InvalidSpec, NotFound
from pipeline.engines.base import Instance
from pipeline.reconcile.thaws import Thaws
from pipeline.spec import parse_service
from tests.unit import test_reconciler
from tests.unit.test_reconciler import InProcessEngine, World

NOW = 10_000.0
HOUR = 3600.0


@pytest.mark.parametrize(
    ("idle", "kwargs", "expected"),
    [
        pytest.param(Idle(active=("a", "b"), ready=frozenset({"b"})), {}, Choice(freeze="b"),
                     id="idle-freezes-a-ready-instance"),
        pytest.param(Idle(active=("a",)), {}, Choice(), id="none-ready-nothing-to-freeze"),
        pytest.param(Idle(active=("a",), ready=frozenset({"a"})), {"retention_s": 0},
                     Choice(), id="retention-zero-turns-freezing-off"),
        pytest.param(Idle(active=("a",), ready=frozenset({"a"})), {"routed": False},
                     Choice(), id="unrouted-revision-is-not-frozen"),
        pytest.param(Idle(active=("a",), ready=frozenset({"a"})), {"low_memory": True},
                     Choice(), id="low-memory-freezes-nothing"),
        pytest.param(Idle(active=("a",), ready=frozenset({"a"}), frozen={"f": NOW - 5}), {},
                     Choice(), id="one-frozen-per-revision"),
        pytest.param(Idle(active=("a",), ready=frozenset({"a"}), freezing=("f",)), {},
                     Choice(), id="one-freezing-per-revision"),
        pytest.param(Idle(frozen={"f": NOW - HOUR}), {"retention_s": HOUR},
                     Choice(stop=("f",)), id="retention-over-stops"),
        pytest.param(Idle(frozen={"f": NOW - HOUR + 1}), {"retention_s": HOUR},
                     Choice(), id="retention-not-over-keeps"),
        pytest.param(Idle(frozen={"f": NOW}), {"low_memory": True},
                     Choice(stop=("f",)), id="low-memory-stops-frozen"),
        pytest.param(Idle(frozen={"f": NOW}), {"routed": False},
                     Choice(stop=("f",)), id="unrouted-stops-frozen"),
        pytest.param(Idle(frozen={"old": NOW - 9, "new": NOW - 1}), {"want": 1},
                     Choice(thaw=("new",)), id="wanted-thaws-the-newest"),
        pytest.param(Idle(active=("a",), frozen={"f": NOW}), {"want": 1},
                     Choice(), id="enough-running-keeps-frozen"),
        pytest.param(Idle(freezing=("f",), frozen={"g": NOW}), {"want": 1},
                     Choice(reclaim=("f",)), id="wanted-reclaims-before-thawing"),
        pytest.param(Idle(freezing=("f",), frozen={"g": NOW}), {"want": 3},
                     Choice(reclaim=("f",), thaw=("g",)), id="reclaims-then-thaws-then-starts"),
        pytest.param(Idle(frozen={"f": NOW}), {"want": 1, "low_memory": True},
                     Choice(stop=("f",)), id="low-memory-starts-rather-than-thaws"),
    ],
)  # fmt: skip
def test_choose(idle: Idle, kwargs: dict[str, Any], expected: Choice) -> None:
    args: dict[str, Any] = {"want": 0, "routed": True, "retention_s": 900.0,
                            "low_memory": False, "now": NOW, **kwargs}  # fmt: skip
    assert choose(idle, **args) == expected


MEMINFO = "MemTotal:       24683520 kB\nMemFree:  100 kB\nMemAvailable:   {} kB\n"


@pytest.mark.parametrize(
    ("meminfo", "low"),
    [
        pytest.param(MEMINFO.format(1024 * 511), True, id="under-512Mi"),
        pytest.param(MEMINFO.format(1024 * 512), False, id="at-512Mi"),
        pytest.param("MemTotal: 1 kB\n", False, id="no-MemAvailable-line"),
        pytest.param("MemAvailable: lots\n", False, id="unreadable"),
    ],
)
def test_memory_low(meminfo: str, low: bool) -> None:
    assert memory_low(meminfo, min_available_bytes=512 * 2**20) is low


def template(value: str | None) -> dict[str, Any]:
    return {"metadata": {"annotations": {FROZEN_RETENTION_ANNOTATION: value}}} if value else {}


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(None, 900.0), ("0", 0.0), ("90s", 90.0), ("1h", 3600.0), ("soon", 0.0), ("48h", 0.0)],
)
def test_retention_defaults_to_15_minutes_and_an_unreadable_value_means_off(
    value: str | None, seconds: float
) -> None:
    assert retention_s(template(value)) == seconds


@pytest.mark.parametrize(
    ("value", "words"),
    [("soon", "not a duration"), ("48h", "between 0s and 24h"), ("-1s", "not a duration")],
)
def test_a_bad_retention_is_refused_with_the_key(value: str, words: str) -> None:
    doc = {
        "apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": {"name": "hello"},
        "spec": {"template": {"metadata": {"annotations": {FROZEN_RETENTION_ANNOTATION: value}},
                              "spec": {"containers": [{"image": "r/x:1"}]}}},
    }  # fmt: skip
    with pytest.raises(InvalidSpec) as caught:
        parse_service(doc)
    assert FROZEN_RETENTION_ANNOTATION in str(caught.value) and words in str(caught.value)


# -- passes -------------------------------------------------------------------------------------
class FreezingEngine(InProcessEngine):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def freeze_instance(self, instance: Instance) -> None:
        self.calls.append(("freeze", instance.id))
        self.instances[instance.id] = replace(self.instances[instance.id], frozen=True)

    def thaw_instance(self, instance: Instance) -> None:
        self.calls.append(("thaw", instance.id))
        current = self.instances.get(instance.id)
        if current is None or not current.running:
            raise NotFound(f"instance {instance.name} is gone")
        self.instances[instance.id] = replace(current, frozen=False)


class Memory:
    available_kb = 8 * 2**20

    def read(self) -> str:
        return MEMINFO.format(self.available_kb)


@pytest.fixture
def host() -> Memory:
    return Memory()


@pytest.fixture
def world(tmp_path: Path, host: Memory, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setattr(test_reconciler, "InProcessEngine", FreezingEngine)  # World makes one
    return World(tmp_path, scale_to_zero=True, zero_grace_s=5, freeze=True, meminfo=host.read)


def idle(world: World, seconds: int) -> None:
    for _ in range(seconds):
        world.now += 1
        world.reconciler.reconcile_once()


BACKEND = "rev-hello-00001"


def test_an_idle_instance_is_frozen_not_stopped_and_leaves_haproxy(world: World) -> None:
    _, inst = world.serving("hello", "img:1")
    idle(world, 70)  # the 60 s window and the 5 s grace without a request
    (frozen,) = world.engine.list_instances()
    assert frozen.id == inst.id and frozen.frozen and world.engine.stopped == []
    assert world.plane.planes[-1].backends[0].servers == ()  # requests go to the activator
    view = world.reconciler.autoscaler_view("hello-00001")
    assert view is not None and view["desired"] == 0


def test_a_request_in_flight_is_never_frozen_under(world: World) -> None:
    _, inst = world.serving("hello", "img:1")
    world.plane.busy_servers.add((BACKEND, f"i-{inst.instance}"))  # a slow request
    idle(world, 68)
    assert not world.engine.list_instances()[0].frozen
    assert ("freeze", inst.id) not in world.engine.calls
    world.plane.busy_servers.clear()  # it finished
    idle(world, 1)
    assert world.engine.list_instances()[0].frozen


def test_the_activator_thaws_at_once_and_the_autoscaler_keeps_it(world: World) -> None:
    _, inst = world.serving("hello", "img:1")
    idle(world, 70)
    assert world.reconciler.instance_for("hello-00001", 0.1) == f"{inst.address}:8080"
    assert world.engine.calls[-1] == ("thaw", inst.id)
    idle(world, 1)  # the request was over before HAProxy's sample: the thaw counts as demand
    (back,) = world.engine.list_instances()
    assert not back.frozen and world.engine.stopped == []
    assert [s.address for s in world.plane.planes[-1].backends[0].servers] == [inst.address]
    idle(world, 30)
    assert not world.engine.list_instances()[0].frozen  # not frozen again under the next one


def test_a_burst_of_thaws_takes_one_instance_once(world: World) -> None:
    _, inst = world.serving("hello", "img:1")
    idle(world, 70)
    addresses = {world.reconciler.instance_for("hello-00001", 0.1) for _ in range(20)}
    assert addresses == {f"{inst.address}:8080"}
    assert world.engine.calls.count(("thaw", inst.id)) == 1


def test_demand_seen_by_a_pass_thaws_too(world: World) -> None:
    _, inst = world.serving("hello", "img:1")
    idle(world, 70)
    world.plane.in_flight[BACKEND] = 1  # the activator holds a request
    idle(world, 1)
    assert ("thaw", inst.id) in world.engine.calls
    assert len(world.engine.list_instances()) == 1  # thawed, not a second one started


def test_killed_while_frozen_a_fresh_instance_serves(world: World) -> None:
    _, inst = world.serving("hello", "img:1")
    idle(world, 70)
    world.engine.exit(inst.id, 137)  # docker kill on the paused container
    assert world.reconciler.instance_for("hello-00001", 0.1) is None  # falls through, no 502
    world.plane.in_flight[BACKEND] = 1  # the held request
    idle(world, 2)
    (fresh,) = world.engine.list_instances()
    assert fresh.id != inst.id and fresh.running and not fresh.frozen


def test_frozen_past_the_retention_period_stops(world: World) -> None:
    world.serving("hello", "img:1", annotations={FROZEN_RETENTION_ANNOTATION: "30s"})
    idle(world, 70)
    assert world.engine.list_instances()[0].frozen
    idle(world, 31)
    assert world.engine.list_instances() == []


def test_low_memory_stops_frozen_instances(world: World, host: Memory) -> None:
    world.serving("hello", "img:1")
    idle(world, 70)
    assert world.engine.list_instances()[0].frozen
    host.available_kb = 100 * 1024
    idle(world, 1)
    assert world.engine.list_instances() == []


def test_freezing_off_by_annotation_stops_as_before(world: World) -> None:
    world.serving("hello", "img:1", annotations={FROZEN_RETENTION_ANNOTATION: "0"})
    idle(world, 70)
    assert world.engine.list_instances() == []
    assert not any(op == "freeze" for op, _ in world.engine.calls)


def test_a_thaw_racing_a_stop_wins() -> None:
    engine = FreezingEngine()
    inst = Instance(id="c1", name="x", service="s", revision="r", instance="i",
                    address="10.0.0.1", running=True, frozen=True)  # fmt: skip
    engine.instances[inst.id] = inst
    thaws = Thaws(engine=engine)
    seen = thaws.observing()
    thaws.publish({"r": ((inst, "10.0.0.1:8080"),)}, seen=seen)
    before = thaws.observing()  # a pass lists the instance frozen, then decides to stop it
    assert thaws.thaw("r") == "10.0.0.1:8080"
    assert thaws.release(inst) is False  # the claim holds: that pass must not stop it
    thaws.publish({}, seen=before)
    assert thaws.release(inst) is False  # that pass began before the thaw ended
    thaws.publish({}, seen=thaws.observing())
    assert thaws.release(inst) is True
    assert thaws.demand() == {"r"} and thaws.demand() == frozenset()


def test_an_instance_frozen_this_pass_is_thawed_without_waiting_for_the_next(
    world: World,
) -> None:
    _, inst = world.serving("hello", "img:1")
    while not world.engine.list_instances()[0].frozen:
        idle(world, 1)
    assert world.reconciler.instance_for("hello-00001", 0.1) == f"{inst.address}:8080"
    assert world.engine.calls[-1] == ("thaw", inst.id)
