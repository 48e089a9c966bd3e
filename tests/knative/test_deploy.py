"""A service deployed by Slipway's Knative engine on the real cluster: Knative makes the revision
under Slipway's name, the pod runs with the queue-proxy, Slipway copies Knative's Ready condition;
then a second revision at 10% with a commit tag, the Route's tag URLs, and each revision answering
through its own Kubernetes Service (no ingress runs here: scripts/cluster.d/README.md)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import docker
import pytest

from tests.knative.conftest import (
    KnativeSlipway,
    Kube,
    PushedImage,
    eventually,
    get_text,
    httpd_app,
    push,
)

SHA7 = "abc1234"
TAG = f"commit-{SHA7}"


@dataclass(frozen=True)
class Deployed:
    service: str
    images: tuple[PushedImage, ...]
    bodies: tuple[str, ...]
    outputs: tuple[str, ...]  # what `slipway deploy` / `slipway traffic` printed


def _revision(kube: Kube, name: str) -> dict[str, Any]:
    rev = kube.knative("revisions", name)
    assert rev is not None, f"Knative has no revision {name}"
    return rev


def _ready(obj: dict[str, Any]) -> str:
    for c in (obj.get("status") or {}).get("conditions") or ():
        if c.get("type") == "Ready":
            return str(c.get("status"))
    return ""


@pytest.fixture(scope="module")
def hello(
    slipway: KnativeSlipway,
    docker_client: docker.DockerClient,
    busybox: str,
    tmp_path_factory: pytest.TempPathFactory,
    cluster: Any,
) -> Deployed:
    """Two revisions of one service: 00001 at 90%, 00002 at 10% with tag commit-abc1234."""
    service = f"kt-hello-{secrets.token_hex(2)}"
    root = tmp_path_factory.mktemp("hello")
    bodies = (f"one of {service}\n", f"two of {service}\n")
    images = tuple(
        push(
            docker_client,
            httpd_app(root / f"app{i}", body),
            f"{cluster.registry}/slipway-kt/{service}:{i + 1}",
        )
        for i, body in enumerate(bodies)
    )
    # min-instances 1: with no ingress nothing sends the revision traffic, and a revision at
    # zero has no pod behind its private Service.
    first = slipway.cli("deploy", service, "--image", images[0].ref, "--min-instances", "1")
    second = slipway.cli(
        "deploy", service, "--image", images[1].ref, "--no-traffic", "--tag", TAG,
        "--min-instances", "1",
    )  # fmt: skip
    split = slipway.cli(
        "traffic", service, "--to-revisions", f"{service}-00001=90,{service}-00002=10"
    )
    return Deployed(
        service=service,
        images=images,
        bodies=bodies,
        outputs=(first.stdout + first.stderr, second.stdout + second.stderr, split.stdout),
    )


def test_knative_creates_the_revision_under_slipways_name_pinned_by_digest(
    hello: Deployed, kube_reader: Kube
) -> None:
    for n, image in enumerate(hello.images, start=1):
        rev = _revision(kube_reader, f"{hello.service}-{n:05d}")
        labels = rev["metadata"]["labels"]
        assert labels["serving.knative.dev/service"] == hello.service
        assert labels["serving.knative.dev/configuration"] == hello.service
        container = rev["spec"]["containers"][0]
        assert container["image"] == image.pinned, container
        assert _ready(rev) == "True", rev.get("status")


def test_the_pod_runs_the_app_with_the_queue_proxy_sidecar(
    hello: Deployed, kube_reader: Kube
) -> None:
    rev = f"{hello.service}-00001"

    def running() -> list[Any]:
        return [p for p in kube_reader.pods(rev) if p.status.phase == "Running"]

    pod = eventually(f"a running pod of {rev}", running)[0]
    assert [c.name for c in pod.spec.containers] == ["user-container", "queue-proxy"]
    env = {e.name: e.value for e in pod.spec.containers[0].env or ()}
    assert env["K_REVISION"] == rev and env["K_SERVICE"] == hello.service
    assert all(s.ready for s in pod.status.container_statuses), pod.status.container_statuses


def test_slipway_marks_the_revisions_ready_from_knatives_condition(
    hello: Deployed, slipway: KnativeSlipway
) -> None:
    rows = {r["name"]: r for r in slipway.api_json(f"/v1/services/{hello.service}/revisions")}
    assert rows[f"{hello.service}-00001"]["status"] == "Ready", rows
    assert rows[f"{hello.service}-00002"]["status"] == "Ready", rows


def test_the_route_carries_the_split_and_the_commit_tag_url(
    hello: Deployed, kube_reader: Kube, namespace: str
) -> None:
    def split() -> list[dict[str, Any]]:
        route = kube_reader.knative("routes", hello.service) or {}
        traffic: list[dict[str, Any]] = (route.get("status") or {}).get("traffic") or []
        percents = sorted(int(t.get("percent") or 0) for t in traffic)
        return traffic if percents == [0, 10, 90] or percents == [10, 90] else []

    traffic = eventually("the Route's status showing 90/10", split)
    by_rev: dict[str, int] = {}
    for t in traffic:
        by_rev[t["revisionName"]] = by_rev.get(t["revisionName"], 0) + int(t.get("percent") or 0)
    assert by_rev == {f"{hello.service}-00001": 90, f"{hello.service}-00002": 10}, traffic
    tagged = [t for t in traffic if t.get("tag") == TAG]
    assert tagged and tagged[0]["revisionName"] == f"{hello.service}-00002", traffic
    # The config-network tag template `{{.Tag}}--{{.Name}}`, under Knative's domain template.
    assert tagged[0]["url"] == f"http://{TAG}--{hello.service}.{namespace}.example.localhost"


def test_slipway_prints_the_urls_knative_published(
    hello: Deployed, kube_reader: Kube, slipway: KnativeSlipway, namespace: str
) -> None:
    route = kube_reader.knative("routes", hello.service)
    assert route is not None
    service_url = route["status"]["url"]
    tag_url = f"http://{TAG}--{hello.service}.{namespace}.example.localhost"
    assert service_url == f"http://{hello.service}.{namespace}.example.localhost"

    def described() -> str:
        out = slipway.cli("services", "describe", hello.service).stdout
        return out if service_url in out and tag_url in out else ""

    eventually(
        "`slipway services describe` naming the service and tag URLs", described, timeout_s=30
    )
    # The deploy that made the tag printed its URL too (what a user reads after `deploy`).
    assert tag_url in hello.outputs[1], hello.outputs[1]


def test_each_revision_answers_through_its_private_service(
    hello: Deployed, kube_reader: Kube
) -> None:
    for n, body in enumerate(hello.bodies, start=1):
        rev = f"{hello.service}-{n:05d}"
        ip = kube_reader.cluster_ip(f"{rev}-private")
        assert get_text(f"http://{ip}/") == body, rev
