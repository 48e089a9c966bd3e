"""The control-plane image the Helm chart runs, built by scripts/image (wheels made on this
machine, the top-level Dockerfile, the real Docker Engine) and run: the CLI answers, the build
templates come from the installed package, and it runs as the chart's uid 10001.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import docker
import httpx
import jwt as pyjwt
import pytest

from pipeline import __version__
from pipeline.identity import keys
from tests.integration.conftest import ROOT, free_port
from tests.unit import helm, kubestandin
from tests.unit.installprobe import PROBE
from tests.unit.test_chart import REQUIRED
from tests.unit.test_metadata_kubernetes import PODS, knative_pod, kubeconfig_for

pytestmark = pytest.mark.integration

IMAGE = f"slipway/slipway:{__version__}"
UID = 10001
SITE = "/opt/slipway/lib/python3.11/site-packages"


@pytest.fixture(scope="module")
def image(python_image: str, docker_client: docker.DockerClient) -> str:
    # The venv running these tests builds the wheels (scripts/image would default to
    # <checkout>/.venv, which a worktree does not have).
    env = {**os.environ, "SLIPWAY_VENV": sys.prefix}
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "image")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, f"scripts/image failed:\n{result.stdout}\n{result.stderr}"
    print(f"\nscripts/image: {time.monotonic() - started:.1f}s\n{result.stdout}")
    return IMAGE


def run(client: docker.DockerClient, image: str, command: list[str], **kwargs: str) -> str:
    output: bytes = client.containers.run(image, command, remove=True, **kwargs)
    return output.decode()


def test_the_cli_answers(docker_client: docker.DockerClient, image: str) -> None:
    assert run(docker_client, image, ["version"]).strip() == f"slipway {__version__}"


def test_templates_come_from_the_installed_package(
    docker_client: docker.DockerClient, image: str
) -> None:
    probe = json.loads(run(docker_client, image, ["-c", PROBE], entrypoint="python"))
    installed = f"{SITE}/pipeline/_buildtemplates"
    assert probe["pipeline"] == f"{SITE}/pipeline/__init__.py"
    assert probe["root"] == probe["settings"] == installed
    assert probe["jobs"] == f"{installed}/kubernetes"
    assert probe["job"] == "Job"
    assert sorted(probe["templates"]) == ["node", "procfile", "python", "static"]
    assert (
        probe["templates"]["python"] == (ROOT / "buildtemplates/python/Dockerfile.j2").read_text()
    )


def test_it_runs_as_the_charts_user(docker_client: docker.DockerClient, image: str) -> None:
    config = docker_client.images.get(image).attrs["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["slipway"]
    assert config["Cmd"] == ["server"]
    assert set(config["ExposedPorts"]) == {"8080/tcp", "8081/tcp"}
    assert run(docker_client, image, ["-c", "id -u; id -g"], entrypoint="sh").split() == [
        str(UID),
        str(UID),
    ]
    # The data dir the chart mounts its volume on is writable without one too.
    assert (
        run(
            docker_client, image, ["-c", "touch /var/lib/slipway/x && echo ok"], entrypoint="sh"
        ).strip()
        == "ok"
    )


def test_the_charts_metadata_container_mints_for_a_pod(
    docker_client: docker.DockerClient, image: str, tmp_path: Path
) -> None:
    """The Helm chart's second container, as the chart renders it, run from this image: it asks
    the API server (the STAND-IN of tests/unit/kubestandin.py, no cluster runs here) for the pod
    with the caller's IP and mints that service's token. Host networking stands in for the pod
    network: this test's requests come from 127.0.0.1, the pod IP the stand-in lists."""
    objects = helm.template(REQUIRED, {"targetNamespace": "apps", "platformId": "prod"})
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][1]
    port = free_port()
    args = [f"--port={port}" if a.startswith("--port=") else a for a in container["args"]]
    keys_dir = tmp_path / "keys"
    store = keys.KeyStore(keys_dir)
    store.ensure()
    for path in (keys_dir, *keys_dir.iterdir()):  # the control plane's files, as the chart's uid
        os.chown(path, UID, UID)
    for state, api in kubestandin.serve():
        state.put(PODS, knative_pod("hello-pod", ip="127.0.0.1"))
        (tmp_path / "kubeconfig").write_text(kubeconfig_for(api.configuration.host))
        started = docker_client.containers.run(
            image,
            [*args, "--kubeconfig=/kube/config"],
            detach=True,
            network_mode="host",
            volumes={
                str(keys_dir): {"bind": "/var/lib/slipway/keys", "mode": "ro"},
                str(tmp_path / "kubeconfig"): {"bind": "/kube/config", "mode": "ro"},
            },
        )
        try:
            url = (
                f"http://127.0.0.1:{port}/computeMetadata/v1/instance/service-accounts/default/"
                "identity?audience=https://target.apps.example.com"
            )
            reply = None
            deadline = time.monotonic() + 30
            while reply is None and time.monotonic() < deadline:
                try:
                    reply = httpx.get(url, headers={"Metadata-Flavor": "Google"}, timeout=5)
                except httpx.TransportError:
                    started.reload()
                    assert started.status != "exited", started.logs().decode()
                    time.sleep(0.2)
            assert reply is not None, started.logs().decode()
            assert reply.status_code == 200, reply.text
            claims = pyjwt.decode(
                reply.text,
                key=pyjwt.PyJWKSet.from_dict(keys.jwks(store.live())).keys[0].key,
                algorithms=["RS256"],
                audience="https://target.apps.example.com",
                issuer="https://slipway.example.com",
            )
            assert claims["email"] == "hello@apps.example.com"
            assert state.requests[-1].query["fieldSelector"] == "status.podIP=127.0.0.1"
        finally:
            started.remove(force=True)
