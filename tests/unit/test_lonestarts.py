"""The activator's own parts for a control plane that is down: the desired-state cache (encode,
decode, atomic 0600 writes, written only on change), the decision use/thaw/start, starting alone
with an in-process engine (one start for a burst), and the ask over a real unix socket (the
whole process runs in tests/chaos/test_activator_outlives.py against real Docker and HAProxy)."""

from __future__ import annotations

import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from pipeline.core.annotations import SECRET_VERSIONS_ANNOTATION
from pipeline.core.errors import NotFound
from pipeline.core.records import Revision, Snapshot
from pipeline.core.revisions import Readiness, RevisionConfig
from pipeline.dataplane import desiredcache, wakeups
from pipeline.dataplane.desiredcache import DesiredCache, Wanted
from pipeline.dataplane.lonestarts import LoneStarts, Step, ask_then_alone, decide
from pipeline.engines.base import Instance
from tests.unit.test_reconciler import InProcessEngine

TEMPLATE: dict[str, Any] = {
    "metadata": {"annotations": {SECRET_VERSIONS_ANNOTATION: "db=2"}},
    "spec": {
        "containerConcurrency": 4,
        "containers": [{
            "image": "ignored",
            "ports": [{"containerPort": 9000}],
            "env": [
                {"name": "MODE", "value": "prod"},
                {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}},
            ],
            "command": ["/bin/app"], "args": ["--serve"],
            "resources": {"limits": {"memory": "256Mi", "cpu": "500m"}},
            "readinessProbe": {"httpGet": {"path": "/ready"}, "periodSeconds": 2},
        }],
    },
}  # fmt: skip


def revision(name: str, *, status: str = "Ready", image: str = "reg/app@sha256:aa") -> Revision:
    now = datetime.now(UTC)
    return Revision(
        name=name, service=name.rsplit("-", 1)[0], number=int(name.rsplit("-", 1)[1]),
        image=image, template=TEMPLATE, template_hash=f"h-{name}", status=status, reason="",
        message="", build_id=None, created_at=now, ready_at=now,
    )  # fmt: skip


def snapshot(*revisions: Revision) -> Snapshot:
    return Snapshot(services=(), revisions=revisions)


# -- the cache ------------------------------------------------------------------------------------
def test_the_cache_holds_ready_revisions_as_the_engine_is_asked_to_start_them() -> None:
    wanted = desiredcache.wanted_of(
        snapshot(revision("web-00002"), revision("web-00001", status="Failed"),
                 revision("api-00001", status="Pending"))
    )  # fmt: skip
    assert [w.revision for w in wanted] == ["web-00002"]
    config = wanted[0].config
    assert (config.image, config.port) == ("reg/app@sha256:aa", 9000)
    assert config.container_concurrency == 4
    assert config.secret_env == (("PASSWORD", "db", "pw", 2),)  # a reference, never the value
    assert config.readiness.kind == "http" and config.readiness.path == "/ready"


def test_a_config_survives_encode_and_decode_unchanged() -> None:
    wanted = desiredcache.wanted_of(snapshot(revision("web-00001"), revision("api-00003")))
    decoded = desiredcache.decode(desiredcache.encode(wanted))
    assert decoded == {w.revision: w for w in wanted}
    assert desiredcache.encode(tuple(decoded.values())) == desiredcache.encode(wanted)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b'{"format": 99, "revisions": []}', id="other-format"),
        pytest.param(b'{"format": 1, "revisions": [{"service": "x"}]}', id="entry-missing-keys"),
        pytest.param(b"[1, 2]", id="not-an-object"),
    ],
)
def test_a_file_that_is_not_a_cache_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        desiredcache.decode(data)


def test_read_gives_nothing_rather_than_something_wrong(tmp_path: Path) -> None:
    assert desiredcache.read(tmp_path / "absent.json") == {}
    (tmp_path / "bad.json").write_bytes(b'{"format": 99}')
    assert desiredcache.read(tmp_path / "bad.json") == {}


def test_the_cache_is_written_0600_and_only_when_a_revision_changed(tmp_path: Path) -> None:
    cache = DesiredCache(tmp_path / "run" / "desired.json")
    first = snapshot(revision("web-00001"))
    assert cache.update(first) is True
    assert stat.S_IMODE(cache.path.stat().st_mode) == 0o600
    assert set(desiredcache.read(cache.path)) == {"web-00001"}
    mtime = cache.path.stat().st_mtime_ns
    assert cache.update(snapshot(revision("web-00001"))) is False  # same specs: no write
    assert cache.path.stat().st_mtime_ns == mtime
    assert cache.update(snapshot(revision("web-00001"), revision("web-00002"))) is True
    assert set(desiredcache.read(cache.path)) == {"web-00001", "web-00002"}
    assert [p.name for p in cache.path.parent.iterdir()] == ["desired.json"]  # no tmp left


# -- the decision ---------------------------------------------------------------------------------
def inst(ident: str, *, rev: str = "web-00001", running: bool = True, frozen: bool = False,
         address: str = "10.0.0.9") -> Instance:  # fmt: skip
    return Instance(id=ident, name=f"{rev}-{ident}", service="web", revision=rev, instance=ident,
                    address=address if running else "", running=running, frozen=frozen)  # fmt: skip


@pytest.mark.parametrize(
    ("instances", "step"),
    [
        pytest.param([], Step(kind="start"), id="none-start"),
        pytest.param([inst("a", rev="web-00002")], Step(kind="start"), id="other-revision-start"),
        pytest.param([inst("a", running=False)], Step(kind="start"), id="exited-start"),
        pytest.param([inst("a", frozen=True)], Step(kind="thaw", instance=inst("a", frozen=True)),
                     id="frozen-thaw"),
        pytest.param([inst("a", frozen=True), inst("b")], Step(kind="use", instance=inst("b")),
                     id="running-before-frozen"),
        pytest.param([inst("a", address="")], Step(kind="start"), id="no-address-start"),
    ],
)  # fmt: skip
def test_decide(instances: list[Instance], step: Step) -> None:
    assert decide(instances, "web-00001") == step


# -- acting alone ---------------------------------------------------------------------------------
class SlowEngine(InProcessEngine):
    """Starts take a moment (so a burst overlaps them); thaws as the Docker engine's."""

    def __init__(self) -> None:
        super().__init__()
        self.configs: list[RevisionConfig] = []
        self.thawed: list[str] = []

    def start_instance(
        self, *, service: str, revision: str, instance: str, config: RevisionConfig
    ) -> Instance:
        time.sleep(0.2)
        self.configs.append(config)
        return super().start_instance(service=service, revision=revision, instance=instance,
                                      config=config)  # fmt: skip

    def thaw_instance(self, instance: Instance) -> None:
        if instance.id not in self.instances:
            raise NotFound(f"instance {instance.name} is gone")
        self.thawed.append(instance.id)
        self.instances[instance.id] = replace(self.instances[instance.id], frozen=False)


def lone(engine: InProcessEngine, *, listening: set[str]) -> LoneStarts:
    wanted = {w.revision: w for w in desiredcache.wanted_of(snapshot(revision("web-00001")))}

    def resolve(config: RevisionConfig) -> RevisionConfig:
        return replace(config, env=(*config.env, ("PASSWORD", "s3cret")))

    def probe(address: str, port: int, readiness: Readiness) -> bool:
        return address in listening and port == 9000 and readiness.path == "/ready"

    return LoneStarts(engine=lambda: engine, desired=lambda: wanted, resolve=resolve, probe=probe)


def test_a_burst_alone_starts_one_instance_with_its_secrets_resolved() -> None:
    engine = SlowEngine()
    starts = lone(engine, listening={"10.0.0.1"})
    found: list[str | None] = []
    threads = [threading.Thread(target=lambda: found.append(starts.instance_for("web-00001", 5)))
               for _ in range(8)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert found == ["10.0.0.1:9000"] * 8
    assert len(engine.instances) == 1
    assert ("PASSWORD", "s3cret") in engine.configs[0].env


def test_alone_a_frozen_instance_is_thawed_not_started() -> None:
    engine = SlowEngine()
    engine.instances["c9"] = inst("c9", frozen=True)
    assert lone(engine, listening=set()).instance_for("web-00001", 1) == "10.0.0.9:9000"
    assert engine.thawed == ["c9"] and engine.configs == []


def test_alone_an_instance_that_never_gets_ready_is_no_answer() -> None:
    engine = SlowEngine()
    began = time.monotonic()
    assert lone(engine, listening=set()).instance_for("web-00001", 0.5) is None
    assert time.monotonic() - began < 3


def test_alone_an_unknown_revision_starts_nothing() -> None:
    engine = SlowEngine()
    assert lone(engine, listening=set()).instance_for("other-00001", 1) is None
    assert engine.instances == {}


def test_alone_only_when_the_control_plane_is_down() -> None:
    calls: list[str] = []

    def alone(revision: str, timeout_s: float) -> str | None:
        calls.append(f"alone {timeout_s:.0f}")
        return "10.0.0.2:8080"

    def up(revision: str, timeout_s: float) -> str | None:
        return None  # it answered: no instance in time; acting alone would double-start

    def down(revision: str, timeout_s: float) -> str | None:
        raise wakeups.ControlPlaneDown("ConnectError")

    assert ask_then_alone(ask=up, alone=alone, down=wakeups.ControlPlaneDown)("r", 30) is None
    assert calls == []
    wait = ask_then_alone(ask=down, alone=alone, down=wakeups.ControlPlaneDown)
    assert wait("r", 30) == "10.0.0.2:8080" and calls == ["alone 30"]


# -- the ask, over a real unix socket -------------------------------------------------------------
@pytest.fixture
def control_plane(tmp_path: Path) -> Iterator[tuple[Path, list[tuple[str, float]]]]:
    asked: list[tuple[str, float]] = []

    def instance_for(revision: str, timeout_s: float) -> str | None:
        asked.append((revision, timeout_s))
        return "10.0.0.5:8080" if revision == "web-00001" else None

    path = wakeups.socket_path(tmp_path)
    sock = wakeups.bind(path)
    server = uvicorn.Server(uvicorn.Config(
        wakeups.create_app(wake=lambda: None, instance_for=instance_for), log_level="warning"
    ))  # fmt: skip
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield path, asked
    server.should_exit = True
    thread.join(timeout=5)


def test_the_control_plane_answers_on_a_private_socket(
    control_plane: tuple[Path, list[tuple[str, float]]],
) -> None:
    path, asked = control_plane
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert wakeups.ask(path, "web-00001", 12.5) == "10.0.0.5:8080"
    assert wakeups.ask(path, "api-00001", 1) is None
    assert asked == [("web-00001", 12.5), ("api-00001", 1.0)]


def test_no_control_plane_is_told_apart_from_no_instance(tmp_path: Path) -> None:
    path = wakeups.socket_path(tmp_path)
    with pytest.raises(wakeups.ControlPlaneDown):
        wakeups.ask(path, "web-00001", 1)  # no socket file at all
    wakeups.bind(path).close()  # a stale socket file of a killed control plane: refused
    with pytest.raises(wakeups.ControlPlaneDown):
        wakeups.ask(path, "web-00001", 1)


def test_a_wanted_revision_names_its_service() -> None:
    (wanted,) = desiredcache.wanted_of(snapshot(revision("my-svc-00007")))
    assert wanted == Wanted(service="my-svc", revision="my-svc-00007", config=wanted.config)
