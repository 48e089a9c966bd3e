"""project.toml apps built by the real `pack` (scripts/tools' build of v0.40.9) with Slipway's own
builder (slipway/builder:bookworm: lifecycle 0.21.0 and buildpacks/), through `slipway deploy`
and `git push` on the real platform: they answer, a code change reuses the dependency layer, a
dependency change reinstalls, a secret is masked, and each way pack fails says how to fix it.

The apps are buildpacks/examples (Flask + gunicorn from PyPI, Express from npm) plus a
project.toml. Each build's time is printed (`pytest -s`); buildpacks/README.md quotes them.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import docker
import pytest

from pipeline.core.settings import DEFAULT_PACK_BUILDER
from tests.integration.conftest import ROOT, Slipway, running_slipway
from tests.integration.packs import ensure_builder, ensure_pack, removing_pack_caches
from tests.integration.test_builders import PROJECT, build_of, log_of, write
from tests.integration.test_git_push import Checkout

pytestmark = pytest.mark.integration

EXAMPLES = ROOT / "buildpacks" / "examples"
BUILD_IMAGE = "slipway/cnb-build:bookworm"


@pytest.fixture(scope="module")
def pack() -> str:
    return ensure_pack()


@pytest.fixture(scope="module", autouse=True)
def builder(docker_client: docker.DockerClient) -> str:
    return ensure_builder(docker_client)


SERVICES = ("py", "node", "cnb", "sec", "nopack")


@pytest.fixture(scope="module", autouse=True)
def pack_leftovers(docker_client: docker.DockerClient, registry: str) -> Iterator[None]:
    """pack's cache volumes and the images of this module's services go afterwards."""
    with removing_pack_caches(docker_client, *SERVICES):
        yield
    for service in SERVICES:
        for image in docker_client.images.list(name=f"{registry}/{service}"):
            for tag in image.tags:
                docker_client.images.remove(tag, force=True)


def app_from(example: str, folder: Path, *, project: str = PROJECT) -> Path:
    shutil.copytree(EXAMPLES / example, folder)
    (folder / "project.toml").write_text(project)
    return folder


def last_log(slipway: Slipway, service: str) -> str:
    return log_of(slipway, build_of(slipway, service)["id"])


def deploy(slipway: Slipway, service: str, app: Path, what: str) -> str:
    """Deploy and print how long it took (the CLI's wall time and the build's own)."""
    started = time.monotonic()
    out = slipway.cli("deploy", service, "--source", str(app), timeout=600).stdout
    wall = time.monotonic() - started
    build = build_of(slipway, service)
    secs = datetime.fromisoformat(str(build["finished"])) - datetime.fromisoformat(
        str(build["started"])
    )
    print(f"\n[pack timing] {service} {what}: build {secs.total_seconds():.1f} s, "
          f"deploy {wall:.1f} s")  # fmt: skip
    return out


def test_builder_carries_lifecycle_0_21_0(pack: str, builder: str) -> None:
    out = subprocess.run([pack, "builder", "inspect", builder], capture_output=True, text=True,
                         timeout=120).stdout  # fmt: skip
    assert re.search(r"Lifecycle:\n\s+Version:\s+0\.21\.0\n", out), out
    assert re.search(r"Run Images:\n\s+slipway/cnb-run:bookworm\n", out), out


def add_six(app: Path) -> None:
    with (app / "requirements.txt").open("a") as fh:
        fh.write("six==1.16.0\n")


def add_ms(app: Path) -> None:
    """package.json and its lockfile change together, as `npm install ms` would."""
    package = json.loads((app / "package.json").read_text())
    package["dependencies"]["ms"] = "2.1.3"
    (app / "package.json").write_text(json.dumps(package, indent=2) + "\n")
    subprocess.run(
        ["docker", "run", "--rm", "-u", f"{os.getuid()}:{os.getgid()}", "-e", "HOME=/tmp",
         "-v", f"{app}:/app", "-w", "/app", BUILD_IMAGE,
         "npm", "install", "--package-lock-only", "--no-audit", "--no-fund"],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class App:
    example: str
    service: str
    code: str  # the file a one-line change edits
    greeting: str  # what it answers, before the change
    layer: str  # the buildpack's dependency layer
    reused: str  # what the buildpack says when it keeps the layer
    add_dependency: Callable[[Path], None]
    reinstalled: str  # what the log says after add_dependency


@pytest.mark.parametrize(
    "app",
    [
        pytest.param(App(example="python-flask", service="py", code="app.py",
                         greeting="Hello from Flask", layer="slipway/python:deps",
                         reused="Dependencies from requirements.txt unchanged: reusing the "
                                "virtualenv", add_dependency=add_six,
                         reinstalled="six-1.16.0"), id="python"),
        pytest.param(App(example="node-express", service="node", code="server.js",
                         greeting="Hello from Express", layer="slipway/node:deps",
                         reused="Dependencies unchanged: reusing node_modules",
                         add_dependency=add_ms, reinstalled="npm ci --omit=dev"), id="node"),
    ],
)  # fmt: skip
def test_a_code_change_reuses_the_dependency_layer_and_a_new_dependency_reinstalls(
    slipway: Slipway, tmp_path: Path, app: App
) -> None:
    folder = app_from(app.example, tmp_path / app.service)
    again = app.greeting.replace("Hello", "Hello again")

    out = deploy(slipway, app.service, folder, "first build")

    assert "Builder: pack (project.toml found (Cloud Native Buildpacks))" in out
    assert f"builder {DEFAULT_PACK_BUILDER} (from Slipway's default, trusted)" in out
    assert f"Adding layer '{app.layer}'" in out
    assert slipway.get(app.service).text.startswith(f"{app.greeting} on ")
    assert build_of(slipway, app.service)["builder"] == "pack"

    code = folder / app.code
    code.write_text(code.read_text().replace(app.greeting, again))
    deploy(slipway, app.service, folder, "one-line code change")

    log = last_log(slipway, app.service)
    assert app.reused in log and f"Reusing layer '{app.layer}'" in log
    assert slipway.get(app.service).text.startswith(f"{again} on ")

    app.add_dependency(folder)
    deploy(slipway, app.service, folder, "dependency change")

    log = last_log(slipway, app.service)
    assert "Dependencies" in log and "changed" in log and app.reinstalled in log
    assert f"Adding layer '{app.layer}'" in log
    assert slipway.get(app.service).text.startswith(f"{again} on ")


def test_git_push_of_a_project_toml_app_deploys(slipway: Slipway, tmp_path: Path) -> None:
    remote = f"http://x:{slipway.token}@localhost:{slipway.ingress_port}/git/cnb.git"
    site = write(tmp_path / "site", {"project.toml": PROJECT, "index.html": "pushed with pack\n"})
    checkout = Checkout(site, remote)
    sha = checkout.commit("v1")

    out = checkout.push("main").stderr

    assert f"remote: -----> Building cnb@{sha[:7]} (no Dockerfile)" in out
    assert "remote: -----> Builder: pack (project.toml found" in out
    assert f"(pack), builder {DEFAULT_PACK_BUILDER} (from Slipway's default, trusted)" in out
    assert "remote:        slipway/static 0.1.0" in out  # pack's detect phase
    assert "remote: -----> cnb-00001 ready" in out
    assert slipway.get("cnb").text == "pushed with pack\n"
    assert slipway.get(f"commit-{sha[:7]}--cnb.localhost").text == "pushed with pack\n"


def test_build_secrets_reach_buildpacks_masked_and_stay_out_of_the_image(
    slipway: Slipway, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    secret = "s3cret-" + secrets.token_hex(8)
    package = {
        "name": "sec",
        "version": "1.0.0",
        "scripts": {"postinstall": 'echo "token is $TOKEN"', "start": "node server.js"},
    }
    app = write(tmp_path / "sec", {
        "project.toml": PROJECT, "package.json": json.dumps(package),
        "server.js": "require('http').createServer((q, r) => r.end('sec\\n'))"
                     ".listen(process.env.PORT)\n",
    })  # fmt: skip

    out = slipway.cli("deploy", "sec", "--source", str(app), "--build-secret", f"TOKEN={secret}",
                      "--build-arg", "GREETING=hi").stdout  # fmt: skip

    assert slipway.get("sec").text == "sec\n"
    assert "token is ****" in out and secret not in out
    build = build_of(slipway, "sec")
    assert secret not in log_of(slipway, build["id"])
    image = docker_client.images.get(str(build["image"]))  # CNB build env is not in the image
    assert secret not in json.dumps(image.attrs) and "TOKEN" not in str(image.attrs["Config"])


def test_without_pack_then_without_a_builder(
    tmp_path_factory: pytest.TempPathFactory,
    docker_client: docker.DockerClient,
    registry: str,
    pack: str,
    tmp_path: Path,
) -> None:
    """SLIPWAY_PACK names a binary that is not there yet; SLIPWAY_PACK_BUILDER="" and a pack
    home with no default builder leave pack with none (it exits 2)."""
    pack_path = tmp_path / "bin" / "pack"
    extra = {"SLIPWAY_PACK": str(pack_path), "SLIPWAY_PACK_BUILDER": "",
             "PACK_HOME": str(tmp_path / "pack-home")}  # fmt: skip
    app = write(tmp_path / "app", {"project.toml": PROJECT, "index.html": "x\n"})
    with running_slipway(tmp_path_factory, docker_client, registry, extra) as sw:
        result = sw.cli("deploy", "nopack", "--source", str(app), check=False)
        assert result.returncode == 1
        assert (f"pack is not installed on the Slipway machine (looked for {pack_path}): build "
                "it with `./scripts/tools pack`") in result.stderr  # fmt: skip

        pack_path.parent.mkdir()
        pack_path.symlink_to(pack)
        result = sw.cli("deploy", "nopack", "--source", str(app), check=False)
        assert result.returncode == 1
        assert "builder - (from pack's default)" in result.stdout
        assert ("pack has no builder configured: set one with the annotation "
                "slipway.dev/pack-builder") in result.stderr  # fmt: skip
