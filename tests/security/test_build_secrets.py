"""Build secrets against the real platform: a user's Dockerfile and a build template each use a
secret during the build, print it (plain and base64) and keep a hash of it in the image; the image
pulled back from the registry by digest, its history and config, and the build log must hold
neither the value nor its base64 form.

BuildKit secret mounts (`--secret`, `/run/secrets/NAME`) are what keeps the value out of the
image; masking (`pipeline/build/masking.py`) is what keeps it out of the log.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from pathlib import Path

import docker
import pytest

from pipeline.build import basecatalog, baseimages
from tests.integration.conftest import BUSYBOX, Slipway

pytestmark = pytest.mark.integration


def _forms(value: str) -> list[str]:
    """The spellings a leak could take: the value, and its base64 with and without padding."""
    b64 = base64.b64encode(value.encode()).decode()
    return [value, b64, b64.rstrip("=")]


def _assert_nowhere(value: str, *, image: str, log: str, client: docker.DockerClient) -> None:
    client.images.pull(image)  # what the registry holds, by digest, not a local leftover
    pulled = client.images.get(image)
    history = json.dumps(pulled.history())
    config = json.dumps(pulled.attrs["Config"])
    for form in _forms(value):
        assert form not in history, "secret in the image history"
        assert form not in config, "secret in the image config"
        assert form not in log, "secret in the build log"


def _build(slipway: Slipway, service: str) -> tuple[str, str]:
    """(image, build log) of the service's latest build."""
    build = slipway.api_get(f"/v1/builds?service={service}").json()[0]
    assert build["status"] == "succeeded", build
    return str(build["image"]), slipway.api_get(f"/v1/builds/{build['id']}/log").text


def test_a_user_dockerfile_secret_mount_leaves_no_trace(
    slipway: Slipway, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    value = "tok-" + secrets.token_hex(12)
    app = tmp_path / "own"
    app.mkdir()
    (app / "Dockerfile").write_text(
        f"FROM {BUSYBOX}\n"
        "RUN --mount=type=secret,id=API_TOKEN mkdir -p /www"
        ' && echo "plain $(cat /run/secrets/API_TOKEN)"'
        ' && echo "b64 $(base64 < /run/secrets/API_TOKEN)"'
        " && sha256sum < /run/secrets/API_TOKEN | cut -c1-64 > /www/index.html\n"
        'USER app\nCMD ["sh", "-c", "exec httpd -f -p $PORT -h /www"]\n'
    )

    out = slipway.cli(
        "deploy", "own", "--source", str(app), "--build-secret", f"API_TOKEN={value}"
    ).stdout

    # The step did see the value: the app serves its hash.
    assert slipway.get("own").text.strip() == hashlib.sha256(value.encode()).hexdigest()
    assert "plain ****" in out and "b64 ****" in out
    image, log = _build(slipway, "own")
    _assert_nowhere(value, image=image, log=log + out, client=docker_client)


def test_a_template_install_step_secret_leaves_no_trace(
    slipway: Slipway, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    baseimages.ensure_base_images(docker_client, references=[basecatalog.NODE])
    value = "npm-" + secrets.token_hex(12)
    # npm runs the project's own postinstall in the template's install step, where the secret is
    # $NPM_SECRET; foreground scripts make npm print the script's output to the build log.
    postinstall = (
        "node -e \"const v = process.env.NPM_SECRET || ''; "
        "console.log('plain', v, 'b64', Buffer.from(v).toString('base64')); "
        "require('fs').writeFileSync('hash.txt', require('crypto').createHash('sha256')"
        ".update(v).digest('hex'))\""
    )
    package = {"name": "s", "version": "1.0.0",
               "scripts": {"start": "node server.js", "postinstall": postinstall}}  # fmt: skip
    app = tmp_path / "tpl"
    app.mkdir()
    (app / "package.json").write_text(json.dumps(package))
    (app / "server.js").write_text(
        "const h = require('fs').readFileSync('/app/hash.txt', 'utf8');\n"
        "require('http').createServer((q, r) => r.end(h + '\\n')).listen(process.env.PORT);\n"
    )

    out = slipway.cli(
        "deploy", "tpl", "--source", str(app), "--build-secret", f"NPM_SECRET={value}",
        "--build-arg", "NPM_CONFIG_FOREGROUND_SCRIPTS=true",
    ).stdout  # fmt: skip

    assert "(template:node)" in out or "template:node" in out
    assert "--mount=type=secret,id=NPM_SECRET" in out  # the rendered template, as shown
    assert slipway.get("tpl").text.strip() == hashlib.sha256(value.encode()).hexdigest()
    assert "plain **** b64 ****" in out
    image, log = _build(slipway, "tpl")
    _assert_nowhere(value, image=image, log=log + out, client=docker_client)
