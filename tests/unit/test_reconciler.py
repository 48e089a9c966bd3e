"""Reconciler passes as "state in → actions out", with a real SQLite store and in-process
engine and data plane (the real ones are exercised in tests/integration). The plan of a single
pass, as a table, is in test_planner.py."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pipeline.autoscale.scaler import Load
from pipeline.core.revisions import Readiness, RevisionConfig
from pipeline.dataplane.model import DataPlane
from pipeline.engines.base import Instance
from pipeline.reconcile.loop import Reconciler
from pipeline.store import db
from pipeline.store.state import Store


class InProcessEngine:
    def __init__(self) -> None:
        self.instances: dict[str, Instance] = {}
        self.stopped: list[str] = []
        self.logs: dict[str, str] = {}
        self._n = 0

    def ensure_network(self) -> None:
        pass

    def list_instances(self) -> list[Instance]:
        return list(self.instances.values())

    def start_instance(
        self, *, service: str, revision: str, instance: str, config: RevisionConfig
    ) -> Instance:
        self._n += 1
        inst = Instance(
            id=f"c{self._n}", name=f"{revision}-{instance}", service=service,
            revision=revision, instance=instance, address=f"10.0.0.{self._n}", running=True,
        )  # fmt: skip
        self.instances[inst.id] = inst
        return inst

    def stop_instance(self, instance: Instance, *, grace_s: float) -> None:
        self.stopped.append(instance.id)
        self.instances.pop(instance.id, None)

    def logs_tail(self, instance: Instance, *, lines: int = 20) -> str:
        return self.logs.get(instance.id, "")

    def exit(self, inst_id: str, code: int) -> None:
        self.instances[inst_id] = replace(
            self.instances[inst_id], running=False, address="", exit_code=code
        )


class RecordingDataPlane:
    def __init__(self) -> None:
        self.planes: list[DataPlane] = []
        self.busy_servers: set[tuple[str, str]] = set()
        self.down_servers: set[tuple[str, str]] = set()
        self.in_flight: dict[str, int] = {}
        self.requests: dict[str, int] = {}  # HAProxy's req_tot per backend

    def apply(self, plane: DataPlane) -> str:
        changed = not self.planes or self.planes[-1] != plane
        self.planes.append(plane)
        return "reloaded" if changed else "unchanged"

    def busy(self, backend: str, server: str) -> bool:
        return (backend, server) in self.busy_servers

    def load(self) -> dict[str, Load]:
        return {
            b: Load(in_flight=self.in_flight.get(b, 0), requests=self.requests.get(b, 0))
            for b in {*self.in_flight, *self.requests}
        }

    def down(self) -> dict[str, set[str]]:
        down: dict[str, set[str]] = {}
        for backend, server in self.down_servers:
            down.setdefault(backend, set()).add(server)
        return down


class Inline(Executor):
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        f: Future[Any] = Future()
        f.set_result(fn(*args, **kwargs))
        return f


class World:
    def __init__(self, tmp: Path, **options: Any) -> None:
        engine = db.make_engine(f"sqlite:///{tmp / 'db.sqlite'}")
        db.migrate(engine)
        self.store = Store(db.session_factory(engine))
        self.engine = InProcessEngine()
        self.plane = RecordingDataPlane()
        self.listening: set[str] = set()
        self.now = 1_000_000_000.0
        self.reconciler = Reconciler(
            store=self.store, engine=self.engine, dataplane=self.plane, domain="localhost",
            readiness_timeout_s=10, grace_period_s=5, clock=lambda: self.now,
            probe=self._probe, stopper=Inline(), **options,
        )  # fmt: skip

    def _probe(self, address: str, port: int, readiness: Readiness) -> bool:
        return address in self.listening

    def deploy(
        self,
        svc: str,
        image: str,
        *,
        concurrency: int = 0,
        annotations: dict[str, str] | None = None,
    ) -> str:
        if self.store.find_service(svc) is None:
            self.store.put_service(svc, spec={"spec": {"template": {"spec": {"containers": [{}]}}}})
        tpl: dict[str, Any] = {
            "spec": {"containers": [{"image": image}], "containerConcurrency": concurrency}
        }
        if annotations:
            tpl["metadata"] = {"annotations": annotations}
        return self.store.create_revision(svc, image=image, template=tpl, template_hash=image).name

    def status(self, rev: str) -> tuple[str, str]:
        r = self.store.get_revision(rev)
        return r.status, r.reason

    def started(self, svc: str, image: str, **deploy: Any) -> tuple[str, Instance]:
        """Deploy, at the revision's creation time, and let one pass start its instance."""
        rev = self.deploy(svc, image, **deploy)
        self.now = self.store.get_revision(rev).created_at.timestamp()
        self.reconciler.reconcile_once()
        (inst,) = self.engine.list_instances()
        return rev, inst

    def serving(self, svc: str, image: str, **deploy: Any) -> tuple[str, Instance]:
        """Deploy and reconcile until the revision is Ready with its one instance."""
        rev, inst = self.started(svc, image, **deploy)
        self.listening.add(inst.address)
        self.reconciler.reconcile_once()
        return rev, inst


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_new_revision_gets_an_instance_then_traffic_when_ready(world: World) -> None:
    rev = world.deploy("hello", "img:1")
    world.now = world.store.get_revision(rev).created_at.timestamp()

    world.reconciler.reconcile_once()
    (inst,) = world.engine.list_instances()
    assert world.status(rev) == ("Pending", "")
    assert world.plane.planes[-1].routes == ()  # not ready: no route yet

    world.listening.add(inst.address)
    world.reconciler.reconcile_once()
    assert world.status(rev) == ("Ready", "")
    plane = world.plane.planes[-1]
    assert [r.host for r in plane.routes] == ["hello.localhost"]
    assert [s.address for s in plane.backends[0].servers] == [inst.address]

    # Level-triggered: another pass changes nothing.
    assert world.reconciler.reconcile_once() == "unchanged"
    assert len(world.engine.list_instances()) == 1


def test_instance_exiting_before_ready_fails_the_revision_with_its_logs(world: World) -> None:
    rev, inst = world.started("hello", "img:1")
    world.engine.exit(inst.id, 3)
    world.engine.logs[inst.id] = "panic: no config"

    world.reconciler.reconcile_once()

    r = world.store.get_revision(rev)
    assert (r.status, r.reason) == ("Failed", "ExitCode")
    assert "code 3" in r.message and "panic: no config" in r.message
    world.reconciler.reconcile_once()
    assert world.engine.list_instances() == []  # failed revisions get no new instance


def test_revision_that_never_listens_times_out(world: World) -> None:
    rev, _ = world.started("hello", "img:1")
    world.now += 11

    world.reconciler.reconcile_once()

    assert world.status(rev) == ("Failed", "ReadinessTimeout")
    assert "port 8080" in world.store.get_revision(rev).message


def test_old_revision_drains_until_idle_then_stops(world: World) -> None:
    _, old = world.serving("hello", "img:1")

    second = world.deploy("hello", "img:2")
    world.reconciler.reconcile_once()
    new = next(i for i in world.engine.list_instances() if i.revision == second)
    world.plane.busy_servers.add(("rev-hello-00001", f"i-{old.instance}"))
    world.listening.add(new.address)

    world.reconciler.reconcile_once()  # second becomes ready, route moves, first drains
    plane = world.plane.planes[-1]
    assert plane.routes[0].splits[0].backend == "rev-hello-00002"
    drained = next(b for b in plane.backends if b.name == "rev-hello-00001")
    assert drained.servers[0].draining
    assert old.id in world.engine.instances, "busy: still finishing its requests"

    world.plane.busy_servers.clear()
    world.reconciler.reconcile_once()
    assert world.engine.stopped == [old.id]
    world.reconciler.reconcile_once()
    assert [b.name for b in world.plane.planes[-1].backends] == ["rev-hello-00002"]


def test_drain_is_bounded_by_the_grace_period(world: World) -> None:
    _, old = world.started("hello", "img:1")
    world.store.delete_service("hello")
    world.plane.busy_servers.add(("rev-hello-00001", f"i-{old.instance}"))

    world.reconciler.reconcile_once()
    assert world.engine.stopped == []
    world.now += 6
    world.reconciler.reconcile_once()
    assert world.engine.stopped == [old.id]


def test_ready_revision_instance_that_exits_is_replaced(world: World) -> None:
    rev, inst = world.serving("hello", "img:1")
    world.engine.exit(inst.id, 137)

    world.reconciler.reconcile_once()
    world.now += 1.5  # past the first back-off
    world.reconciler.reconcile_once()

    (replacement,) = world.engine.list_instances()
    assert replacement.id != inst.id and replacement.revision == rev
    assert world.status(rev) == ("Ready", "CrashLoopBackOff")


def test_crash_loop_backs_off_and_is_surfaced(world: World) -> None:
    rev, inst = world.serving("hello", "img:1")

    world.engine.exit(inst.id, 1)
    world.reconciler.reconcile_once()  # crash 1: back off 1 s before replacing
    assert world.engine.list_instances() == []
    r = world.store.get_revision(rev)
    assert (r.status, r.reason) == ("Ready", "CrashLoopBackOff")
    assert "1 in a row" in r.message

    world.now += 1.5
    world.reconciler.reconcile_once()
    (second,) = world.engine.list_instances()
    world.engine.exit(second.id, 1)
    world.reconciler.reconcile_once()  # crash 2: back off 2 s
    world.now += 1.5
    world.reconciler.reconcile_once()
    assert world.engine.list_instances() == [], "still backing off"
    world.now += 1
    world.reconciler.reconcile_once()
    (third,) = world.engine.list_instances()
    assert "2 in a row" in world.store.get_revision(rev).message

    # A minute of health clears the condition.
    world.listening.add(third.address)
    world.reconciler.reconcile_once()
    world.now += 61
    world.reconciler.reconcile_once()
    assert world.store.get_revision(rev).reason == ""


def test_instance_held_down_by_haproxy_is_replaced(world: World) -> None:
    _, inst = world.serving("hello", "img:1")

    world.plane.down_servers.add(("rev-hello-00001", f"i-{inst.instance}"))
    world.reconciler.reconcile_once()
    world.reconciler.reconcile_once()
    assert inst.id in world.engine.instances, "one bad check is not enough"
    world.reconciler.reconcile_once()

    assert inst.id in world.engine.stopped
    # Counted like a crash (issue 18): the replacement starts after the first back-off, 1 s.
    world.now += 1
    world.reconciler.reconcile_once()
    (replacement,) = world.engine.list_instances()
    assert replacement.id != inst.id
    rev = world.store.get_revision("hello-00001")
    assert rev.status == "Ready" and rev.reason == "InstanceUnhealthy", rev
    assert f"instance {inst.instance} was taken out of rotation by HAProxy" in rev.message


def test_autoscaler_adds_instances_under_load_and_removes_them_after(world: World) -> None:
    rev, _ = world.serving("hello", "img:1", concurrency=10)

    world.plane.in_flight["rev-hello-00001"] = 50  # 50 in flight, target 10 x 70% = 7 each
    world.now += 1
    world.reconciler.reconcile_once()
    assert len(world.engine.list_instances()) == 4, "the 6 s panic window still holds a 0"
    for _ in range(6):
        world.now += 1
        world.reconciler.reconcile_once()
    assert len(world.engine.list_instances()) == 8
    assert world.reconciler.autoscaler_view(rev)["panic"] is True

    for inst in world.engine.list_instances():
        world.listening.add(inst.address)
    world.plane.in_flight["rev-hello-00001"] = 0
    for _ in range(200):  # load gone: the panic window ends, then it halves step by step
        world.now += 1
        world.reconciler.reconcile_once()
    assert len(world.engine.list_instances()) == 1, "never below one without an activator"


def test_rps_metric_scales_on_the_request_rate_not_on_in_flight(world: World) -> None:
    """metric rps, target 10 x 70% = 7 rps per instance: 70 rps of quick requests (one or two
    in flight at a time) asks for 10 instances; concurrency would have kept one."""
    rev, _ = world.serving("hello", "img:1", annotations={
        "autoscaling.knative.dev/metric": "rps", "autoscaling.knative.dev/target": "10",
    })  # fmt: skip

    backend = "rev-hello-00001"
    world.plane.requests[backend] = 1000  # HAProxy's counter as found: history, not load
    world.plane.in_flight[backend] = 1
    world.now += 1
    world.reconciler.reconcile_once()
    assert len(world.engine.list_instances()) == 1
    for _ in range(70):
        world.plane.requests[backend] += 70
        world.now += 1
        world.reconciler.reconcile_once()
    assert len(world.engine.list_instances()) == 10
    view = world.reconciler.autoscaler_view(rev)
    assert view is not None and round(view["in_flight_stable"]) in range(60, 71)

    world.plane.requests[backend] = 35  # a reload reset the counter: 35 new, not -...
    world.now += 1
    world.reconciler.reconcile_once()
    assert world.reconciler.autoscaler_view(rev)["in_flight_panic"] > 0


def test_an_idle_revision_goes_to_zero_and_stays_there(tmp_path: Path) -> None:
    world = World(tmp_path, scale_to_zero=True, zero_grace_s=5)
    world.serving("hello", "img:1")
    scaling = world.reconciler

    for _ in range(70):  # the 60 s stable window and the 5 s grace pass without a request
        world.now += 1
        scaling.reconcile_once()
    assert world.engine.list_instances() == []
    for _ in range(30):
        world.now += 1
        scaling.reconcile_once()
    assert world.engine.list_instances() == [], "no instance comes back without a request"

    world.plane.in_flight["rev-hello-00001"] = 1  # the activator holds a request
    world.now += 1
    scaling.reconcile_once()
    assert len(world.engine.list_instances()) == 1
