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
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import docker
import docker.errors
import pytest

from pipeline.core.settings import DEFAULT_PACK_BUILDER
from tests.integration.conftest import ROOT, Slipway, running_slipway
from tests.integration.test_git_push import Checkout

pytestmark = pytest.mark.integration

EXAMPLES = ROOT / "buildpacks" / "examples"
BUILD_IMAGE = "slipway/cnb-build:bookworm"
PROJECT = '[_]\nschema-version = "0.2"\n'


@pytest.fixture(scope="module")
def pack() -> str:
    """scripts/tools' pack (compiled from source on a machine that has none yet)."""
    done = subprocess.run([str(ROOT / "scripts" / "tools"), "--dir", "pack"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, f"scripts/tools could not build pack:\n{done.stderr}"
    return str(Path(done.stdout.strip()) / "pack")


@pytest.fixture(scope="module", autouse=True)
def builder(pack: str, docker_client: docker.DockerClient) -> str:
    """Slipway's builder, made by scripts/builder when this machine has none. Only when missing:
    other tests remake slipway/debian:bookworm, which would remake all three images (minutes);
    ./scripts/test runs scripts/builder itself, so an outdated builder is remade there."""
    try:
        docker_client.images.get(DEFAULT_PACK_BUILDER)
    except docker.errors.ImageNotFound:
        env = {**os.environ, "SLIPWAY_PACK": pack, "SLIPWAY_VENV": sys.prefix}
        subprocess.run([str(ROOT / "scripts" / "builder")], env=env, check=True)
    return DEFAULT_PACK_BUILDER


@pytest.fixture(scope="module", autouse=True)
def pack_leftovers(docker_client: docker.DockerClient, registry: str) -> Iterator[None]:
    """pack's cache volumes and the images of this module's services go afterwards."""
    yield
    port = registry.rsplit(":", 1)[1]
    for volume in docker_client.volumes.list(filters={"name": "pack-cache-"}):
        if f"_{port}_" in volume.name or f"-{port}_" in volume.name:
            volume.remove(force=True)
    for image in docker_client.images.list(name=f"{registry}/*"):
        for tag in image.tags:
            docker_client.images.remove(tag, force=True)


def app_from(example: str, folder: Path, *, project: str = PROJECT) -> Path:
    shutil.copytree(EXAMPLES / example, folder)
    (folder / "project.toml").write_text(project)
    return folder


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def last_build(slipway: Slipway, service: str) -> dict[str, str]:
    builds: list[dict[str, str]] = slipway.api_get(f"/v1/builds?service={service}").json()
    return builds[0]


def build_log(slipway: Slipway, service: str) -> str:
    return slipway.api_get(f"/v1/builds/{last_build(slipway, service)['id']}/log").text


def deploy(slipway: Slipway, service: str, app: Path, what: str) -> str:
    """Deploy and print how long it took (the CLI's wall time and the build's own)."""
    started = time.monotonic()
    out = slipway.cli("deploy", service, "--source", str(app), timeout=600).stdout
    wall = time.monotonic() - started
    build = last_build(slipway, service)
    secs = datetime.fromisoformat(build["finished"]) - datetime.fromisoformat(build["started"])
    print(f"\n[pack timing] {service} {what}: build {secs.total_seconds():.1f} s, "
          f"deploy {wall:.1f} s")  # fmt: skip
    return out


def test_builder_carries_lifecycle_0_21_0(pack: str, builder: str) -> None:
    out = subprocess.run([pack, "builder", "inspect", builder], capture_output=True, text=True,
                         timeout=120).stdout  # fmt: skip
    assert re.search(r"Lifecycle:\n\s+Version:\s+0\.21\.0\n", out), out
    assert re.search(r"Run Images:\n\s+slipway/cnb-run:bookworm\n", out), out


def test_python_app_code_change_reuses_dependencies_and_a_new_one_reinstalls(
    slipway: Slipway, tmp_path: Path
) -> None:
    app = app_from("python-flask", tmp_path / "py")

    out = deploy(slipway, "py", app, "first build")

    assert "Builder: pack (project.toml found (Cloud Native Buildpacks))" in out
    assert f"builder {DEFAULT_PACK_BUILDER} (from Slipway's default, trusted)" in out
    assert "Adding layer 'slipway/python:deps'" in out
    assert slipway.get("py").text.startswith("Hello from Flask on ")
    assert last_build(slipway, "py")["builder"] == "pack"

    main = app / "app.py"
    main.write_text(main.read_text().replace("Hello from Flask", "Hello again from Flask"))
    deploy(slipway, "py", app, "one-line code change")

    log = build_log(slipway, "py")
    assert "Dependencies from requirements.txt unchanged: reusing the virtualenv" in log
    assert "Reusing layer 'slipway/python:deps'" in log
    assert slipway.get("py").text.startswith("Hello again from Flask on ")

    with (app / "requirements.txt").open("a") as fh:
        fh.write("six==1.16.0\n")
    deploy(slipway, "py", app, "dependency change")

    log = build_log(slipway, "py")
    assert "Dependencies from requirements.txt changed" in log and "six-1.16.0" in log
    assert "Adding layer 'slipway/python:deps'" in log
    assert slipway.get("py").text.startswith("Hello again from Flask on ")


def test_node_app_code_change_reuses_dependencies_and_a_new_one_reinstalls(
    slipway: Slipway, tmp_path: Path
) -> None:
    app = app_from("node-express", tmp_path / "node")

    out = deploy(slipway, "node", app, "first build")

    assert "npm ci --omit=dev" in out and "Adding layer 'slipway/node:deps'" in out
    assert slipway.get("node").text.startswith("Hello from Express on ")

    server = app / "server.js"
    server.write_text(server.read_text().replace("Hello from Express", "Hello again from Express"))
    deploy(slipway, "node", app, "one-line code change")

    log = build_log(slipway, "node")
    assert "Dependencies unchanged: reusing node_modules" in log
    assert "Reusing layer 'slipway/node:deps'" in log
    assert slipway.get("node").text.startswith("Hello again from Express on ")

    # A new dependency: package.json and its lockfile change together, as `npm install ms` would.
    package = json.loads((app / "package.json").read_text())
    package["dependencies"]["ms"] = "2.1.3"
    (app / "package.json").write_text(json.dumps(package, indent=2) + "\n")
    subprocess.run(
        ["docker", "run", "--rm", "-u", f"{os.getuid()}:{os.getgid()}", "-e", "HOME=/tmp",
         "-v", f"{app}:/app", "-w", "/app", BUILD_IMAGE,
         "npm", "install", "--package-lock-only", "--no-audit", "--no-fund"],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    deploy(slipway, "node", app, "dependency change")

    log = build_log(slipway, "node")
    assert "Dependencies changed" in log and "Adding layer 'slipway/node:deps'" in log
    assert slipway.get("node").text.startswith("Hello again from Express on ")


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
    build = last_build(slipway, "sec")
    assert secret not in build_log(slipway, "sec")
    image = docker_client.images.get(build["image"])  # CNB build env is not in the image
    assert secret not in json.dumps(image.attrs) and "TOKEN" not in str(image.attrs["Config"])


@pytest.mark.parametrize(
    ("files", "says"),
    [
        pytest.param(
            {"project.toml": PROJECT + '[io.buildpacks]\nbuilder = "slipway/nope:bookworm"\n',
             "index.html": "x\n"},
            "the builder image slipway/nope:bookworm is not on this machine, and Slipway never "
            "pulls slipway/ images: name an existing builder with the annotation "
            "slipway.dev/pack-builder, `[io.buildpacks] builder = ...` in project.toml, or "
            f"SLIPWAY_PACK_BUILDER (Slipway's own is {DEFAULT_PACK_BUILDER}: make it with "
            "./scripts/builder", id="builder-missing"),
        pytest.param(
            {"project.toml": PROJECT, "README.md": "nothing to run\n"},
            f"no buildpack of {DEFAULT_PACK_BUILDER} detects this app: Slipway's builder builds "
            "a Python app (requirements.txt or pyproject.toml), a Node.js app (package.json)",
            id="nothing-detects"),
        pytest.param(
            {"project.toml": PROJECT, "requirements.txt": "six==1.16.0\n"},
            "a buildpack failed: slipway/python: no web process: add a Procfile with a "
            "`web: <command>` line, or a main.py or app.py that listens on $PORT",
            id="buildpack-fails"),
    ],
)  # fmt: skip
def test_pack_failures_name_the_fix(
    slipway: Slipway, tmp_path: Path, files: dict[str, str], says: str
) -> None:
    result = slipway.cli("deploy", "bad", "--source", str(write(tmp_path / "bad", files)),
                         check=False)  # fmt: skip

    assert result.returncode == 1
    assert says in result.stderr, result.stderr
    assert slipway.api_get("/v1/services/bad").status_code == 404


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
