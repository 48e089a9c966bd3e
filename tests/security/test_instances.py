"""Attacks from inside: an instance, or any container on the box, calling around HAProxy.

Each case is performed for real: containers started by dockerd on Slipway's own network (and on
Docker's default bridge), requests sent from inside them, and the answer checked. A control
request from the host shows the target is up, so a refusal is the isolation, not a dead app.
"""

from __future__ import annotations

from pathlib import Path

import docker
import httpx
import pytest
from docker.models.containers import Container

from pipeline.core import names
from tests.integration.conftest import BUSYBOX, Slipway, httpd_app, push_image

pytestmark = pytest.mark.integration


def _instance(slipway: Slipway, client: docker.DockerClient, service: str) -> Container:
    mine = [c for c in slipway.containers(client) if c.labels.get(names.LABEL_SERVICE) == service]
    (instance,) = [c for c in mine if c.status == "running"]
    return instance


def _address(slipway: Slipway, client: docker.DockerClient, service: str) -> str:
    attrs = _instance(slipway, client, service).attrs
    return str(attrs["NetworkSettings"]["Networks"][slipway.network]["IPAddress"])


def _deploy(slipway: Slipway, client: docker.DockerClient, tmp: Path, service: str,
            *flags: str) -> None:  # fmt: skip
    ref = f"{slipway.env['SLIPWAY_REGISTRY']}/{service}/app:1"
    push_image(client, httpd_app(tmp / service, f"{service} says hi\n"), ref)
    slipway.cli("deploy", service, "--image", ref, *flags)


@pytest.fixture(scope="module")
def private_target(slipway: Slipway, docker_client: docker.DockerClient,
                   tmp_path_factory: pytest.TempPathFactory) -> str:  # fmt: skip
    tmp = tmp_path_factory.mktemp("attack")
    _deploy(slipway, docker_client, tmp, "vault", "--no-allow-unauthenticated")
    _deploy(slipway, docker_client, tmp, "intruder")
    address = _address(slipway, docker_client, "vault")
    # Control: from the host the instance answers, and through HAProxy it wants a token.
    assert httpx.get(f"http://{address}:8080/", timeout=5).text == "vault says hi\n"
    assert slipway.get("vault").status_code == 401
    return address


def _wget_from(client: docker.DockerClient, network: str, url: str) -> tuple[int, str]:
    out = client.containers.run(
        BUSYBOX, ["sh", "-c", f"wget -q -T 3 -O- {url}; echo exit=$?"],
        network=network, remove=True,
    )  # fmt: skip
    text = out.decode()
    return int(text.rsplit("exit=", 1)[1]), text


def test_another_instance_cannot_call_a_private_instance_directly(
    slipway: Slipway, docker_client: docker.DockerClient, private_target: str
) -> None:
    intruder = _instance(slipway, docker_client, "intruder")

    code, out = intruder.exec_run(["wget", "-q", "-T", "3", "-O-", f"http://{private_target}:8080/"])

    assert code != 0 and b"vault says hi" not in out


def test_a_foreign_container_on_the_network_cannot_call_an_instance(
    slipway: Slipway, docker_client: docker.DockerClient, private_target: str
) -> None:
    code, out = _wget_from(docker_client, slipway.network, f"http://{private_target}:8080/")

    assert code != 0 and "vault says hi" not in out


def test_instances_run_with_limits_and_without_raw_sockets(
    slipway: Slipway, docker_client: docker.DockerClient, private_target: str
) -> None:
    vault = _instance(slipway, docker_client, "vault")
    host = vault.attrs["HostConfig"]

    assert host["Memory"] == 512 * 1024 * 1024 and host["PidsLimit"] == 1024
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert {"NET_RAW", "MKNOD", "SYS_CHROOT"} <= set(host["CapDrop"])
    # NET_RAW gone: no raw ICMP socket (busybox ping needs one as this user).
    code, out = vault.exec_run(["ping", "-c", "1", "-W", "1", "127.0.0.1"])
    assert code != 0, out


def test_a_decoy_network_name_does_not_stop_a_restart(
    slipway: Slipway, docker_client: docker.DockerClient, private_target: str
) -> None:
    decoy = docker_client.networks.create(f"{slipway.network}-decoy", driver="bridge")
    try:
        slipway.stop()
        slipway.start()  # raises with the control plane's log if it does not come back

        assert slipway.get("intruder").text == "intruder says hi\n"
    finally:
        decoy.remove()


def test_the_internal_listener_answers_the_bridge_and_refuses_other_networks(
    slipway: Slipway, docker_client: docker.DockerClient, private_target: str
) -> None:
    network = docker_client.networks.get(slipway.network)
    gateway = network.attrs["IPAM"]["Config"][0]["Gateway"]
    url = f"http://{gateway}:{slipway.ingress_port}/"
    fetch = f"wget -q -T 3 -O- --header 'Host: intruder.localhost' {url}; echo exit=$?"

    def from_network(name: str) -> str:
        return docker_client.containers.run(
            BUSYBOX, ["sh", "-c", fetch], network=name, remove=True
        ).decode()

    assert "intruder says hi" in from_network(slipway.network)  # control: instances get through
    refused = from_network("bridge")  # Docker's default bridge: another tenant's container
    assert "intruder says hi" not in refused and "exit=0" not in refused, refused
