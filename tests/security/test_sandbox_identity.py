"""Who a metadata-server caller is, now that instances run in network sandboxes
(pipeline.engines.sandboxes): the source address is the sandbox's, so a token must be minted
only for the instance running in it. Attacks on that mapping, against the real dockerd:
- a spare sandbox (no instance yet) is nobody: nothing may be minted for its address;
- an instance whose sandbox was removed has no address and is nobody, even though its container
  still runs (and the address may already be another container's);
- the caller lookup (an engine with no pool of its own, as the metadata server's) names the
  instance running in the sandbox, with its own labels."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator

import docker
import docker.errors
import pytest

from pipeline.core import names
from pipeline.core.revisions import RevisionConfig
from pipeline.engines.docker import DockerEngine
from pipeline.engines.sandboxes import LABEL_SANDBOX
from pipeline.identity.callers import Caller
from pipeline.identity.dockercallers import docker_lookup

pytestmark = pytest.mark.integration


@pytest.fixture
def platform() -> str:
    return f"sbid-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def engine(docker_client: docker.DockerClient, platform: str) -> Iterator[DockerEngine]:
    made = DockerEngine(docker_client, platform=platform, network="bridge")
    made.keep_sandboxes(1)
    yield made
    assert made.sandboxes is not None
    made.sandboxes.close()
    for c in docker_client.containers.list(
        all=True, filters={"label": [f"{names.LABEL_PLATFORM}={platform}"]}
    ):
        with contextlib.suppress(docker.errors.NotFound):
            c.remove(force=True)


def _spare_address(engine: DockerEngine) -> str:
    assert engine.sandboxes is not None
    deadline = time.monotonic() + 30
    while not engine.sandboxes.spares():
        assert time.monotonic() < deadline, "no spare sandbox was made"
        time.sleep(0.05)
    return engine.sandboxes.spares()[0].address


def test_a_spare_sandbox_and_an_orphaned_instance_are_nobody(
    docker_client: docker.DockerClient, busybox_image: str, platform: str, engine: DockerEngine
) -> None:
    lookup = docker_lookup(network="bridge", platform=platform)
    spare = _spare_address(engine)
    assert lookup(spare) is None, "a spare sandbox was taken for a caller"

    config = RevisionConfig(image=busybox_image, command=("sleep", "600"))
    inst = engine.start_instance(service="svc", revision="svc-00001", instance="i-1", config=config)
    assert inst.address == spare, "the instance did not start into the spare"
    assert lookup(inst.address) == Caller(service="svc", revision="svc-00001", instance="i-1")

    sandbox = docker_client.api.inspect_container(inst.id)["Config"]["Labels"][LABEL_SANDBOX]
    docker_client.api.remove_container(sandbox, force=True)
    assert docker_client.api.inspect_container(inst.id)["State"]["Running"], "the app still runs"
    assert lookup(spare) is None, "an instance cut off from its sandbox kept its identity"
