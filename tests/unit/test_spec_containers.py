"""The revision spec and its one container: env, ports, resources, probes, image,
concurrency and timeout; what is refused (and where), what is not supported yet.
"""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.spec import cpu_millicores
from tests.unit.specdocs import C0, DELETE, assert_refused_at_its_path, edit

CONTAINERS_REFUSED = [
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
]


@pytest.mark.parametrize(("source", "expected"), CONTAINERS_REFUSED)
def test_containers_refused_at_their_path(source: str | dict[str, Any], expected: str) -> None:
    assert_refused_at_its_path(source, expected)


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
