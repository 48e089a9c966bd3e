"""Knative's `DomainMapping` (`serving.knative.dev/v1beta1`): a custom host for a Service.

`slipway domains map shop.example.com --service shop` sends the document `manifest` makes; the
API takes the same YAML a Knative cluster does (`kubectl get domainmapping -o yaml` output
included: server-written fields are dropped). What Slipway cannot honour is refused by name:
`spec.tls` (Slipway brings its own certificates) and refs to anything but a Knative Service.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, ClassVar

import yaml
from pydantic import Field, ValidationError, field_validator

from pipeline.core.annotations import SERVING_API_VERSION, SERVING_GROUP
from pipeline.core.errors import InvalidName, InvalidSpec
from pipeline.core.names import validate_service_name
from pipeline.spec import yamlload
from pipeline.spec.base import SpecModel, SpecProblem, show, to_invalid_spec
from pipeline.spec.metadata import NAMESPACE, SERVER_FIELDS

DOMAIN_MAPPING_API_VERSION = f"{SERVING_GROUP}/v1beta1"
HOST_MAX = 253
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def validate_host(host: str) -> str:
    """A lowercase DNS name of at least two labels (no wildcard, no port, no trailing dot)."""
    labels = host.split(".")
    if (
        len(host) > HOST_MAX
        or len(labels) < 2
        or not all(len(label) <= 63 and _LABEL.match(label) for label in labels)
    ):
        raise InvalidName(
            f"invalid host {host!r}: a lowercase DNS name with at least two labels, each up to 63 "
            "letters, digits and '-' (no port, no wildcard), e.g. 'shop.example.com'"
        )
    return host


def _checked(field: str, check: Callable[[Any], Any]) -> Any:
    """A validator of `field` running `check`; an InvalidName it raises is said as a problem of
    that field."""

    def validate(cls: type, value: Any) -> Any:
        try:
            return check(value)
        except InvalidName as exc:
            raise SpecProblem(exc.message) from None

    return field_validator(field)(validate)


def _fixed(field: str, wanted: str, *, why: str) -> Any:
    def check(value: str) -> str:
        if value != wanted:
            raise SpecProblem(f"expected {wanted!r} ({why}), got {value!r}")
        return value

    return _checked(field, check)


def _one_namespace(namespace: str | None) -> str | None:
    if namespace is not None and namespace != NAMESPACE:
        raise SpecProblem(f"Slipway has one namespace: omit it or use {NAMESPACE!r}")
    return namespace


class MappingMeta(SpecModel):
    ignored_fields = SERVER_FIELDS | {"annotations", "labels"}

    name: str  # the host
    namespace: str | None = None

    _check_host = _checked("name", validate_host)
    _check_namespace = _checked("namespace", _one_namespace)


class MappingRef(SpecModel):
    unsupported_fields: ClassVar[dict[str, str]] = {
        "address": "a DomainMapping in Slipway points at a Service's URL, not at an address",
        "group": f"use apiVersion {SERVING_API_VERSION!r}",
    }

    kind: str
    name: str
    api_version: str = Field(default=SERVING_API_VERSION, alias="apiVersion")
    namespace: str | None = None

    _check_kind = _fixed("kind", "Service", why="Slipway maps domains to Knative Services only")
    _check_api_version = _fixed(
        "api_version", SERVING_API_VERSION, why="a Knative Service's apiVersion"
    )
    _check_service = _checked("name", validate_service_name)
    _check_namespace = _checked("namespace", _one_namespace)


class MappingSpec(SpecModel):
    unsupported_fields: ClassVar[dict[str, str]] = {
        "tls": "Slipway brings the certificate itself (ACME, or its local CA): remove spec.tls"
    }

    ref: MappingRef


class DomainMapping(SpecModel):
    ignored_fields = frozenset({"status"})

    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: MappingMeta
    spec: MappingSpec

    _check_api_version = _fixed(
        "api_version", DOMAIN_MAPPING_API_VERSION, why="Knative's DomainMapping"
    )
    _check_kind = _fixed("kind", "DomainMapping", why="this document maps a domain")

    @property
    def host(self) -> str:
        return self.metadata.name

    @property
    def service(self) -> str:
        return self.spec.ref.name


def manifest(*, host: str, service: str) -> dict[str, Any]:
    """The DomainMapping document for `host` -> `service` (what the CLI sends, what is shown)."""
    return {
        "apiVersion": DOMAIN_MAPPING_API_VERSION,
        "kind": "DomainMapping",
        "metadata": {"name": host},
        "spec": {"ref": {"apiVersion": SERVING_API_VERSION, "kind": "Service", "name": service}},
    }


def parse_domain_mapping(source: str | bytes | dict[str, Any]) -> DomainMapping:
    """A DomainMapping from YAML/JSON text or a loaded mapping; InvalidSpec naming the field."""
    document = _load(source) if isinstance(source, str | bytes) else source
    if not isinstance(document, dict):
        raise InvalidSpec(
            "expected a Knative DomainMapping: a mapping with apiVersion "
            f"{DOMAIN_MAPPING_API_VERSION!r}, kind, metadata.name (the host) and spec.ref; "
            f"got {show(document)}"
        )
    try:
        return DomainMapping.model_validate(document)
    except ValidationError as exc:
        raise to_invalid_spec(exc) from None


def _load(source: str | bytes) -> object:
    try:
        text = source.decode("utf-8-sig") if isinstance(source, bytes) else source
        documents = [d for d in yamlload.load_all(text) if d is not None]
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InvalidSpec(f"not valid YAML: {exc}") from None
    if len(documents) != 1:
        raise InvalidSpec(f"expected one DomainMapping document, found {len(documents)}")
    return documents[0]
