"""The control plane's engine lists containers from a cache kept by dockerd's event stream
(`engines.dockerwatch`), against the real dockerd: what happens to a container outside the
engine (created, paused, killed, removed by hand) reaches the listing through events alone, what
the engine does itself is listed the moment it returns, and with the stream lost the listing is
a full one again."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import docker
import pytest

from pipeline.core import names
from pipeline.engines.base import Instance
from pipeline.engines.docker import DockerEngine
from pipeline.engines.dockerwatch import ContainerCache

pytestmark = pytest.mark.integration


@pytest.fixture
def platform() -> str:
    return f"events-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def engine(docker_client: docker.DockerClient, platform: str) -> Iterator[DockerEngine]:
    engine = DockerEngine(docker_client, platform=platform, network="bridge")
    # No safety listing within the test: what it sees came from events or the engine's marks.
    labels = [f"{names.LABEL_MANAGED}=true", f"{names.LABEL_PLATFORM}={platform}"]
    engine.cache = ContainerCache(docker_client, labels, full_every_s=3600)
    engine.cache.start()
    until(lambda: engine.cache is not None and engine.cache.following, "the stream connected")
    yield engine
    engine.cache.close()
    for c in docker_client.containers.list(
        all=True, filters={"label": f"{names.LABEL_PLATFORM}={platform}"}
    ):
        c.remove(force=True)


def run(client: docker.DockerClient, image: str, platform: str, instance: str) -> Any:
    labels = {
        names.LABEL_MANAGED: "true", names.LABEL_PLATFORM: platform,
        names.LABEL_SERVICE: "svc", names.LABEL_REVISION: "svc-00001",
        names.LABEL_INSTANCE: instance,
    }  # fmt: skip
    return client.containers.run(image, ["sleep", "300"], detach=True, labels=labels)


def until(ok: Callable[[], bool], what: str) -> None:
    """Asks `ok()` every 50 ms until it is true, for up to 10 s."""
    deadline = time.monotonic() + 10
    while not ok():
        assert time.monotonic() < deadline, f"{what}: not within 10 s"
        time.sleep(0.05)


def listed(engine: DockerEngine) -> dict[str, Instance]:
    return {i.instance: i for i in engine.list_instances()}


def listed_until(
    engine: DockerEngine, ok: Callable[[dict[str, Instance]], bool], what: str
) -> dict[str, Instance]:
    seen: dict[str, Instance] = {}

    def check() -> bool:
        nonlocal seen
        seen = listed(engine)
        return ok(seen)

    try:
        until(check, what)
    except AssertionError as e:
        raise AssertionError(f"{e}; listed {seen}") from None
    return seen


def test_changes_made_by_hand_reach_the_listing_through_events(
    engine: DockerEngine, docker_client: docker.DockerClient, busybox_image: str, platform: str
) -> None:
    assert engine.cache is not None
    assert engine.list_instances() == []
    assert engine.cache.full_listings == 1  # the one listing after the stream connected

    c = run(docker_client, busybox_image, platform, "i-1")
    got = listed_until(engine, lambda d: "i-1" in d and d["i-1"].running, "created and started")
    assert got["i-1"].id == c.id and got["i-1"].address

    docker_client.api.pause(c.id)
    listed_until(engine, lambda d: d["i-1"].frozen, "paused by hand")
    docker_client.api.unpause(c.id)
    c.kill()
    got = listed_until(engine, lambda d: not d["i-1"].running, "killed by hand")
    assert got["i-1"].exit_code == 137
    c.remove()
    listed_until(engine, lambda d: "i-1" not in d, "removed by hand")

    assert engine.cache.full_listings == 1  # all of it from events, no listing in full


def test_what_the_engine_does_is_listed_as_soon_as_it_returns(
    engine: DockerEngine, docker_client: docker.DockerClient, busybox_image: str, platform: str
) -> None:
    assert engine.cache is not None
    c = run(docker_client, busybox_image, platform, "i-2")
    listed_until(engine, lambda d: "i-2" in d, "created by hand")
    for _ in range(3):  # each a read right after the call, no waiting on its event
        inst = listed(engine)["i-2"]
        engine.freeze_instance(inst)
        assert listed(engine)["i-2"].frozen
        engine.thaw_instance(inst)
        assert not listed(engine)["i-2"].frozen
    engine.stop_instance(inst, grace_s=1)
    assert "i-2" not in listed(engine)
    assert engine.cache.full_listings == 1
    assert c.id == inst.id


def test_with_the_stream_lost_the_listing_is_full_again(
    engine: DockerEngine, docker_client: docker.DockerClient, busybox_image: str, platform: str
) -> None:
    assert engine.cache is not None
    c = run(docker_client, busybox_image, platform, "i-3")
    listed_until(engine, lambda d: "i-3" in d, "created by hand")
    engine.cache.close()  # as when dockerd goes away: nothing records events any more
    until(lambda: engine.cache is not None and not engine.cache.following, "the stream ended")
    before = engine.cache.full_listings

    docker_client.api.pause(c.id)  # no event will say so
    assert listed(engine)["i-3"].frozen
    assert engine.cache.full_listings == before + 1
