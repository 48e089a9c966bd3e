"""The Service document and its metadata: what parses, the document-level refusals (YAML,
kind, apiVersion, names, visibility), every problem at once, the default service and
the template hash.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from pipeline.core.errors import InvalidSpec
from pipeline.spec import (
    AutoscalingAnnotations,
    KService,
    cpu_millicores,
    default_service,
    memory_bytes,
    parse_service,
    template_hash,
)
from tests.unit.specdocs import (
    C0,
    CLUSTER_LOCAL,
    DELETE,
    FULL,
    MINIMAL,
    PASTED,
    VALID,
    assert_refused_at_its_path,
    edit,
)

METADATA_REFUSED = [
    pytest.param(
        edit(("metadata.name", "Hello_World")),
        "metadata.name: invalid service name 'Hello_World'",
        id="bad-name",
    ),
    pytest.param(
        edit(("metadata.name", "a" * 48)),
        "metadata.name: invalid service name",
        id="name-too-long",
    ),
    pytest.param(
        edit(("metadata.name", DELETE)),
        "metadata.name: required field is missing",
        id="name-missing",
    ),
    pytest.param(
        edit(("metadata.namespace", "prod")),
        "metadata.namespace: namespaces are not supported by Slipway yet",
        id="other-namespace",
    ),
    pytest.param(
        edit(("kind", "Deployment"), ("apiVersion", "apps/v1")),
        "kind: expected 'Service', got 'Deployment' (apps/v1)",
        id="kind-deployment",
    ),
    pytest.param(
        edit(("apiVersion", "serving.knative.dev/v1alpha1")),
        "apiVersion: expected 'serving.knative.dev/v1', got 'serving.knative.dev/v1alpha1'",
        id="apiversion-v1alpha1",
    ),
    pytest.param(
        edit(("apiVersion", "v1")),
        "this is a Kubernetes core Service, not a Knative one",
        id="core-service",
    ),
    pytest.param("- just\n- a list\n", "got a list", id="yaml-list"),
    pytest.param("hello", "got 'hello'", id="yaml-scalar"),
    pytest.param("", "the document is empty", id="empty"),
    pytest.param("a: [1,\n", "not valid YAML at line", id="broken-yaml"),
    pytest.param(MINIMAL + "---\n" + MINIMAL, "found 2 YAML documents", id="two-documents"),
    pytest.param(
        edit(("spec.template.metadata.name", "hello-v2")),
        "spec.template.metadata.name: revision name 'hello-v2' does not fit service 'hello'",
        id="template-name-not-numbered",
    ),
    pytest.param(
        edit(("spec.template.metadata.name", "world-00001")),
        "spec.template.metadata.name: revision name 'world-00001' does not fit",
        id="template-name-other-service",
    ),
    pytest.param(
        edit(("metadata.labels", {"networking.knative.dev/visibility": "public"})),
        "metadata.labels.networking.knative.dev/visibility: expected 'cluster-local'",
        id="visibility-value",
    ),
    pytest.param(
        edit(("spec.template", ["not", "a", "mapping"])),
        "spec.template: expected a mapping, got a list",
        id="template-not-mapping",
    ),
    pytest.param(
        edit(("spec", DELETE)),
        "spec: required field is missing",
        id="spec-missing",
    ),
]


@pytest.mark.parametrize("source", VALID)
def test_valid_services_parse(source: str | bytes | dict[str, Any]) -> None:
    service = parse_service(source)
    assert isinstance(service, KService)
    assert service.container.image


def test_minimal_service_takes_knative_defaults() -> None:
    service = parse_service(MINIMAL)
    assert service.name == "hello"
    assert service.template.spec.container_concurrency == 0
    assert service.template.spec.timeout_seconds == 300
    assert service.container.port == 8080
    assert [t.model_dump(by_alias=True, exclude_none=True) for t in service.traffic] == [
        {"latestRevision": True, "percent": 100}
    ]
    assert service.template.autoscaling == AutoscalingAnnotations()
    assert not service.is_cluster_local


def test_full_service_reads_every_field() -> None:
    service = parse_service(FULL)
    container = service.container
    assert service.template.metadata.name == "hello-api-00003"
    assert (container.port, container.http2) == (9000, True)
    assert container.env_map == {"TARGET": "World", "EMPTY": ""}
    assert container.command == ["/app/server"]
    assert container.working_dir == "/app"
    assert container.resources is not None
    assert cpu_millicores(container.resources.requests["cpu"]) == 250
    assert memory_bytes(container.resources.limits["memory"]) == 512 * 2**20
    assert container.readiness_probe is not None
    assert container.readiness_probe.port == 9000
    assert service.template.autoscaling == AutoscalingAnnotations(
        metric="rps",
        min_scale=1,
        max_scale=10,
        initial_scale=2,
        target=50.0,
        target_utilization_percentage=80.0,
        window_seconds=90.0,
        scale_down_delay_seconds=300.0,
    )
    assert service.template.metadata.annotations["example.com/note"] == "kept as is"
    assert [(t.tag, t.revision_name, t.latest_revision, t.percent) for t in service.traffic] == [
        (None, None, True, 80),
        ("previous", "hello-api-00002", False, 20),
    ]


def test_pasted_kubectl_output_drops_what_the_server_wrote() -> None:
    manifest = parse_service(PASTED).to_manifest()
    assert "status" not in manifest
    assert manifest["metadata"] == {"name": "hello", "namespace": "default"}
    assert manifest["spec"]["template"] == {
        "spec": {
            "containerConcurrency": 0,
            "timeoutSeconds": 300,
            "containers": [
                {
                    "name": "user-container",
                    "image": "ghcr.io/knative/helloworld-go:latest",
                    "env": [{"name": "TARGET", "value": "World"}],
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "readinessProbe": {"tcpSocket": {"port": 0}, "successThreshold": 1},
                }
            ],
        }
    }


def test_cluster_local_label_is_kept() -> None:
    service = parse_service(CLUSTER_LOCAL)
    assert service.is_cluster_local
    labels = service.to_manifest()["metadata"]["labels"]
    assert labels == {"networking.knative.dev/visibility": "cluster-local"}


def test_image_may_be_absent_when_the_platform_builds_it() -> None:
    document = edit((f"{C0}.image", DELETE))
    service = parse_service(document, require_image=False)
    assert service.container.image is None
    assert "image" not in service.to_manifest()["spec"]["template"]["spec"]["containers"][0]


def test_with_image_pins_the_built_image() -> None:
    built = default_service("hello").with_image("registry.localhost:5000/hello@sha256:" + "a" * 64)
    assert built.container.image == "registry.localhost:5000/hello@sha256:" + "a" * 64


# --- invalid input ---------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "expected"), METADATA_REFUSED)
def test_documents_refused_at_their_path(source: str | dict[str, Any], expected: str) -> None:
    assert_refused_at_its_path(source, expected)


def test_every_problem_is_reported_one_per_line() -> None:
    document = edit(
        ("spec.template.spec.containerConcurrency", 5000),
        ("spec.template.spec.timeoutSeconds", 0),
    )
    with pytest.raises(InvalidSpec) as caught:
        parse_service(document)
    assert caught.value.path == "spec.template.spec.containerConcurrency"
    assert str(caught.value).splitlines() == [
        "spec.template.spec.containerConcurrency: must be at most 1000, got 5000",
        "spec.template.spec.timeoutSeconds: must be at least 1, got 0",
    ]


def test_unknown_field_without_a_close_match_lists_the_fields() -> None:
    with pytest.raises(
        InvalidSpec,
        match=r"spec\.zzz: unknown field; expected one of: "
        r"template, traffic",
    ):
        parse_service(edit(("spec.zzz", 1)))


# --- default service -------------------------------------------------------------------------


def test_default_service() -> None:
    service = default_service(
        "hello",
        env={"TARGET": "World"},
        port=9000,
        container_concurrency=10,
        timeout_seconds=60,
        min_scale=1,
        max_scale=3,
        cluster_local=True,
    )
    assert service.container.image is None
    assert service.container.env_map == {"TARGET": "World"}
    assert service.container.port == 9000
    assert service.template.spec.container_concurrency == 10
    assert (service.template.autoscaling.min_scale, service.template.autoscaling.max_scale) == (
        1,
        3,
    )
    assert service.is_cluster_local


def test_default_service_refuses_bad_name() -> None:
    with pytest.raises(InvalidSpec, match=r"^metadata\.name: invalid service name"):
        default_service("Hello")


# --- template hash ---------------------------------------------------------------------------

REORDERED = """
kind: Service
apiVersion: serving.knative.dev/v1
spec:
  template:
    spec:
      containers:
        - ports: [{containerPort: 9000, name: h2c}]
          env: [{value: World, name: TARGET}, {name: EMPTY}]
          image: hello-api@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
          resources:
            requests: {memory: 256Mi, cpu: 250m}
            limits: {memory: 512Mi, cpu: "1"}
          workingDir: /app
          args: [--verbose]
          command: [/app/server]
          name: app
          readinessProbe:
            successThreshold: 1
            failureThreshold: 3
            timeoutSeconds: 2
            periodSeconds: 5
            initialDelaySeconds: 1
            httpGet: {port: 9000, path: /healthz}
      timeoutSeconds: 120
      containerConcurrency: 20
    metadata:
      annotations:
        example.com/note: kept as is
        autoscaling.knative.dev/scale-down-delay: 5m
        autoscaling.knative.dev/window: 1m30s
        autoscaling.knative.dev/target-utilization-percentage: "80"
        autoscaling.knative.dev/target: "50"
        autoscaling.knative.dev/initial-scale: "2"
        autoscaling.knative.dev/max-scale: "10"
        autoscaling.knative.dev/min-scale: "1"
        autoscaling.knative.dev/metric: rps
        autoscaling.knative.dev/class: kpa.autoscaling.knative.dev
      labels: {tier: web}
metadata:
  name: hello-api
"""


def _hash(document: str | dict[str, Any]) -> str:
    return template_hash(parse_service(document).template)


def test_template_hash_ignores_key_order() -> None:
    assert _hash(REORDERED) == _hash(FULL)


def test_template_hash_is_a_sha256_hex_digest() -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", _hash(MINIMAL))


@pytest.mark.parametrize(
    ("change", "same"),
    [
        pytest.param((f"{C0}.image", "registry.localhost:5000/hello:2.0"), False, id="image"),
        pytest.param((f"{C0}.env", [{"name": "TARGET", "value": "Moon"}]), False, id="env"),
        pytest.param(('spec.template.metadata.annotations["a.b/c"]', "d"), False, id="annotation"),
        pytest.param(("spec.template.spec.timeoutSeconds", 60), False, id="timeout"),
        pytest.param(("spec.template.spec.timeoutSeconds", 300), True, id="explicit-default"),
        pytest.param(("spec.template.metadata.name", "hello-00007"), True, id="template-name"),
        pytest.param(
            ("spec.traffic", [{"revisionName": "hello-00001", "percent": 100, "tag": "v1"}]),
            True,
            id="traffic",
        ),
        pytest.param(("metadata.labels", {"team": "a"}), True, id="service-labels"),
    ],
)
def test_template_hash_changes_only_with_the_template(
    change: tuple[str, object], same: bool
) -> None:
    assert (_hash(edit(change)) == _hash(MINIMAL)) is same
