"""Revisions that fail on the real cluster, and the reason Slipway shows for each: Knative's
condition read back from the Revision, translated by `knative.status`.

Knative reports a pod stuck in an image pull only once the Deployment's progress deadline has
passed (600 s by default), so that case sets `serving.knative.dev/progress-deadline` on its
template, as a user may. The exiting app keeps Knative's default deadline: Slipway reads the
revision's pods itself (Knative would report the exit code only at that deadline), so it fails
with `ExitCode` well within the tier's SLIPWAY_READINESS_TIMEOUT, not as `ReadinessTimeout`."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import docker
import httpx
import yaml

from tests.knative.conftest import (
    KnativeSlipway,
    Kube,
    PushedImage,
    eventually,
    exiting_app,
    httpd_app,
    push,
)

DEADLINE = "45s"


def _replace(
    slipway: KnativeSlipway, folder: Path, service: str, image: str, *, deadline: str = ""
) -> str:
    annotations = {"serving.knative.dev/progress-deadline": deadline} if deadline else {}
    doc = folder / f"{service}.yaml"
    doc.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "serving.knative.dev/v1",
                "kind": "Service",
                "metadata": {"name": service},
                "spec": {
                    "template": {
                        "metadata": {"annotations": annotations},
                        "spec": {"containers": [{"image": image}]},
                    }
                },
            }
        )
    )
    result = slipway.cli("services", "replace", str(doc), check=False, timeout=400)
    assert result.returncode != 0, f"a failing revision was reported as deployed:\n{result.stdout}"
    return result.stdout + result.stderr


def _row(slipway: KnativeSlipway, service: str) -> dict[str, Any]:
    rows: list[dict[str, Any]] = slipway.api_json(f"/v1/services/{service}/revisions")
    assert [r["name"] for r in rows] == [f"{service}-00001"], rows
    return rows[0]


def _knative_ready(kube: Kube, revision: str) -> dict[str, Any]:
    rev = kube.knative("revisions", revision)
    assert rev is not None
    conditions = (rev.get("status") or {}).get("conditions") or []
    return {c["type"]: c for c in conditions}


def _unpullable(client: docker.DockerClient, folder: Path, ref: str) -> PushedImage:
    """An image whose manifest is in the registry but whose blobs are not (as after a registry
    garbage collection that went wrong): Slipway resolves the tag to a digest, as it does for
    every deploy, and the node's pull then fails. Blob deletes unlink them from this repository
    only; other repositories sharing a layer keep it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "unique").write_text(secrets.token_hex(16))
    (folder / "Dockerfile").write_text(
        "FROM slipway/busybox:1.35-bookworm\nCOPY unique /unique\nUSER 65532:65532\n"
        'CMD ["sh", "-c", "exec httpd -f -p ${PORT}"]\n'
    )
    image = push(client, folder, ref)
    registry, repo = ref.split("/", 1)
    repo = repo.rsplit(":", 1)[0]
    manifest = httpx.get(
        f"http://{registry}/v2/{repo}/manifests/{image.digest}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        timeout=10,
    ).json()
    blobs = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
    for blob in blobs:
        resp = httpx.delete(f"http://{registry}/v2/{repo}/blobs/{blob}", timeout=10)
        assert resp.status_code == 202, (
            f"registry {registry} refused to delete {blob} ({resp.status_code} {resp.text}): "
            "this case needs a registry with `storage.delete.enabled: true` "
            "(the one scripts/cluster starts has it)"
        )
    return image


def test_an_image_the_node_cannot_pull_fails_the_revision_with_image_not_found(
    slipway: KnativeSlipway,
    docker_client: docker.DockerClient,
    busybox: str,
    kube_reader: Kube,
    tmp_path: Path,
    cluster: Any,
) -> None:
    service = f"kt-nopull-{secrets.token_hex(2)}"
    image = _unpullable(
        docker_client, tmp_path / "app", f"{cluster.registry}/slipway-kt/{service}:1"
    )
    out = _replace(slipway, tmp_path, service, image.ref, deadline=DEADLINE)
    row = _row(slipway, service)
    assert row["status"] == "Failed", row
    assert row["reason"] == "ImageNotFound", row
    assert "could not pull" in row["message"], row
    assert "ImageNotFound" in out, out
    # What Knative said, as Slipway read it.
    conditions = _knative_ready(kube_reader, f"{service}-00001")
    assert conditions["Ready"]["status"] == "False", conditions


def test_an_app_that_exits_fails_the_revision_with_its_exit_code(
    slipway: KnativeSlipway,
    docker_client: docker.DockerClient,
    busybox: str,
    kube_reader: Kube,
    tmp_path: Path,
    cluster: Any,
) -> None:
    service = f"kt-exits-{secrets.token_hex(2)}"
    image = push(
        docker_client,
        exiting_app(tmp_path / "app", 3),
        f"{cluster.registry}/slipway-kt/{service}:1",
    )
    out = _replace(slipway, tmp_path, service, image.ref)
    row = _row(slipway, service)
    assert row["status"] == "Failed", row
    assert row["reason"] == "ExitCode", row
    assert "exited with code 3" in row["message"], row
    assert "exited with code 3: kt-exiting-app starts and gives up" in row["message"], row
    assert "exited with code 3" in out, out
    # What Slipway read: the pod's user container, which the kubelet saw exit with 3.
    codes = [
        (c.state.terminated or c.last_state.terminated).exit_code
        for p in kube_reader.pods(f"{service}-00001")
        for c in p.status.container_statuses or ()
        if c.name == "user-container" and (c.state.terminated or c.last_state.terminated)
    ]
    assert 3 in codes, codes


def test_a_revision_name_another_knative_service_holds_fails_with_name_taken(
    slipway: KnativeSlipway,
    docker_client: docker.DockerClient,
    busybox: str,
    kube_reader: Kube,
    tmp_path: Path,
    cluster: Any,
) -> None:
    """Knative lets a Service named `kt-x` bring the revision name `kt-x-taken-00001` (its
    prefix rule), the very name Slipway gives the first revision of its service `kt-x-taken`.
    Slipway refuses to apply over it, and the revision fails with NameTaken."""
    other = f"kt{secrets.token_hex(2)}"
    service = f"{other}-taken"
    image = push(
        docker_client,
        exiting_app(tmp_path / "app", 0),
        f"{cluster.registry}/slipway-kt/{service}:1",
    )
    kube_reader.custom.create_namespaced_custom_object(
        "serving.knative.dev", "v1", kube_reader.namespace, "services",
        {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": {"name": other},
            "spec": {"template": {
                "metadata": {"name": f"{service}-00001",
                             "annotations": {"autoscaling.knative.dev/initial-scale": "0"}},
                "spec": {"containers": [{"image": image.pinned}]},
            }},
        },
    )  # fmt: skip
    eventually(
        f"Knative creating revision {service}-00001 for {other}",
        lambda: kube_reader.knative("revisions", f"{service}-00001"),
    )
    out = _replace(slipway, tmp_path, service, image.ref)
    row = _row(slipway, service)
    assert row["status"] == "Failed", row
    assert row["reason"] == "NameTaken", row
    assert f"Knative Service {other!r}" in row["message"], row
    assert "NameTaken" in out, out
    # Not overwritten: the revision is still the other Service's, and Slipway made no Service.
    taken = kube_reader.knative("revisions", f"{service}-00001") or {}
    assert taken["metadata"]["labels"]["serving.knative.dev/service"] == other
    assert kube_reader.knative("services", service) is None


def test_a_spec_knatives_webhook_refuses_fails_with_invalid_spec(
    slipway: KnativeSlipway,
    docker_client: docker.DockerClient,
    busybox: str,
    kube_reader: Kube,
    tmp_path: Path,
    cluster: Any,
) -> None:
    """Slipway passes `serving.knative.dev/*` template annotations through unchecked; Knative's
    validating webhook refuses a progress deadline that is not a duration. That answer is final:
    the revision fails as InvalidSpec with the webhook's words, without waiting out the readiness
    timeout, and nothing is created in the cluster."""
    service = f"kt-refused-{secrets.token_hex(2)}"
    image = push(
        docker_client, httpd_app(tmp_path / "app", "refused\n"),
        f"{cluster.registry}/slipway-kt/{service}:1",
    )  # fmt: skip
    out = _replace(slipway, tmp_path, service, image.ref, deadline="soon")
    row = _row(slipway, service)
    assert row["status"] == "Failed", row
    assert row["reason"] == "InvalidSpec", row
    assert "validation.webhook.serving.knative.dev" in row["message"], row
    assert "progress-deadline" in row["message"], row
    assert "InvalidSpec" in out, out
    assert kube_reader.knative("services", service) is None
