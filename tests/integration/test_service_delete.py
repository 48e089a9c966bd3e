"""`services delete` removes everything Slipway keeps for a service: real git pushes, builds,
registry and Docker Engine; a rejected first push's leftovers go the same way."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import httpx
import pytest

from pipeline.core import names
from tests.integration.conftest import Slipway, write_app
from tests.integration.test_git_push import Checkout

pytestmark = pytest.mark.integration


def checkout_for(slipway: Slipway, folder: Path, service: str, *, body: str) -> Checkout:
    remote = f"http://x:{slipway.token}@localhost:{slipway.ingress_port}/git/{service}.git"
    return Checkout(write_app(folder, body=body), remote)


def registry_tags(registry: str, service: str) -> list[str]:
    reply = httpx.get(f"http://{registry}/v2/{service}/tags/list", timeout=10)
    if reply.status_code == 404:
        return []
    assert reply.status_code == 200, reply.text
    return list(reply.json().get("tags") or [])


def local_refs(client: docker.DockerClient, repository: str) -> list[str]:
    return [
        ref
        for image in client.images.list()
        for ref in [*(image.attrs.get("RepoTags") or []), *(image.attrs.get("RepoDigests") or [])]
        if ref.startswith((f"{repository}:", f"{repository}@"))
    ]


def builds_of(slipway: Slipway, service: str) -> list[dict[str, object]]:
    reply = slipway.api_get(f"/v1/builds?service={service}")
    assert reply.status_code == 200, reply.text
    return list(reply.json())


def test_delete_removes_images_repository_builds_and_a_new_service_starts_clean(
    slipway: Slipway, registry: str, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    service = "tidy"
    first = checkout_for(slipway, tmp_path / "one", service, body="tidy v1\n")
    first.commit("v1")
    first.push("main")
    (first.path / "index.html").write_text("tidy v2\n")
    first.commit("v2")
    first.push("main")
    assert slipway.get(service).text == "tidy v2\n"
    repo_dir = slipway.data_dir / "git" / f"{service}.git"
    builds = builds_of(slipway, service)
    assert repo_dir.is_dir() and len(builds) == 2
    logs = [slipway.data_dir / "builds" / f"{b['id']}.log" for b in builds]
    assert all(log.is_file() for log in logs), logs
    assert registry_tags(registry, service) != []
    repository = names.image_repository(registry, service)
    assert local_refs(docker_client, repository) != []

    out = slipway.cli("services", "delete", service).stdout
    assert f"Deleted {service}" in out

    assert registry_tags(registry, service) == []
    assert not repo_dir.exists()
    assert builds_of(slipway, service) == []
    assert not any(log.exists() for log in logs)
    assert local_refs(docker_client, repository) == []
    assert slipway.api_get(f"/v1/services/{service}").status_code == 404

    again = checkout_for(slipway, tmp_path / "two", service, body="tidy anew\n")
    again.commit("anew")
    again.push("main")  # a fresh repository: no history to be a fast-forward of
    assert slipway.get(service).text == "tidy anew\n"
    assert len(builds_of(slipway, service)) == 1
    revisions = slipway.api_get(f"/v1/services/{service}/revisions").json()
    assert [r["name"] for r in revisions] == [names.revision_name(service, 1)]
    slipway.cli("services", "delete", service)


def test_delete_removes_what_a_rejected_first_push_left(slipway: Slipway, tmp_path: Path) -> None:
    service = "leftover"
    broken = checkout_for(slipway, tmp_path / "src", service, body="never\n")
    (broken.path / "Dockerfile").write_text("FROM scratch\nRUN false\n")
    broken.commit("broken")
    assert broken.push("main", check=False).returncode != 0
    repo_dir = slipway.data_dir / "git" / f"{service}.git"
    assert repo_dir.is_dir()
    assert slipway.api_get(f"/v1/services/{service}").status_code == 404

    reply = httpx.delete(
        f"http://127.0.0.1:{slipway.api_port}/v1/services/{service}",
        headers={"Authorization": f"Bearer {slipway.token}"}, timeout=120,
    )  # fmt: skip
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["deleted"] == service and body["failed"] == []
    assert any("git repository" in what for what in body["removed"]), json.dumps(body)
    assert not repo_dir.exists()
    assert builds_of(slipway, service) == []

    gone = slipway.cli("services", "delete", service, check=False)
    assert gone.returncode != 0
    assert "not found" in gone.stdout + gone.stderr
