"""`Rollout`: a deploy reports ready only once its route is in the data plane, and a host another
service answers on is refused before anything is written. Real SQLite store; the reconciler is
a stand-in that turns a revision Ready when woken and says how its passes went."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.core import traffic
from pipeline.core.errors import InvalidName, RevisionFailed
from pipeline.core.settings import Settings
from pipeline.deploy import rollout
from pipeline.deploy.edits import Edits
from pipeline.deploy.manifests import Placement
from pipeline.deploy.rollout import ROUTE_NOT_APPLIED, Rollout
from pipeline.deploy.urls import ServiceUrls
from pipeline.deploy.waits import InstanceWatch
from pipeline.reconcile.rejections import REASON
from pipeline.store import db
from pipeline.store.state import Store

IMAGE = "127.0.0.1:5000/web@sha256:" + "1" * 64
REJECTED = "host 't--web.localhost' is not served: service 't--web' answers on it too"


class Passes:
    """Marks Pending revisions Ready on every wake; `applies` is what wait_for_pass answers and
    `rejects` a route condition its pass notes on them."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.applies = True
        self.rejects = ""
        self.passes = 0

    def wake(self) -> None:
        for rev in self.store.snapshot().revisions:
            if rev.status == "Pending":
                self.store.mark_revision(rev.name, status="Ready")
                if self.rejects:
                    self.store.note(rev.name, reason=REASON, message=self.rejects)

    def hold(self, revisions: set[str]) -> None:
        pass

    def release(self, revisions: set[str]) -> None:
        pass

    def wait_ready(self, revisions: set[str], *, timeout_s: float) -> set[str]:
        return set()

    def wait_for_pass(self, *, timeout_s: float = 30.0) -> bool:
        self.passes += 1
        self.wake()
        return self.applies

    def refusal(self, service: str, *, timeout_s: float = 30.0) -> str:
        return ""


class NoGarbage:
    def collect(self, service: str) -> None:
        pass


class Route:
    """Knative's Route as the reconciler reads it: the service URL at once, a tag's URL only
    from the `late`-th pass on (the Route publishes it after the revision turned Ready)."""

    def __init__(self, reconciler: Passes, *, late: int) -> None:
        self.reconciler = reconciler
        self.late = late

    def __call__(self, service: str) -> list[str]:
        urls = [f"http://{service}.example.localhost"]
        if self.reconciler.passes >= self.late:
            urls.append(f"http://t--{service}.example.localhost")
        return urls


class Deploys:
    def __init__(self, tmp: Path, *, published_route: bool = False) -> None:
        engine = db.make_engine(f"sqlite:///{tmp / 'db.sqlite'}")
        db.migrate(engine)
        self.store = Store(db.session_factory(engine))
        self.reconciler = Passes(self.store)
        self.route = Route(self.reconciler, late=4)
        settings = Settings(data_dir=tmp, readiness_timeout_s=5)
        self.edits = Edits(store=self.store, reconciler=self.reconciler, settings=settings)
        self.rollout = Rollout(
            store=self.store, reconciler=self.reconciler, settings=settings, secrets=None,
            edits=self.edits, garbage=NoGarbage(),
            urls=ServiceUrls(
                store=self.store, settings=settings,
                published=self.route if published_route else None,
            ),
            watch=InstanceWatch(reader=None),
        )  # fmt: skip
        self.events: list[dict[str, Any]] = []

    def deploy(self, service: str, *, tags: tuple[str, ...] = ()) -> str:
        outcome = self.rollout.roll_out(
            service, image=IMAGE, env={}, build_id=None, emit=self.events.append,
            placement=Placement(tags=tags),
        )  # fmt: skip
        return outcome.revision.name

    def legacy(self, service: str) -> None:
        """A service stored before its name was refused (no revision needed: its host is)."""
        self.store.put_service(service, spec={"metadata": {"name": service}, "spec": {}})


@pytest.fixture
def deploys(tmp_path: Path) -> Deploys:
    return Deploys(tmp_path)


def readies(deploys: Deploys) -> list[dict[str, Any]]:
    return [e for e in deploys.events if e.get("event") == "ready"]


def test_a_deploy_is_ready_once_a_pass_applied_its_route(deploys: Deploys) -> None:
    assert deploys.deploy("web") == "web-00001"
    assert [e["revision"] for e in readies(deploys)] == ["web-00001"]


def test_a_deploy_whose_route_did_not_apply_fails_saying_so(deploys: Deploys) -> None:
    deploys.reconciler.applies = False  # HAProxy refuses the config, the engine is down, ...

    with pytest.raises(RevisionFailed, match="did not apply its route within 30s") as failed:
        deploys.deploy("web")

    assert failed.value.reason == ROUTE_NOT_APPLIED
    assert readies(deploys) == []


def test_a_deploy_whose_route_was_left_out_fails_with_the_reason(deploys: Deploys) -> None:
    deploys.reconciler.rejects = REJECTED

    with pytest.raises(RevisionFailed) as failed:
        deploys.deploy("web")

    assert failed.value.reason == REASON
    assert failed.value.message == (
        f"revision web-00001 is ready, but its route was not applied: {REJECTED}"
    )
    assert readies(deploys) == []


def test_a_tag_whose_host_is_another_service_is_refused_before_any_write(
    deploys: Deploys,
) -> None:
    deploys.legacy("t--web")

    with pytest.raises(InvalidName, match=r"tag 't' of service 'web'.*service 't--web'"):
        deploys.deploy("web", tags=("t",))

    assert deploys.store.find_service("web") is None
    assert deploys.store.list_revisions("web") == []


def test_a_traffic_tag_whose_host_is_another_service_is_refused(deploys: Deploys) -> None:
    deploys.deploy("web")
    deploys.legacy("t--web")
    before = deploys.store.get_service("web").spec

    with pytest.raises(InvalidName, match=r"tag 't' of service 'web'.*service 't--web'"):
        deploys.edits.set_traffic("web", traffic.Change(set_tags={"t": "web-00001"}))
    with pytest.raises(InvalidName, match="service 't--web'"):
        deploys.edits.retag("web", revision="web-00001", tags=("t",), promote=False)

    assert deploys.store.get_service("web").spec == before


def test_a_tagged_deploy_on_knative_prints_the_tag_url_the_route_publishes_late(
    tmp_path: Path,
) -> None:
    deploys = Deploys(tmp_path, published_route=True)

    deploys.deploy("web", tags=("t",))

    # The pass that applied the route is not the one that published the tag's URL: the deploy
    # waited for it rather than print "no URL of its own" (the CI failure of stop 24).
    assert deploys.reconciler.passes >= deploys.route.late
    [ready] = readies(deploys)
    assert ready["urls"] == ["http://web.example.localhost", "http://t--web.example.localhost"], (
        ready
    )
    assert ready["percent"] == 100


def test_a_url_never_published_ends_the_wait_with_the_urls_there_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rollout, "PUBLISH_TIMEOUT_S", 0.2)
    deploys = Deploys(tmp_path, published_route=True)
    deploys.route.late = 10**9

    deploys.deploy("web", tags=("t",))

    [ready] = readies(deploys)
    assert ready["urls"] == ["http://web.example.localhost"], ready
