"""Backup and restore end to end: one platform is backed up while it runs, a second one on a
fresh data dir is restored from the archive and serves the same services, revisions, traffic,
tags and secrets, and still verifies the identity tokens the first one minted.

Both platforms are real control planes with their own data dir, network and HAProxy, sharing the
test registry (a restore on another machine needs the images in a registry it can reach).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import docker
import httpx
import jwt
import pytest

from tests.integration.conftest import ROOT, Slipway, push_image, running_slipway, write_app

pytestmark = pytest.mark.integration


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def _state(sw: Slipway) -> dict[str, object]:
    svc = sw.api_get("/v1/services/kept").json()
    # Tag URLs carry each platform's own ingress port; the entries must be the same.
    traffic = [{k: v for k, v in t.items() if k != "url"} for t in svc["traffic"]]
    return {
        "traffic": traffic,
        "revisions": sorted(r["name"] for r in sw.api_get("/v1/services/kept/revisions").json()),
        "secrets": sw.api_get("/v1/secrets").json(),
    }


def _wait_serving(sw: Slipway, host: str, body: str) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if sw.get(host).text == body:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{host} does not serve {body!r} after the restore")


def test_a_restored_platform_serves_what_the_backup_held(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient,
    registry: str, busybox_image: str, tmp_path: Path,
) -> None:  # fmt: skip
    archive = tmp_path / "slipway-backup.tar.gz"
    with running_slipway(tmp_path_factory, docker_client, registry) as first:
        ref = f"{registry}/kept/app"
        for n in (1, 2):
            push_image(docker_client, write_app(tmp_path / f"v{n}", body=f"v{n}\n"), f"{ref}:{n}")
        first.cli("secrets", "set", "db", "password=s3cr3t")
        first.cli("deploy", "kept", "--image", f"{ref}:1", "--set-secrets", "DB=db:password")
        first.cli("deploy", "kept", "--image", f"{ref}:2", "--no-traffic", "--tag", "next")
        token = first.cli("auth", "print-identity-token", "--audience", "http://kept.localhost")
        before = _state(first)

        done = _cli(first.env, "backup", str(archive))  # while it runs
        assert done.returncode == 0, done.stderr

    with running_slipway(tmp_path_factory, docker_client, registry) as second:
        second.stop()
        restored = _cli(second.env, "restore", str(archive))
        assert restored.returncode == 0, restored.stderr
        second.start()

        assert _state(second) == before
        _wait_serving(second, "kept", "v1\n")
        _wait_serving(second, "next--kept.localhost", "v2\n")
        jwks = jwt.PyJWKClient(f"http://127.0.0.1:{second.api_port}/.well-known/jwks.json")
        signing = jwks.get_signing_key_from_jwt(token.stdout.strip())
        claims = jwt.decode(token.stdout.strip(), signing.key, algorithms=["RS256"],
                            audience="http://kept.localhost")  # fmt: skip
        assert claims["sub"].startswith("user:")


def test_restore_refuses_a_data_dir_that_has_services_and_a_running_control_plane(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient,
    registry: str, busybox_image: str, tmp_path: Path,
) -> None:  # fmt: skip
    archive = tmp_path / "b.tar.gz"
    with running_slipway(tmp_path_factory, docker_client, registry) as sw:
        ref = f"{registry}/busy/app:1"
        push_image(docker_client, write_app(tmp_path / "a", body="a\n"), ref)
        sw.cli("deploy", "busy", "--image", ref)
        assert _cli(sw.env, "backup", str(archive)).returncode == 0
        run = sw.data_dir / "run"
        run.mkdir(exist_ok=True)
        assert sw.proc is not None
        (run / "control-plane.pid").write_text(str(sw.proc.pid))

        running = _cli(sw.env, "restore", str(archive))
        sw.stop()
        occupied = _cli(sw.env, "restore", str(archive))

    assert running.returncode == 1 and "the control plane is running" in running.stderr
    assert occupied.returncode == 1 and "already holds a Slipway" in occupied.stderr
