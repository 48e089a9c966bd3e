"""A Ready revision whose instances cannot even be started (a secret it reads was deleted, its
image is gone, the runtime refuses it): the starts back off like a crash loop and the reason is
on the revision, not only in the control plane's log. Reconciler passes with the in-process
engine and data plane of test_reconciler.py; the table of single passes is test_planner.py."""

from __future__ import annotations

from pathlib import Path

from pipeline.core.errors import NotFound
from pipeline.core.revisions import RevisionConfig
from pipeline.reconcile.healing import start_failed
from pipeline.reconcile.inputs import Observed
from pipeline.reconcile.planner import plan
from tests.unit.factories import instance, revision, service, snapshot
from tests.unit.test_planner import NOW, READY, RULES
from tests.unit.test_reconciler import World

MISSING = "secret 'db' does not exist: create it with `slipway secrets set db KEY=VALUE`"


class Secrets:
    """Stands in for `store.secrets.resolve`: fails every start while the secret is gone."""

    def __init__(self) -> None:
        self.gone = False
        self.calls = 0

    def resolve(self, config: RevisionConfig) -> RevisionConfig:
        self.calls += 1
        if self.gone:
            raise NotFound(MISSING)
        return config


def test_failing_starts_back_off_and_the_revision_says_why(tmp_path: Path) -> None:
    secrets = Secrets()
    world = World(tmp_path, resolve=secrets.resolve)
    rev, inst = world.serving("hello", "img:1")
    secrets.gone = True
    world.engine.exit(inst.id, 137)
    before = secrets.calls

    for _ in range(40):  # 8 s of passes every 0.2 s, as the loop runs while an instance is unready
        world.reconciler.reconcile_once()
        world.now += 0.2

    attempts = secrets.calls - before
    assert 2 <= attempts <= 4, f"{attempts} start attempts in 8 s"
    r = world.store.get_revision(rev)
    assert (r.status, r.reason) == ("Ready", "StartBackOff")
    assert "an instance could not start" in r.message and MISSING in r.message
    assert world.engine.list_instances() == []


def test_starts_resume_once_the_cause_is_gone_and_a_healthy_minute_clears_it(
    tmp_path: Path,
) -> None:
    secrets = Secrets()
    world = World(tmp_path, resolve=secrets.resolve)
    rev, inst = world.serving("hello", "img:1")
    secrets.gone = True
    world.engine.exit(inst.id, 137)
    for _ in range(10):
        world.reconciler.reconcile_once()
        world.now += 0.5
    secrets.gone = False

    for _ in range(20):  # the next attempt after the back-off starts an instance
        world.reconciler.reconcile_once()
        world.now += 0.5
        world.listening |= {i.address for i in world.engine.list_instances()}
    assert [i.running for i in world.engine.list_instances()] == [True]
    assert world.status(rev) == ("Ready", "StartBackOff")

    world.now += 61
    world.reconciler.reconcile_once()
    assert world.status(rev) == ("Ready", "")


def test_a_failed_start_is_counted_once_even_if_its_container_was_left_behind() -> None:
    """Docker can leave a container that was created and whose start failed: it is collected,
    not counted again as a crash."""
    left = instance("hello-00001", "a1", running=False)
    observed = Observed(instances=(left,), failed_starts={"hello-00001": "exec: /nope: not found"})

    decided = plan(snapshot([service("hello")], [revision("hello", 1)]), observed, READY,
                   now=NOW, rules=RULES)  # fmt: skip

    assert decided.memory.crashes == {"hello-00001": (1, NOW)}
    assert [(n.reason, n.message) for n in decided.notes] == [
        ("StartBackOff", "an instance could not start (1 in a row): exec: /nope: not found; "
                         "retrying in 1s"),
    ]  # fmt: skip
    assert [s.instance.id for s in decided.stops] == [left.id]
    assert decided.starts == ()  # backing off


def test_a_pending_revision_is_failed_by_its_start_not_backed_off() -> None:
    pending = revision("hello", 1, status="Pending")

    assert start_failed({}, pending, "image gone", now=NOW) == ({}, [], [])
