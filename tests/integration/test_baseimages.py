"""Slipway's base images built for real from the Debian archive and run with the real dockerd.

The debootstrap images take a minute or two together; they are rebuilt once, in one test.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import docker
import httpx
import pytest
from docker.models.containers import Container

from pipeline.build import baseimages
from pipeline.build.basecatalog import BUSYBOX, DEBIAN, PYTHON
from pipeline.build.rootfs import HOST_CA_BUNDLE, LOCAL_CA

pytestmark = pytest.mark.integration


@pytest.fixture
def containers(docker_client: docker.DockerClient) -> Iterator[list[Container]]:
    """Containers a test starts; removed in teardown whatever happened."""
    started: list[Container] = []
    yield started
    for container in started:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


def run(client: docker.DockerClient, image: str, *command: str) -> str:
    output: bytes = client.containers.run(image, list(command), remove=True, stderr=True)
    return output.decode()


def test_busybox_image_builds_and_runs(docker_client: docker.DockerClient) -> None:
    assert baseimages.ensure_base_images(docker_client, references=[BUSYBOX], force=True) == [
        BUSYBOX
    ]
    assert baseimages.ensure_base_images(docker_client, references=[BUSYBOX]) == []

    out = run(
        docker_client,
        BUSYBOX,
        "sh",
        "-c",
        "echo ok && id app && test -s /etc/ssl/certs/ca-certificates.crt && test -k /tmp",
    )
    assert out.splitlines() == ["ok", "uid=10001(app) gid=10001(app) groups=10001(app)"]
    config = docker_client.images.get(BUSYBOX).attrs["Config"]
    assert config["Cmd"] == ["sh"]
    assert "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in config["Env"]
    assert config["Labels"]["dev.slipway.base"] == "busybox-static from Debian bookworm"


def test_busybox_httpd_serves_and_stops_on_sigterm(
    docker_client: docker.DockerClient, containers: list[Container]
) -> None:
    baseimages.ensure_base_images(docker_client, references=[BUSYBOX])
    script = "mkdir www && echo hello from busybox > www/index.html && exec httpd -f -p 8080 -h www"
    container = docker_client.containers.run(
        BUSYBOX, ["sh", "-c", script], detach=True, init=True, user="app", working_dir="/tmp"
    )
    containers.append(container)
    container.reload()
    ip = container.attrs["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]

    response = None
    deadline = time.monotonic() + 15
    while response is None and time.monotonic() < deadline:
        try:
            response = httpx.get(f"http://{ip}:8080/", timeout=2, trust_env=False)
        except httpx.TransportError:
            time.sleep(0.1)
    assert response is not None, container.logs().decode()
    assert response.status_code == 200
    assert response.text == "hello from busybox\n"

    container.stop(timeout=20)
    container.reload()
    # 143 is death by SIGTERM (forwarded by docker-init); 137 would be SIGKILL after the grace.
    assert container.attrs["State"]["ExitCode"] in (0, 143)


def test_debootstrap_images_build_and_trust_the_host_ca(docker_client: docker.DockerClient) -> None:
    built = baseimages.ensure_base_images(docker_client, references=[DEBIAN, PYTHON], force=True)
    assert built == [DEBIAN, PYTHON]
    host_ca = HOST_CA_BUNDLE.read_text()

    assert run(docker_client, DEBIAN, "cat", "/etc/ssl/certs/ca-certificates.crt") == host_ca
    assert run(docker_client, DEBIAN, "cat", LOCAL_CA) == host_ca
    assert run(docker_client, PYTHON, "cat", "/etc/ssl/certs/ca-certificates.crt") == host_ca

    version = run(docker_client, PYTHON, "python3", "-c", "import ssl,sys; print(sys.version)")
    assert version.startswith("3.11.")
    assert run(docker_client, PYTHON, "pip", "--version").startswith("pip ")
    # Through the TLS-intercepting proxy: only works if pip trusts the host's CA bundle.
    out = run(
        docker_client,
        PYTHON,
        "sh",
        "-c",
        "python3 -m pip download --no-deps -d /tmp six && ls /tmp",
    )
    assert "six-" in out

    # Built from, and still pointing at, the updates and security suites: nothing to upgrade.
    apt = run(
        docker_client,
        DEBIAN,
        "sh",
        "-c",
        "apt-get update && apt-get -s upgrade && rm -rf /var/lib/apt/lists/*",
    )
    assert "bookworm-security InRelease" in apt and "bookworm-updates InRelease" in apt, apt
    assert "0 upgraded, 0 newly installed" in apt, apt

    env = docker_client.images.get(PYTHON).attrs["Config"]["Env"]
    assert "PIP_CERT=/etc/ssl/certs/ca-certificates.crt" in env
    assert "PYTHONUNBUFFERED=1" in env
    assert run(
        docker_client, DEBIAN, "ls", "-A", "/var/lib/apt/lists", "/var/cache/apt/archives"
    ) == ("/var/cache/apt/archives:\npartial\n\n/var/lib/apt/lists:\n")
