"""Who a metadata-server caller is, now that instances run in network sandboxes
(pipeline.engines.sandboxes): the source address is the sandbox's, so a token must be minted
only for the instance running in it. Attacks on that mapping, against the real dockerd:
- a spare sandbox (no instance yet) is nobody: nothing may be minted for its address;
- an instance whose sandbox was removed has no address and is nobody, even though its container
  still runs (and the address may already be another container's);
- the caller lookup (an engine with no pool of its own, as the metadata server's) names the
  instance running in the sandbox, with its own labels;
- the lookup's index (identity.dockercallers) never names an address's previous owner: an
  instance removed and another started on its address before anything told the index is the
  new one's."""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from collections.abc import Iterator

import docker
import docker.errors
import docker.types
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


@pytest.fixture
def fixed_network(docker_client: docker.DockerClient, platform: str) -> Iterator[str]:
    """A bridge network with a subnet of its own: only there does dockerd let a test choose a
    container's address."""
    for _ in range(20):
        subnet = f"10.{random.randint(200, 254)}.{random.randint(0, 255)}.0/24"
        pool = docker.types.IPAMPool(subnet=subnet)
        try:
            made = docker_client.networks.create(
                f"{platform}-net",
                driver="bridge",
                ipam=docker.types.IPAMConfig(pool_configs=[pool]),
            )
            break
        except docker.errors.APIError as e:
            if "overlap" not in str(e):
                raise
    else:
        pytest.fail("no free /24 in 10.200-254.x.x for the test network")
    yield subnet.removesuffix("0/24")
    made.remove()


def _start_at(
    docker_client: docker.DockerClient, image: str, *, platform: str, network: str, ip: str,
    service: str,
) -> str:  # fmt: skip
    """A container with an instance's labels at a chosen address, as the engine would label it."""
    api = docker_client.api
    labels = {names.LABEL_MANAGED: "true", names.LABEL_PLATFORM: platform,
              names.LABEL_SERVICE: service, names.LABEL_REVISION: f"{service}-00001",
              names.LABEL_INSTANCE: f"{service}-i"}  # fmt: skip
    endpoint = api.create_endpoint_config(ipv4_address=ip)
    made = api.create_container(
        image, command=["sleep", "600"], labels=labels,
        networking_config=api.create_networking_config({network: endpoint}),
        host_config=api.create_host_config(network_mode=network),
    )  # fmt: skip
    api.start(made["Id"])
    return str(made["Id"])


def test_an_address_reused_by_another_instance_is_never_its_previous_owners(
    docker_client: docker.DockerClient, busybox_image: str, platform: str, fixed_network: str
) -> None:
    network, ip = f"{platform}-net", f"{fixed_network}10"
    lookup = docker_lookup(network=network, platform=platform)
    first = _start_at(docker_client, busybox_image, platform=platform, network=network, ip=ip,
                      service="first")  # fmt: skip
    try:
        assert lookup(ip) == Caller(service="first", revision="first-00001", instance="first-i")
        assert lookup(ip) == Caller(service="first", revision="first-00001", instance="first-i")
        assert lookup.full_listings == 1, "a known address was not answered from the index"

        docker_client.api.remove_container(first, force=True)
        second = _start_at(docker_client, busybox_image, platform=platform, network=network,
                           ip=ip, service="second")  # fmt: skip
        try:
            second_caller = Caller(service="second", revision="second-00001", instance="second-i")
            assert lookup(ip) == second_caller, "a token would name the previous owner"
            assert lookup.full_listings == 2
        finally:
            docker_client.api.remove_container(second, force=True)
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.api.remove_container(first, force=True)
