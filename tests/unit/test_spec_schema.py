"""Rendered manifests against Knative's own CRD schema (../shared/fixtures/knative-crds),
closed with `additionalProperties: false` as the API server's pruning would make it;
every Knative field accepted or refused by name.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest
import yaml

from pipeline.spec import (
    Container,
    ContainerPort,
    EnvVar,
    HTTPGetAction,
    Probe,
    ResourceRequirements,
    RevisionSpec,
    TCPSocketAction,
    TemplateMeta,
    TrafficTarget,
    default_service,
    parse_service,
)
from pipeline.spec.base import SpecModel
from tests.unit.kubeschemas import closed, shared_fixtures
from tests.unit.specdocs import MINIMAL, VALID


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
