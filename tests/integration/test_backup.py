"""Backup and restore end to end: one platform is backed up while it runs, a second one on a
fresh data dir is restored from the archive and serves the same services, revisions, traffic,
tags and secrets, and still verifies the identity tokens the first one minted.

Both platforms are real control planes with their own data dir, network and HAProxy, sharing the
test registry (a restore on another machine needs the images in a registry it can reach). The
`--with-images` test instead gives them a registry of its own, emptied between backup and
restore, as on a new machine: the images come back from the archive with the same digests.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import jwt
import pytest

from pipeline.build.registry import RegistryClient
from pipeline.core.errors import NotFound
from pipeline.store.backups import staged_images
from tests.integration.conftest import (
    ROOT,
    Registry,
    Slipway,
    push_image,
    running_slipway,
    write_app,
)

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


class EmptiedRegistry(Registry):
    """A registry on a fixed loopback address whose storage can be wiped: revisions name
    `<address>/repo@digest`, so the restored platform must find the same address, empty."""

    def wipe(self) -> None:
        """Stopped, emptied, started again: a new machine's registry at the same address."""
        self.stop()
        shutil.rmtree(self.storage, ignore_errors=True)
        self.start()

    def has(self, pinned: str) -> bool:
        try:
            with RegistryClient() as registry:
                return registry.resolve(pinned) == pinned
        except NotFound:
            return False


@pytest.fixture
def emptied_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmptiedRegistry]:
    reg = EmptiedRegistry(tmp_path_factory.mktemp("emptied-registry"))
    reg.start()
    try:
        yield reg
    finally:
        reg.stop()


def _images(sw: Slipway, service: str) -> dict[str, str]:
    revisions = sw.api_get(f"/v1/services/{service}/revisions").json()
    return {r["name"]: r["image"] for r in revisions}


def _forget_local(client: docker.DockerClient, *refs: str) -> None:
    """Drop the test's own images from the Docker Engine: the restored platform must pull them
    from the registry, not find them cached."""
    for ref in refs:
        with contextlib.suppress(docker.errors.ImageNotFound):  # went with an earlier name
            client.images.remove(ref, force=True)
    for pinned in refs:
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get(pinned)


def test_with_images_a_restore_into_an_empty_registry_runs_the_same_digests(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient,
    registry: str, emptied_registry: EmptiedRegistry, busybox_image: str, tmp_path: Path,
) -> None:  # fmt: skip
    archive = tmp_path / "with-images.tar.gz"
    own = emptied_registry.address
    ref = f"{own}/kept/app"
    outside = f"{registry}/elsewhere/app:1"  # another registry: skipped, pulled from there
    with running_slipway(tmp_path_factory, docker_client, own) as first:
        for n in (1, 2):
            push_image(docker_client, write_app(tmp_path / f"v{n}", body=f"v{n}\n"), f"{ref}:{n}")
        push_image(docker_client, write_app(tmp_path / "e", body="e\n"), outside)
        first.cli("deploy", "kept", "--image", f"{ref}:1")
        first.cli("deploy", "kept", "--image", f"{ref}:2", "--no-traffic", "--tag", "next")
        first.cli("deploy", "elsewhere", "--image", outside)
        pinned = _images(first, "kept")
        assert len(set(pinned.values())) == 2
        elsewhere = _images(first, "elsewhere")["elsewhere-00001"]

        done = _cli(first.env, "backup", str(archive), "--with-images")
        assert done.returncode == 0, done.stderr
    assert f"images: 2 from {own}" in done.stdout, done.stdout
    assert f"not copied: {elsewhere} (not in Slipway's registry" in done.stdout, done.stdout

    emptied_registry.wipe()
    assert not any(emptied_registry.has(p) for p in pinned.values()), "the registry kept images"
    _forget_local(docker_client, f"{ref}:1", f"{ref}:2", *pinned.values())

    with running_slipway(tmp_path_factory, docker_client, own) as second:
        second.stop()
        emptied_registry.stop()  # the documented flow: ./scripts/down, restore, ./scripts/up
        restored = _cli(second.env, "restore", str(archive))
        assert restored.returncode == 0, restored.stderr
        assert "the control plane pushes them" in restored.stdout, restored.stdout
        assert staged_images(second.data_dir).is_dir()
        second.start()  # the registry still down: the platform starts, the push waits
        assert "restored_images_not_pushed" in second.log_path.read_text()
        assert staged_images(second.data_dir).is_dir(), "kept for the next start"
        _wait_serving(second, "elsewhere", "e\n")  # what needs no restored image serves
        second.stop()
        emptied_registry.start()
        second.start()

        assert "restored_images_pushed" in second.log_path.read_text()
        assert not staged_images(second.data_dir).exists(), second.log_path.read_text()[-2000:]
        assert all(emptied_registry.has(p) for p in pinned.values())
        with RegistryClient() as registry:
            assert registry.resolve(f"{ref}:1") == pinned["kept-00001"], "tag :1 is back"
        assert _images(second, "kept") == pinned
        _wait_serving(second, "kept", "v1\n")
        _wait_serving(second, "next--kept.localhost", "v2\n")
        _wait_serving(second, "elsewhere", "e\n")
        second.stop()

        # A restore while the registry runs pushes at once.
        emptied_registry.wipe()
        again = _cli(second.env, "restore", "--force", str(archive))
        assert again.returncode == 0, again.stderr
    assert f"manifests pushed to {own}" in again.stdout, again.stdout
    assert not staged_images(second.data_dir).exists()
    assert all(emptied_registry.has(p) for p in pinned.values())
