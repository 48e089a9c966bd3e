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
    return slipway.address(client, _instance(slipway, client, service))


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


def _http_get(address: str, port: int, host: str) -> list[str]:
    """A one-shot HTTP/1.0 GET as a shell command, with busybox nc (busybox-static's wget
    crashes on name lookups in these images, so it proves nothing either way)."""
    request = f"GET / HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n"
    return ["sh", "-c", f"printf '{request}' | nc -w 3 {address} {port}; echo exit=$?"]


def _from_network(client: docker.DockerClient, network: str, command: list[str]) -> str:
    out: bytes = client.containers.run(BUSYBOX, command, network=network, remove=True)
    return out.decode()


def test_another_instance_cannot_call_a_private_instance_directly(
    slipway: Slipway, docker_client: docker.DockerClient, private_target: str
) -> None:
    intruder = _instance(slipway, docker_client, "intruder")
    gateway = _gateway(docker_client, slipway.network)

    _, direct = intruder.exec_run(_http_get(private_target, 8080, "vault.localhost"))
    _, via_gateway = intruder.exec_run(
        _http_get(gateway, slipway.ingress_port, "intruder.localhost")
    )

    assert b"intruder says hi" in via_gateway  # control: this instance can make requests
    assert b"vault says hi" not in direct and b"200 OK" not in direct, direct


def test_a_foreign_container_on_the_network_cannot_call_an_instance(
    slipway: Slipway, docker_client: docker.DockerClient, private_target: str
) -> None:
    out = _from_network(
        docker_client, slipway.network, _http_get(private_target, 8080, "vault.localhost")
    )

    assert "vault says hi" not in out and "200 OK" not in out, out


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
    gateway = _gateway(docker_client, slipway.network)
    fetch = _http_get(gateway, slipway.ingress_port, "intruder.localhost")

    allowed = _from_network(docker_client, slipway.network, fetch)
    refused = _from_network(docker_client, "bridge", fetch)  # another tenant's container

    assert "intruder says hi" in allowed, allowed  # control: the bridge gets through
    assert "intruder says hi" not in refused and "200 OK" not in refused, refused


def _gateway(client: docker.DockerClient, network: str) -> str:
    return str(client.networks.get(network).attrs["IPAM"]["Config"][0]["Gateway"])
