"""Builders end to end: each build template builds a real sample app on the Docker Engine (with
BuildKit) and serves it through HAProxy; cache mounts; build args and secret mounts; bad input
fails with the step and its output.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
from pathlib import Path

import docker
import pytest

from pipeline.build import baseimages
from pipeline.build.basecatalog import DEBIAN, NODE, PYTHON
from pipeline.core.settings import DEFAULT_PACK_BUILDER
from tests.integration.conftest import BUSYBOX, Slipway
from tests.integration.packs import ensure_builder, removing_pack_caches

pytestmark = pytest.mark.integration
PROJECT = '[_]\nschema-version = "0.2"\n'  # a project.toml: Cloud Native Buildpacks

WSGI = """\
import os

GREETING = "hello from python v1"


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{GREETING} uid={os.getuid()}\\n".encode()]
"""


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def build_of(slipway: Slipway, service: str) -> dict[str, object]:
    builds: list[dict[str, object]] = slipway.api_get(f"/v1/builds?service={service}").json()
    return builds[0]


def log_of(slipway: Slipway, build_id: object) -> str:
    return slipway.api_get(f"/v1/builds/{build_id}/log").text


@pytest.fixture(autouse=True, scope="module")
def template_base_images(docker_client: docker.DockerClient) -> None:
    """The templates build FROM the local Debian/Python images: make them if this machine has
    none yet (on a fresh machine nothing else in this module would)."""
    baseimages.ensure_base_images(docker_client, references=[DEBIAN, PYTHON])


def test_python_template_serves_a_code_change_reuses_the_install_layer_and_a_new_dependency_downloads_only_itself(  # noqa: E501
    slipway: Slipway, tmp_path: Path
) -> None:
    app = write(tmp_path / "py", {"requirements.txt": "six==1.16.0\n", "app.py": WSGI})

    first = slipway.cli("deploy", "py", "--source", str(app))

    assert "Build " in first.stdout and "(template:python)" in first.stdout
    assert "Builder: template:python (no Dockerfile; requirements.txt found)" in first.stdout
    resp = slipway.get("py")
    assert resp.status_code == 200
    assert resp.text == "hello from python v1 uid=10001\n"  # not root

    (app / "app.py").write_text(WSGI.replace("v1", "v2"))
    slipway.cli("deploy", "py", "--source", str(app))

    assert slipway.get("py").text == "hello from python v2 uid=10001\n"
    lines = log_of(slipway, build_of(slipway, "py")["id"]).splitlines()
    install = next(
        i for i, line in enumerate(lines) if line.startswith("Step ") and "pip download" in line
    )
    assert lines[install + 1].strip() == "---> Using cache", lines[install : install + 3]

    # One more dependency: the install step runs again, but the package cache mount still holds
    # six's wheel, so only the new package is downloaded.
    (app / "requirements.txt").write_text("six==1.16.0\nidna==3.7\n")
    slipway.cli("deploy", "py", "--source", str(app))

    assert slipway.get("py").text == "hello from python v2 uid=10001\n"
    log = log_of(slipway, build_of(slipway, "py")["id"])
    assert "File was already downloaded /root/.cache/pip/files/six-1.16.0" in log, log
    assert "Downloading idna-3.7" in log and "Downloading six" not in log


def test_node_template(
    slipway: Slipway, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    baseimages.ensure_base_images(docker_client, references=[NODE])
    package = {"name": "n", "version": "1.0.0", "scripts": {"start": "node server.js"}}
    lock = {"name": "n", "version": "1.0.0", "lockfileVersion": 3, "requires": True,
            "packages": {"": {"name": "n", "version": "1.0.0"}}}  # fmt: skip
    app = write(tmp_path / "node", {
        "package.json": json.dumps(package),
        "package-lock.json": json.dumps(lock),
        "server.js": "require('http').createServer((q, r) => r.end(`node uid=${process.getuid()}"
                     "\\n`)).listen(process.env.PORT)\n",
    })  # fmt: skip

    out = slipway.cli("deploy", "node", "--source", str(app)).stdout

    assert "npm ci --omit=dev" in out
    assert slipway.get("node").text == "node uid=10001\n"


def test_static_and_procfile_templates(slipway: Slipway, tmp_path: Path) -> None:
    site = write(tmp_path / "site", {"index.html": "static site\n"})
    slipway.cli("deploy", "site", "--source", str(site))
    assert slipway.get("site").text == "static site\n"

    proc = write(tmp_path / "proc", {
        "Procfile": "web: httpd -f -p $PORT -h /app/public\n",
        "public/index.html": "from a Procfile\n",
    })  # fmt: skip
    slipway.cli("deploy", "proc", "--source", str(proc), "--base-image", BUSYBOX)
    assert slipway.get("proc").text == "from a Procfile\n"


def test_secrets_are_mounts_that_stay_out_of_the_log_and_the_image_history(
    slipway: Slipway, tmp_path: Path
) -> None:
    secret = "s3cret-" + secrets.token_hex(8)
    dockerfile = (
        f"FROM {BUSYBOX}\nARG GREETING\n"
        'RUN --mount=type=secret,id=TOKEN echo "using $(cat /run/secrets/TOKEN)" && mkdir -p /www'
        " && sha256sum < /run/secrets/TOKEN | cut -c1-64 > /www/tok"
        ' && echo "$GREETING" > /www/index.html\n'
        'USER app\nCMD ["sh", "-c", "exec httpd -f -p $PORT -h /www"]\n'
    )
    app = write(tmp_path / "sec", {"Dockerfile": dockerfile})

    out = slipway.cli(
        "deploy", "sec", "--source", str(app), "--build-arg", "GREETING=hi there",
        "--build-secret", f"TOKEN={secret}",
    ).stdout  # fmt: skip

    assert slipway.get("sec").text == "hi there\n"
    # The step saw the value (in the final stage: a mount never reaches a layer or the history).
    assert slipway.get("sec", "/tok").text.strip() == hashlib.sha256(secret.encode()).hexdigest()
    assert "using ****" in out and secret not in out
    build = build_of(slipway, "sec")
    assert secret not in log_of(slipway, build["id"])
    history = subprocess.run(
        ["docker", "history", "--no-trunc", str(build["image"])],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "GREETING=hi there" in history and secret not in history

    # The old way, a secret as a build arg, would put the value in the history: refused before
    # the build, saying how to mount it instead.
    leaky = f'FROM {BUSYBOX}\nARG TOKEN\nRUN test -n "$TOKEN"\n'
    write(tmp_path / "leaky", {"Dockerfile": leaky})
    result = slipway.cli("deploy", "leaky", "--source", str(tmp_path / "leaky"),
                         "--build-secret", f"TOKEN={secret}", check=False)  # fmt: skip
    assert result.returncode == 1
    assert "declares `ARG TOKEN`, but TOKEN is a build secret" in result.stderr
    assert "RUN --mount=type=secret,id=TOKEN" in result.stderr
    assert secret not in result.stdout + result.stderr
    assert build_of(slipway, "leaky")["status"] == "failed"

    # The same value passed again as a plain build arg does reach the history: the image is
    # checked before the push, refused, and nothing is pushed.
    by_hand = f"FROM {BUSYBOX}\nARG COPY_OF_IT\nRUN test -n \"$COPY_OF_IT\"\n"
    write(tmp_path / "byhand", {"Dockerfile": by_hand})
    result = slipway.cli("deploy", "byhand", "--source", str(tmp_path / "byhand"),
                         "--build-secret", f"TOKEN={secret}",
                         "--build-arg", f"COPY_OF_IT={secret}", check=False)  # fmt: skip
    assert result.returncode == 1
    assert "the value of secret TOKEN appears in the image history" in result.stderr
    assert secret not in result.stdout + result.stderr
    assert build_of(slipway, "byhand")["status"] == "failed"


@pytest.mark.parametrize(
    ("files", "says"),
    [
        pytest.param({"Dockerfile": f"FROM {BUSYBOX}\nRUNN echo\n"},
                     "the Dockerfile has a syntax error", id="dockerfile-syntax"),
        pytest.param({"Dockerfile": "FROM python:3.12-slim\n"},
                     f"FROM python:3.12-slim: no such image on this machine, and no public "
                     f"registry is reachable. Offline base images here: {BUSYBOX}",
                     id="from-image-missing"),
        pytest.param({"requirements.txt": "slipway-no-such-package-zz==0.0.1\n",
                      "app.py": WSGI},
                     "`RUN /opt/venv/bin/pip download", id="requirements-fail"),
        pytest.param({"package.json": '{"name": "x"}'}, 'package.json has no "start" script',
                     id="node-without-start"),
        pytest.param({"Procfile": "worker: run\n"}, "the Procfile has no `web:` line",
                     id="procfile-without-web"),
        pytest.param({"README.md": "hi"},
                     "no Dockerfile in the source folder (looked for: Dockerfile, project.toml",
                     id="nothing-to-build"),
        # pack (the real one, with Slipway's builder): each failure names its fix.
        pytest.param({"project.toml": PROJECT + '[io.buildpacks]\nbuilder = "slipway/no:pe"\n',
                      "index.html": "x\n"},
                     "the builder image slipway/no:pe is not on this machine, and Slipway never "
                     "pulls slipway/ images: name an existing builder with the annotation "
                     "slipway.dev/pack-builder, `[io.buildpacks] builder = ...` in project.toml, "
                     f"or SLIPWAY_PACK_BUILDER (Slipway's own is {DEFAULT_PACK_BUILDER}: make it "
                     "with ./scripts/builder", id="pack-builder-missing"),
        pytest.param({"project.toml": PROJECT, "README.md": "nothing to run\n"},
                     f"no buildpack of {DEFAULT_PACK_BUILDER} detects this app: Slipway's builder "
                     "builds a Python app", id="pack-nothing-detects"),
        pytest.param({"project.toml": PROJECT, "requirements.txt": "six==1.16.0\n"},
                     "a buildpack failed: slipway/python: no web process: add a Procfile with a "
                     "`web: <command>` line, or a main.py or app.py that listens on $PORT",
                     id="pack-buildpack-fails"),
    ],
)  # fmt: skip
def test_bad_input_fails_with_the_step_and_makes_no_revision(
    slipway: Slipway,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    files: dict[str, str],
    says: str,
) -> None:
    if "project.toml" in files:
        ensure_builder(docker_client)
    app = write(tmp_path / "bad", files)

    with removing_pack_caches(docker_client, "bad"):
        result = slipway.cli("deploy", "bad", "--source", str(app), check=False)

    assert result.returncode == 1
    assert says in result.stderr, result.stderr
    assert slipway.api_get("/v1/services/bad").status_code == 404  # no revision, no service
    if "pip download" in says:
        assert "No matching distribution" in result.stderr  # the step's last output lines


def test_megabytes_of_build_output_are_kept(slipway: Slipway, tmp_path: Path) -> None:
    # dockerd's BuildKit clips one step's output past 200 KiB/s or 2 MiB (its own limits, set in
    # dockerd's environment), so the megabytes come from 16 steps of ~175 KB each.
    token = secrets.token_hex(4)
    steps = "".join(
        f"RUN i={step * 2400}; while [ $i -lt {(step + 1) * 2400} ]; do echo \"line $i {token} "
        'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"; i=$((i+1)); done\n'
        for step in range(16)
    )
    dockerfile = (
        f"FROM {BUSYBOX}\n{steps}"
        "COPY index.html /www/index.html\nUSER app\n"
        'CMD ["sh", "-c", "exec httpd -f -p $PORT -h /www"]\n'
    )
    app = write(tmp_path / "loud", {"Dockerfile": dockerfile, "index.html": "loud\n"})

    slipway.cli("deploy", "loud", "--source", str(app))

    assert slipway.get("loud").text == "loud\n"
    stored = log_of(slipway, build_of(slipway, "loud")["id"])
    assert len(stored) > 2_500_000
    assert f"line 38399 {token}" in stored
    assert "output clipped" not in stored
