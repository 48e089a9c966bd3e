"""Env and secrets on the real engine: --env-file, --remove-env, secrets encrypted at rest and
injected as env, every config change a new revision."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import Slipway, httpd_app

pytestmark = pytest.mark.integration

ENV_CGI = """#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
echo "GREETING=$GREETING OTHER=$OTHER DB_PASSWORD=$DB_PASSWORD"
"""


def env_app(folder: Path) -> Path:
    return httpd_app(folder, "env\n", {"env": ENV_CGI})


def test_env_file_secrets_and_remove_env(slipway: Slipway, tmp_path: Path) -> None:
    secret_value = "s3cret-Value-42"
    slipway.cli("secrets", "set", "db", f"password={secret_value}")
    env_file = tmp_path / "app.env"
    env_file.write_text("# settings\nGREETING='hello world'\nexport OTHER=x\n")
    app = env_app(tmp_path / "app")

    out = slipway.cli(
        "deploy", "configured", "--source", str(app), "--env-file", str(env_file),
        "--set-secrets", "DB_PASSWORD=db:password",
    ).stdout  # fmt: skip
    assert "configured-00001 ready" in out
    body = slipway.get("configured", "/cgi-bin/env").text
    assert body.strip() == f"GREETING=hello world OTHER=x DB_PASSWORD={secret_value}"

    # The value is nowhere but in the instance: not in the API, the logs or the files at rest.
    assert secret_value not in slipway.api_get("/v1/services/configured").text
    assert secret_value not in slipway.cli("secrets", "list").stdout
    assert secret_value not in slipway.log_path.read_text()
    for stored in (slipway.data_dir / "secrets").rglob("*"):
        if stored.is_file():
            assert secret_value.encode() not in stored.read_bytes()
            assert stored.stat().st_mode & 0o077 == 0, f"{stored} is readable by others"

    # A new secret version is picked up by the next deploy, as a new revision.
    slipway.cli("secrets", "set", "db", "password=rotated")
    out = slipway.cli("deploy", "configured", "--source", str(app)).stdout
    assert "configured-00002 ready" in out
    assert "DB_PASSWORD=rotated" in slipway.get("configured", "/cgi-bin/env").text

    out = slipway.cli("deploy", "configured", "--source", str(app), "--remove-env", "OTHER").stdout
    assert "configured-00003 ready" in out
    assert "OTHER= " in slipway.get("configured", "/cgi-bin/env").text

    missing = slipway.cli(
        "deploy", "configured", "--source", str(app), "--set-secrets", "X=nope:key", check=False
    )
    assert missing.returncode == 1 and "secret 'nope' does not exist" in missing.stderr
    assert "DB_PASSWORD=rotated" in slipway.get("configured", "/cgi-bin/env").text
