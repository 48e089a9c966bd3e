"""Network sandboxes (pipeline.engines.sandboxes) against the real dockerd: an instance starts into
a spare made ahead of time and answers on the sandbox's address; the pool refills; a stop removes
the sandbox with its instance; a sandbox no instance names is swept; an instance whose sandbox is
removed is reported exited; a spare removed by hand fails one start and the next goes into
another, and a spare killed by hand is replaced before a start takes it; a new engine takes over
the spares it finds; an engine without a pool (the metadata server's caller lookup) reads the
same addresses; a pool that cannot make sandboxes leaves starts as they were."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import docker.errors
import httpx
import pytest

from pipeline.core import names
from pipeline.core.errors import SlipwayError
from pipeline.core.revisions import RevisionConfig
from pipeline.engines import sandboxes
from pipeline.engines.base import Instance
from pipeline.engines.docker import DockerEngine

pytestmark = pytest.mark.integration

HTTPD = ("sh", "-c", "echo sandboxed > /tmp/index.html && exec httpd -f -p 8080 -h /tmp")


@pytest.fixture
def platform(docker_client: docker.DockerClient) -> Iterator[str]:
    name = f"sandbox-{uuid.uuid4().hex[:8]}"
    yield name
    for c in docker_client.containers.list(
        all=True, filters={"label": [f"{names.LABEL_PLATFORM}={name}"]}
    ):
        with contextlib.suppress(docker.errors.NotFound):
            c.remove(force=True)


@pytest.fixture
def engines(docker_client: docker.DockerClient, platform: str) -> Iterator[list[DockerEngine]]:
    """Engines made by a test; their pools are closed first, so no refill outlives the test."""
    made: list[DockerEngine] = []
    yield made
    for engine in made:
        if engine.sandboxes is not None:
            engine.sandboxes.close()


def _engine(
    client: docker.DockerClient, platform: str, engines: list[DockerEngine]
) -> DockerEngine:
    engine = DockerEngine(client, platform=platform, network="bridge")
    engines.append(engine)
    engine.keep_sandboxes(1)
    return engine


def _sandboxes(client: docker.DockerClient, platform: str) -> dict[str, str]:
    """This platform's sandboxes: id -> status."""
    listed = client.api.containers(all=True, filters={"label": [
        f"{names.LABEL_PLATFORM}={platform}", f"{sandboxes.LABEL_ROLE}={sandboxes.ROLE_SANDBOX}",
    ]})  # fmt: skip
    return {str(c["Id"]): str(c["State"]) for c in listed}


def _spares(engine: DockerEngine) -> set[str]:
    """The pool's spares once it has made the first (dockerd has it before the pool does)."""
    assert engine.sandboxes is not None
    pool = engine.sandboxes
    _until(lambda: len(pool.spares()) == 1, "the first spare")
    return {s.id for s in pool.spares()}


def _until(check: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _start(engine: DockerEngine, image: str, instance: str = "i-1") -> Instance:
    config = RevisionConfig(image=image, command=HTTPD)
    return engine.start_instance(
        service="svc", revision="svc-00001", instance=instance, config=config
    )


def _answers(address: str) -> str:
    deadline = time.monotonic() + 15
    while True:
        try:
            return httpx.get(f"http://{address}:8080/", timeout=1).text
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _sandbox_of(client: docker.DockerClient, instance: Instance) -> str:
    return str(
        client.api.inspect_container(instance.id)["Config"]["Labels"][sandboxes.LABEL_SANDBOX]
    )


def test_an_instance_starts_into_a_spare_and_answers_on_its_address(
    docker_client: docker.DockerClient, busybox_image: str, platform: str,
    engines: list[DockerEngine],
) -> None:  # fmt: skip
    engine = _engine(docker_client, platform, engines)
    (spare,) = _spares(engine)

    instance = _start(engine, busybox_image)

    attrs = docker_client.api.inspect_container(instance.id)
    assert attrs["HostConfig"]["NetworkMode"] == f"container:{spare}"
    assert _sandbox_of(docker_client, instance) == spare
    sandbox = docker_client.api.inspect_container(spare)
    assert instance.address == sandbox["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
    assert _answers(instance.address) == "sandboxed\n"
    # The sandbox is no instance, and the instance is listed with the sandbox's address, by this
    # engine and by one with no pool (the metadata server's caller lookup).
    for reader in (engine, DockerEngine(docker_client, platform=platform, network="bridge")):
        (listed,) = reader.list_instances()
        assert (listed.id, listed.address) == (instance.id, instance.address)
    # The pool refills: one spare besides the one taken.
    _until(lambda: len(_sandboxes(docker_client, platform)) == 2, "the spare to be replaced")


def test_a_stop_removes_the_sandbox_with_its_instance(
    docker_client: docker.DockerClient, busybox_image: str, platform: str,
    engines: list[DockerEngine],
) -> None:  # fmt: skip
    engine = _engine(docker_client, platform, engines)
    instance = _start(engine, busybox_image)
    sandbox = _sandbox_of(docker_client, instance)
    engine.stop_instance(instance, grace_s=1)
    assert sandbox not in _sandboxes(docker_client, platform)
    with pytest.raises(docker.errors.NotFound):
        docker_client.api.inspect_container(instance.id)
    assert engine.sandboxes is not None
    engine.sandboxes.close()
    assert _sandboxes(docker_client, platform) == {}, "close() left a spare behind"


def test_a_sandbox_no_instance_names_is_swept_once_old(
    docker_client: docker.DockerClient, busybox_image: str, platform: str,
    engines: list[DockerEngine], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    engine = _engine(docker_client, platform, engines)
    instance = _start(engine, busybox_image)
    sandbox = _sandbox_of(docker_client, instance)
    docker_client.api.remove_container(instance.id, force=True)  # by hand, around the engine
    assert engine.list_instances() == []
    assert sandbox in _sandboxes(docker_client, platform), "swept while a start could be on its way"
    monkeypatch.setattr(sandboxes, "ORPHAN_AGE_S", 0.0)
    engine.list_instances()
    assert sandbox not in _sandboxes(docker_client, platform)
    assert engine.sandboxes is not None
    assert engine.sandboxes.held() <= set(_sandboxes(docker_client, platform)), "a spare swept"


def test_an_instance_whose_sandbox_is_removed_is_reported_exited_and_stops(
    docker_client: docker.DockerClient, busybox_image: str, platform: str,
    engines: list[DockerEngine],
) -> None:  # fmt: skip
    engine = _engine(docker_client, platform, engines)
    instance = _start(engine, busybox_image)
    sandbox = _sandbox_of(docker_client, instance)
    docker_client.api.remove_container(sandbox, force=True)  # by hand: the app has no network

    (listed,) = engine.list_instances()
    assert (listed.id, listed.running, listed.address) == (instance.id, False, "")
    assert "network sandbox" in listed.error and sandbox[:12] in listed.error
    engine.stop_instance(listed, grace_s=1)
    assert engine.list_instances() == []


def test_a_spare_removed_by_hand_fails_one_start_and_the_next_uses_another(
    docker_client: docker.DockerClient, busybox_image: str, platform: str,
    engines: list[DockerEngine],
) -> None:  # fmt: skip
    engine = _engine(docker_client, platform, engines)
    (spare,) = _spares(engine)
    docker_client.api.remove_container(spare, force=True)

    with pytest.raises(SlipwayError, match="cannot start"):
        _start(engine, busybox_image)
    instance = _start(engine, busybox_image, instance="i-2")
    assert _sandbox_of(docker_client, instance) != spare
    assert _answers(instance.address) == "sandboxed\n"


def test_a_spare_stopped_by_hand_is_replaced_before_a_start_takes_it(
    docker_client: docker.DockerClient, busybox_image: str, platform: str,
    engines: list[DockerEngine],
) -> None:  # fmt: skip
    engine = _engine(docker_client, platform, engines)
    (spare,) = _spares(engine)
    docker_client.api.kill(spare)
    _until(lambda: _sandboxes(docker_client, platform).get(spare) == "exited", "the kill")

    assert engine.list_instances() == []  # a pass: the exited spare is dropped
    assert spare not in _sandboxes(docker_client, platform)
    instance = _start(engine, busybox_image)
    assert _sandbox_of(docker_client, instance) != spare
    assert _answers(instance.address) == "sandboxed\n"


def test_a_new_engine_takes_over_the_spares_it_finds(
    docker_client: docker.DockerClient, busybox_image: str, platform: str,
    engines: list[DockerEngine],
) -> None:  # fmt: skip
    # The spare a control plane left when it stopped: made as its pool makes them.
    kwargs = sandboxes.sandbox_kwargs(
        image=busybox_image, platform=platform, network="bridge", dns=""
    )
    kwargs["entrypoint"] = ["sleep", "3600"]
    host_config = docker_client.api.create_host_config(**kwargs.pop("host_config"))
    spare = docker_client.api.create_container(**kwargs, host_config=host_config)["Id"]
    docker_client.api.start(spare)

    engine = _engine(docker_client, platform, engines)  # the restarted control plane
    assert _spares(engine) == {spare}
    instance = _start(engine, busybox_image)
    assert _sandbox_of(docker_client, instance) == spare
    assert _answers(instance.address) == "sandboxed\n"


def test_a_pool_that_cannot_make_sandboxes_leaves_starts_as_they_were(
    docker_client: docker.DockerClient, busybox_image: str, platform: str,
    engines: list[DockerEngine],
) -> None:  # fmt: skip
    engine = DockerEngine(docker_client, platform=platform, network="bridge")
    engines.append(engine)
    engine.sandboxes = sandboxes.SandboxPool(
        docker_client, platform=platform, network="bridge", spares=1, dns=lambda: "",
        busybox=Path("/nonexistent/busybox"),
    )  # fmt: skip
    engine.sandboxes.start({})
    instance = _start(engine, busybox_image)
    assert "busybox" in engine.sandboxes.broken, "the pool does not say what is missing"
    attrs = docker_client.api.inspect_container(instance.id)
    assert attrs["HostConfig"]["NetworkMode"] == "bridge"
    assert _answers(instance.address) == "sandboxed\n"
