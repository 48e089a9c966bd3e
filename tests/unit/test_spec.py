"""The Knative Service subset: what parses, what is refused (and where), what renders back.

Rendered manifests are checked against Knative's own CRD schema (../shared/fixtures/knative-crds),
closed with `additionalProperties: false` as the API server's pruning would make it.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import jsonschema
import pytest
import yaml

from pipeline.core.errors import InvalidSpec
from pipeline.spec import (
    AutoscalingAnnotations,
    Container,
    ContainerPort,
    EnvVar,
    HTTPGetAction,
    KService,
    Probe,
    ResourceRequirements,
    RevisionSpec,
    TCPSocketAction,
    TemplateMeta,
    TrafficTarget,
    cpu_millicores,
    default_service,
    memory_bytes,
    parse_duration,
    parse_service,
    template_hash,
    validate_traffic,
)
from pipeline.spec.base import SpecModel
from tests.unit.kubeschemas import closed, shared_fixtures

MINIMAL = """
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
spec:
  template:
    spec:
      containers:
        - image: registry.localhost:5000/hello:1.0
"""

FULL = """
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello-api
  namespace: default
  labels:
    app: hello
  annotations:
    example.com/owner: team-a
spec:
  template:
    metadata:
      name: hello-api-00003
      labels:
        tier: web
      annotations:
        autoscaling.knative.dev/class: kpa.autoscaling.knative.dev
        autoscaling.knative.dev/metric: rps
        autoscaling.knative.dev/min-scale: "1"
        autoscaling.knative.dev/max-scale: "10"
        autoscaling.knative.dev/initial-scale: "2"
        autoscaling.knative.dev/target: "50"
        autoscaling.knative.dev/target-utilization-percentage: "80"
        autoscaling.knative.dev/window: 1m30s
        autoscaling.knative.dev/scale-down-delay: 5m
        example.com/note: kept as is
    spec:
      containerConcurrency: 20
      timeoutSeconds: 120
      containers:
        - name: app
          image: hello-api@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
          command: [/app/server]
          args: [--verbose]
          workingDir: /app
          env:
            - name: TARGET
              value: World
            - name: EMPTY
          ports:
            - name: h2c
              containerPort: 9000
          resources:
            limits: {cpu: "1", memory: 512Mi}
            requests: {cpu: 250m, memory: 256Mi}
          readinessProbe:
            httpGet: {path: /healthz, port: 9000}
            initialDelaySeconds: 1
            periodSeconds: 5
            timeoutSeconds: 2
            failureThreshold: 3
            successThreshold: 1
  traffic:
    - latestRevision: true
      percent: 80
    - revisionName: hello-api-00002
      percent: 20
      tag: previous
"""

# `kubectl get ksvc hello -o yaml`, as Knative's webhook and controller leave it.
PASTED = """
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  annotations:
    serving.knative.dev/creator: kubernetes-admin
    serving.knative.dev/lastModifier: kubernetes-admin
  creationTimestamp: "2024-03-01T10:00:00Z"
  generation: 1
  name: hello
  namespace: default
  resourceVersion: "1234"
  uid: 2d2b2a3c-7f0e-4b1f-9d59-0c6a1d1e5f00
spec:
  template:
    metadata:
      creationTimestamp: null
    spec:
      containerConcurrency: 0
      containers:
      - env:
        - name: TARGET
          value: World
        image: ghcr.io/knative/helloworld-go:latest
        name: user-container
        ports:
        - containerPort: 8080
          protocol: TCP
        readinessProbe:
          successThreshold: 1
          tcpSocket:
            port: 0
        resources: {}
      enableServiceLinks: false
      timeoutSeconds: 300
  traffic:
  - latestRevision: true
    percent: 100
status:
  address:
    url: http://hello.default.svc.cluster.local
  conditions:
  - lastTransitionTime: "2024-03-01T10:00:05Z"
    status: "True"
    type: Ready
  latestCreatedRevisionName: hello-00001
  latestReadyRevisionName: hello-00001
  observedGeneration: 1
  traffic:
  - latestRevision: true
    percent: 100
    revisionName: hello-00001
  url: http://hello.default.example.com
"""

SPLIT = """
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: shop
spec:
  template:
    spec:
      containers:
        - image: registry.localhost:5000/shop:2
  traffic:
    - tag: current
      revisionName: shop-00001
      percent: 50
    - tag: candidate
      revisionName: shop-00002
      percent: 50
    - tag: latest
      latestRevision: true
      percent: 0
    - tag: commit-abc1234
      revisionName: shop-00002
"""

CLUSTER_LOCAL = """
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: backend
  labels:
    networking.knative.dev/visibility: cluster-local
spec:
  template:
    spec:
      containers:
        - image: backend
"""

JSON_TEXT = json.dumps(yaml.safe_load(MINIMAL))

VALID = [
    pytest.param(MINIMAL, id="minimal"),
    pytest.param(FULL, id="full-featured"),
    pytest.param(PASTED, id="kubectl-get-ksvc-with-status"),
    pytest.param(SPLIT, id="traffic-split-with-tags"),
    pytest.param(CLUSTER_LOCAL, id="cluster-local"),
    pytest.param(JSON_TEXT, id="json-text"),
    pytest.param(MINIMAL.encode(), id="bytes"),
    pytest.param(yaml.safe_load(MINIMAL), id="loaded-dict"),
]


# --- editing a base document for the failure table -----------------------------------------

DELETE = object()
_TOKEN = re.compile(r'\.?([A-Za-z_][\w]*)|\[(\d+)\]|\["([^"]+)"\]')


def _steps(path: str) -> list[str | int]:
    steps: list[str | int] = []
    for name, index, quoted in _TOKEN.findall(path):
        steps.append(int(index) if index else (name or quoted))
    return steps


def edit(*changes: tuple[str, object], base: str = MINIMAL) -> dict[str, Any]:
    """MINIMAL with values set (or DELETEd) at paths like `spec.traffic[0]["a/b"]`."""
    document: dict[str, Any] = yaml.safe_load(base)
    for path, value in changes:
        *parents, last = _steps(path)
        node: Any = document
        for step in parents:
            if isinstance(step, str) and step not in node:
                node[step] = {}
            node = node[step]
        if value is DELETE:
            del node[last]
        elif isinstance(node, list) and last == len(node):
            node.append(value)
        else:
            node[last] = value
    return document


C0 = "spec.template.spec.containers[0]"
SCALE = 'spec.template.metadata.annotations["autoscaling.knative.dev/'
SCALE_PATH = "spec.template.metadata.annotations.autoscaling.knative.dev/"

INVALID = [
    pytest.param(
        edit((f"{C0}.imagee", "x"), (f"{C0}.image", DELETE)),
        f"{C0}.imagee: unknown field; did you mean 'image'?",
        id="misspelled-field",
    ),
    pytest.param(
        edit(("spec.template.spec.contianers", [])),
        "spec.template.spec.contianers: unknown field; did you mean 'containers'?",
        id="misspelled-field-in-spec",
    ),
    pytest.param(
        edit(("spec.template.spec.volumes", [])),
        "spec.template.spec.volumes: not supported by Slipway yet",
        id="unsupported-volumes",
    ),
    pytest.param(
        edit(("spec.template.spec.serviceAccountName", "robot")),
        "spec.template.spec.serviceAccountName: not supported by Slipway yet",
        id="unsupported-service-account",
    ),
    pytest.param(
        edit((f"{C0}.livenessProbe", {})),
        f"{C0}.livenessProbe: not supported by Slipway yet",
        id="unsupported-liveness-probe",
    ),
    pytest.param(
        edit(("spec.template.spec.containers[1]", {"image": "sidecar"})),
        "spec.template.spec.containers: exactly one container is supported, got 2",
        id="two-containers",
    ),
    pytest.param(
        edit(("spec.template.spec.containers", [])),
        "spec.template.spec.containers: one container is required",
        id="no-container",
    ),
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
        edit(("spec.traffic", [{"latestRevision": True, "percent": 90}])),
        "spec.traffic: traffic percents sum to 90, want 100",
        id="percents-sum-90",
    ),
    pytest.param(
        edit(
            (
                "spec.traffic",
                [
                    {"latestRevision": True, "percent": 50, "tag": "blue"},
                    {"revisionName": "hello-00001", "percent": 50, "tag": "blue"},
                ],
            )
        ),
        "spec.traffic[1].tag: duplicate tag 'blue'",
        id="duplicate-tag",
    ),
    pytest.param(
        edit(("spec.traffic", [{"latestRevision": True, "percent": 100, "tag": "Bad_Tag"}])),
        "spec.traffic[0].tag: invalid traffic tag 'Bad_Tag'",
        id="invalid-tag",
    ),
    pytest.param(
        edit(("spec.traffic", [{"revisionName": "world-00001", "percent": 100}])),
        "spec.traffic[0].revisionName: 'world-00001' is not a revision of service 'hello'",
        id="revision-of-another-service",
    ),
    pytest.param(
        edit(("spec.traffic", [{"revisionName": "hello-world-00001", "percent": 100}])),
        "spec.traffic[0].revisionName: 'hello-world-00001' is not a revision of service",
        id="revision-of-service-with-same-prefix",
    ),
    pytest.param(
        edit(
            (
                "spec.traffic",
                [{"revisionName": "hello-00001", "latestRevision": True, "percent": 100}],
            )
        ),
        "spec.traffic[0].latestRevision: set either revisionName or 'latestRevision: true'",
        id="revision-name-and-latest",
    ),
    pytest.param(
        edit(("spec.traffic", [{"latestRevision": False, "percent": 100}])),
        "spec.traffic[0]: needs a target",
        id="no-target",
    ),
    pytest.param(
        edit(("spec.traffic", [{"latestRevision": True, "percent": 101}])),
        "spec.traffic[0].percent: must be at most 100, got 101",
        id="percent-above-100",
    ),
    pytest.param(
        edit(("spec.traffic", [{"configurationName": "hello", "percent": 100}])),
        "spec.traffic[0].configurationName: a Service routes only to its own configuration",
        id="configuration-name",
    ),
    pytest.param(
        edit((f"{C0}.env", [{"name": "DB", "valueFrom": {"configMapKeyRef": {"key": "pw"}}}])),
        f"{C0}.env[0].valueFrom.configMapKeyRef: not supported by Slipway yet",
        id="env-value-from-config-map",
    ),
    pytest.param(
        edit((f"{C0}.env", [{"name": "DB", "valueFrom": {"secretKeyRef": {"key": "pw"}}}])),
        f"{C0}.env[0].valueFrom.secretKeyRef.name",
        id="env-secret-without-name",
    ),
    pytest.param(
        edit((f"{C0}.env", [{"name": "N", "value": 1}])),
        f"{C0}.env[0].value: expected a string, got the number 1; quote it",
        id="env-value-not-string",
    ),
    pytest.param(
        edit((f"{C0}.env", [{"name": "PORT", "value": "80"}])),
        f"{C0}.env[0].name: PORT is set by the platform",
        id="env-reserved",
    ),
    pytest.param(
        edit((f"{C0}.env", [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}])),
        f"{C0}.env[1].name: A is set twice",
        id="env-duplicate",
    ),
    pytest.param(
        edit((f'{SCALE}min-scale"]', "-1")),
        f"{SCALE_PATH}min-scale: expected a whole number of instances",
        id="min-scale-negative",
    ),
    pytest.param(
        edit((f'{SCALE}min-scale"]', 1)),
        f"{SCALE_PATH}min-scale: expected a string, got the number 1; quote it",
        id="annotation-not-string",
    ),
    pytest.param(
        edit((f'{SCALE}min-scale"]', "5"), (f'{SCALE}max-scale"]', "2")),
        f"{SCALE_PATH}max-scale: max-scale 2 is below min-scale 5",
        id="max-below-min",
    ),
    pytest.param(
        edit((f'{SCALE}target"]', "0")),
        f"{SCALE_PATH}target: must be at least 0.01",
        id="target-zero",
    ),
    pytest.param(
        edit((f'{SCALE}target-utilization-percentage"]', "150")),
        f"{SCALE_PATH}target-utilization-percentage: must be between 1 and 100",
        id="utilization-above-100",
    ),
    pytest.param(
        edit((f'{SCALE}metric"]', "latency")),
        f"{SCALE_PATH}metric: expected 'concurrency' or 'rps', got 'latency'",
        id="metric-unknown",
    ),
    pytest.param(
        edit((f'{SCALE}class"]', "hpa.autoscaling.knative.dev")),
        f"{SCALE_PATH}class: not supported by Slipway yet",
        id="class-hpa",
    ),
    pytest.param(
        edit((f'{SCALE}min_scale"]', "1")),
        f"{SCALE_PATH}min_scale: unknown autoscaling annotation; did you mean "
        "'autoscaling.knative.dev/min-scale'?",
        id="unknown-autoscaling-annotation",
    ),
    pytest.param(
        edit((f'{SCALE}target-burst-capacity"]', "200")),
        f"{SCALE_PATH}target-burst-capacity: not supported by Slipway yet",
        id="knative-only-autoscaling-annotation",
    ),
    pytest.param(
        edit((f'{SCALE}window"]', "5s")),
        f"{SCALE_PATH}window: must be between 6s and 1h, got '5s'",
        id="window-too-short",
    ),
    pytest.param(
        edit((f'{SCALE}window"]', "2h")),
        f"{SCALE_PATH}window: must be between 6s and 1h, got '2h'",
        id="window-too-long",
    ),
    pytest.param(
        edit((f'{SCALE}window"]', "sixty")),
        f"{SCALE_PATH}window: 'sixty' is not a duration",
        id="window-not-a-duration",
    ),
    pytest.param(
        edit(('metadata.annotations["autoscaling.knative.dev/min-scale"]', "1")),
        "metadata.annotations.autoscaling.knative.dev/min-scale: autoscaling annotations "
        "belong on the revision template",
        id="autoscaling-on-service-metadata",
    ),
    pytest.param(
        edit(("spec.template.spec.containerConcurrency", 1001)),
        "spec.template.spec.containerConcurrency: must be at most 1000, got 1001",
        id="container-concurrency-above-1000",
    ),
    pytest.param(
        edit(("spec.template.spec.containerConcurrency", -1)),
        "spec.template.spec.containerConcurrency: must be at least 0, got -1",
        id="container-concurrency-negative",
    ),
    pytest.param(
        edit(("spec.template.spec.containerConcurrency", "10")),
        "spec.template.spec.containerConcurrency: expected a whole number, got '10'",
        id="container-concurrency-string",
    ),
    pytest.param(
        edit(("spec.template.spec.timeoutSeconds", 0)),
        "spec.template.spec.timeoutSeconds: must be at least 1, got 0",
        id="timeout-0",
    ),
    pytest.param(
        edit(("spec.template.spec.timeoutSeconds", 3601)),
        "spec.template.spec.timeoutSeconds: must be at most 3600, got 3601",
        id="timeout-3601",
    ),
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
        edit((f"{C0}.ports", [{"containerPort": 8080}, {"containerPort": 9000}])),
        f"{C0}.ports: at most one port",
        id="two-ports",
    ),
    pytest.param(
        edit((f"{C0}.ports", [{"containerPort": 70000}])),
        f"{C0}.ports[0].containerPort: must be at most 65535, got 70000",
        id="port-out-of-range",
    ),
    pytest.param(
        edit((f"{C0}.ports", [{"containerPort": 8080, "name": "grpc"}])),
        f"{C0}.ports[0].name: expected 'h2c' (HTTP/2 without TLS) or 'http1'",
        id="port-name",
    ),
    pytest.param(
        edit((f"{C0}.ports", [{"containerPort": 8012}])),
        f"{C0}.ports[0].containerPort: port 8012 is reserved by Knative's queue-proxy",
        id="port-reserved",
    ),
    pytest.param(
        edit((f"{C0}.resources", {"limits": {"cpu": "lots"}})),
        f"{C0}.resources.limits.cpu: 'lots' is not a quantity",
        id="bad-quantity",
    ),
    pytest.param(
        edit((f"{C0}.resources", {"limits": {"nvidia.com/gpu": "1"}})),
        f"{C0}.resources.limits.nvidia.com/gpu: not supported by Slipway yet",
        id="gpu",
    ),
    pytest.param(
        edit((f"{C0}.resources", {"limits": {"memory": "1Gi"}, "requests": {"memory": "2Gi"}})),
        f"{C0}.resources.requests.memory: request '2Gi' is above the limit '1Gi'",
        id="request-above-limit",
    ),
    pytest.param(
        edit((f"{C0}.readinessProbe", {"exec": {"command": ["true"]}})),
        f"{C0}.readinessProbe.exec: not supported by Slipway yet; use httpGet or tcpSocket",
        id="probe-exec",
    ),
    pytest.param(
        edit((f"{C0}.readinessProbe", {"httpGet": {"path": "/", "port": 9000}})),
        f"{C0}.readinessProbe.httpGet.port: the probe must use the container's port 8080",
        id="probe-other-port",
    ),
    pytest.param(
        edit((f"{C0}.readinessProbe", {"httpGet": {"path": "/"}, "tcpSocket": {}})),
        f"{C0}.readinessProbe: set either httpGet or tcpSocket, not both",
        id="probe-two-actions",
    ),
    pytest.param(
        edit((f"{C0}.image", "Not An Image")),
        f"{C0}.image: 'Not An Image' is not an image reference",
        id="bad-image",
    ),
    pytest.param(
        edit((f"{C0}.image", DELETE)),
        f"{C0}.image: required field is missing",
        id="image-required",
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


# --- valid input -----------------------------------------------------------------------------


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


@pytest.mark.parametrize(("source", "expected"), INVALID)
def test_invalid_services_are_refused_at_their_path(
    source: str | dict[str, Any], expected: str
) -> None:
    with pytest.raises(InvalidSpec) as caught:
        parse_service(source)
    assert expected in str(caught.value)
    first_line = str(caught.value).splitlines()[0]
    assert first_line.startswith(caught.value.path)
    assert "pydantic" not in str(caught.value)
    assert "Input should" not in str(caught.value)


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


# --- traffic ---------------------------------------------------------------------------------


def test_validate_traffic_normalises_like_knative() -> None:
    targets = validate_traffic(
        "hello",
        [
            TrafficTarget.model_validate({"percent": 60}),
            TrafficTarget.to_revision("hello-00001", percent=40, tag="old"),
        ],
    )
    assert [(t.latest_revision, t.revision_name, t.percent, t.tag) for t in targets] == [
        (True, None, 60, None),
        (False, "hello-00001", 40, "old"),
    ]


def test_validate_traffic_defaults_to_all_latest() -> None:
    assert validate_traffic("hello", []) == [TrafficTarget.to_latest(percent=100)]


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        pytest.param(
            [TrafficTarget.to_latest(percent=90)],
            "spec.traffic: traffic percents sum to 90, want 100",
            id="sum",
        ),
        pytest.param(
            [TrafficTarget.to_revision("other-00001", percent=100)],
            "spec.traffic[0].revisionName: 'other-00001' is not a revision of service 'hello'",
            id="other-service",
        ),
        pytest.param(
            [
                TrafficTarget.to_latest(percent=100, tag="a"),
                TrafficTarget.to_revision("hello-00001", percent=0, tag="a"),
            ],
            "spec.traffic[1].tag: duplicate tag 'a'",
            id="duplicate-tag",
        ),
    ],
)
def test_validate_traffic_refuses(targets: list[TrafficTarget], expected: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        validate_traffic("hello", targets)
    assert expected in str(caught.value)


# --- autoscaling -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotations", "container_concurrency", "target"),
    [
        pytest.param({}, 0, 70.0, id="default-100-at-70-percent"),
        pytest.param({}, 10, 7.0, id="container-concurrency"),
        pytest.param({"autoscaling.knative.dev/target": "20"}, 10, 14.0, id="annotation"),
        pytest.param({"autoscaling.knative.dev/metric": "rps"}, 0, 140.0, id="rps-default"),
        pytest.param(
            {"autoscaling.knative.dev/target-utilization-percentage": "100"},
            0,
            100.0,
            id="full-utilization",
        ),
    ],
)
def test_target_per_instance(
    annotations: dict[str, str], container_concurrency: int, target: float
) -> None:
    settings = AutoscalingAnnotations.from_annotations(annotations)
    assert settings.target_per_instance(container_concurrency) == pytest.approx(target)


def test_autoscaling_from_annotations_raises_invalid_spec() -> None:
    with pytest.raises(InvalidSpec) as caught:
        AutoscalingAnnotations.from_annotations({"autoscaling.knative.dev/window": "1s"})
    assert caught.value.path == "metadata.annotations.autoscaling.knative.dev/window"


def test_max_scale_zero_means_unbounded() -> None:
    settings = AutoscalingAnnotations.from_annotations(
        {"autoscaling.knative.dev/min-scale": "3", "autoscaling.knative.dev/max-scale": "0"}
    )
    assert (settings.min_scale, settings.max_scale) == (3, 0)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("60s", 60.0, id="seconds"),
        pytest.param("1m", 60.0, id="minutes"),
        pytest.param("1h30m", 5400.0, id="compound"),
        pytest.param("1.5s", 1.5, id="fraction"),
        pytest.param("500ms", 0.5, id="millis"),
        pytest.param("0", 0.0, id="zero"),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "60", "1x", "s", "-1s", "1m 30s"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("cpu", "millicores"),
    [
        pytest.param("1", 1000, id="core"),
        pytest.param("250m", 250, id="milli"),
        pytest.param("0.5", 500, id="fraction"),
        pytest.param("1e-1", 100, id="exponent"),
    ],
)
def test_cpu_millicores(cpu: str, millicores: int) -> None:
    assert cpu_millicores(cpu) == millicores


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


# --- against Knative's CRD schema ------------------------------------------------------------


@pytest.fixture(scope="module")
def service_crd() -> dict[str, Any]:
    crd = yaml.safe_load((shared_fixtures() / "knative-crds" / "service.yaml").read_text())
    (v1,) = [version for version in crd["spec"]["versions"] if version["name"] == "v1"]
    return dict(v1["schema"]["openAPIV3Schema"])


@pytest.fixture(scope="module")
def closed_schema(service_crd: dict[str, Any]) -> dict[str, Any]:
    return dict(closed(service_crd))


ROUND_TRIP = [
    *VALID,
    pytest.param(default_service("hello").to_manifest(), id="default-service"),
]


@pytest.mark.parametrize("source", ROUND_TRIP)
def test_manifest_matches_knative_schema(
    source: str | bytes | dict[str, Any], closed_schema: dict[str, Any]
) -> None:
    manifest = parse_service(source, require_image=False).to_manifest()
    jsonschema.validate(manifest, closed_schema)
    reparsed = parse_service(copy.deepcopy(manifest), require_image=False)
    assert reparsed.to_manifest() == manifest


def test_closed_schema_catches_unknown_fields(closed_schema: dict[str, Any]) -> None:
    manifest = parse_service(MINIMAL).to_manifest()
    manifest["spec"]["template"]["spec"]["containers"][0]["imagee"] = "x"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(manifest, closed_schema)


def _at(schema: dict[str, Any], *path: str) -> dict[str, Any]:
    node = schema
    for step in path:
        node = node["items"] if step == "[]" else node["properties"][step]
    return node


MODELS_AND_SCHEMA_PATHS = [
    pytest.param(TemplateMeta, ("spec", "template", "metadata"), id="template-metadata"),
    pytest.param(RevisionSpec, ("spec", "template", "spec"), id="revision-spec"),
    pytest.param(Container, ("spec", "template", "spec", "containers", "[]"), id="container"),
    pytest.param(EnvVar, ("spec", "template", "spec", "containers", "[]", "env", "[]"), id="env"),
    pytest.param(
        ContainerPort, ("spec", "template", "spec", "containers", "[]", "ports", "[]"), id="port"
    ),
    pytest.param(
        ResourceRequirements,
        ("spec", "template", "spec", "containers", "[]", "resources"),
        id="resources",
    ),
    pytest.param(
        Probe, ("spec", "template", "spec", "containers", "[]", "readinessProbe"), id="probe"
    ),
    pytest.param(
        HTTPGetAction,
        ("spec", "template", "spec", "containers", "[]", "readinessProbe", "httpGet"),
        id="http-get",
    ),
    pytest.param(
        TCPSocketAction,
        ("spec", "template", "spec", "containers", "[]", "readinessProbe", "tcpSocket"),
        id="tcp-socket",
    ),
    pytest.param(TrafficTarget, ("spec", "traffic", "[]"), id="traffic"),
]


@pytest.mark.parametrize(("model", "path"), MODELS_AND_SCHEMA_PATHS)
def test_every_knative_field_is_accepted_or_refused_by_name(
    model: type[SpecModel], path: tuple[str, ...], service_crd: dict[str, Any]
) -> None:
    knative = set(_at(service_crd, *path)["properties"])
    accepted = {field.alias or name for name, field in model.model_fields.items()}
    assert accepted <= knative, "Slipway accepts fields Knative does not have"
    unnamed = knative - accepted - set(model.unsupported_fields) - model.ignored_fields
    assert not unnamed, "Knative fields Slipway would call 'unknown' instead of refusing by name"
