"""The Knative `serving.knative.dev/v1` Service Slipway accepts, from YAML in to manifest out.

`parse_service` is the boundary: text or a loaded mapping in, a validated `KService` or one
`InvalidSpec` out. `to_manifest` and `template_hash` are pure renderings of the model; the
reconciler makes a new revision only when `template_hash` changes, as Knative does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from pipeline.core.annotations import (
    CLUSTER_LOCAL,
    MAX_SCALE_ANNOTATION,
    MIN_SCALE_ANNOTATION,
    SERVING_API_VERSION,
    VISIBILITY_LABEL,
    is_cluster_local,
)
from pipeline.core.errors import InvalidSpec
from pipeline.spec import yamlload
from pipeline.spec.autoscaling import AutoscalingAnnotations
from pipeline.spec.base import SpecModel, SpecProblem, not_yet, show, to_invalid_spec
from pipeline.spec.containers import Container
from pipeline.spec.metadata import ServiceMeta, TemplateMeta
from pipeline.spec.traffic import (
    TRAFFIC_PATH,
    TrafficTarget,
    check_ownership,
    default_traffic,
    normalise_traffic,
    revision_pattern,
)

API_VERSION = SERVING_API_VERSION
KIND = "Service"
DEFAULT_CONTAINER_CONCURRENCY = 0
DEFAULT_TIMEOUT_SECONDS = 300


class RevisionSpec(SpecModel):
    unsupported_fields: ClassVar[Mapping[str, str]] = {
        **not_yet(
            "affinity",
            "automountServiceAccountToken",
            "dnsConfig",
            "dnsPolicy",
            "hostAliases",
            "hostIPC",
            "hostNetwork",
            "hostPID",
            "idleTimeoutSeconds",
            "initContainers",
            "nodeSelector",
            "priorityClassName",
            "responseStartTimeoutSeconds",
            "runtimeClassName",
            "schedulerName",
            "securityContext",
            "shareProcessNamespace",
            "tolerations",
            "topologySpreadConstraints",
        ),
        **not_yet("volumes", hint="revisions are stateless; keep state in a database"),
        **not_yet("imagePullSecrets", hint="configure registry credentials on the platform"),
        **not_yet(
            "serviceAccountName", hint="a revision's identity is its service (metadata server)"
        ),
    }

    container_concurrency: int = Field(
        default=DEFAULT_CONTAINER_CONCURRENCY, alias="containerConcurrency", ge=0, le=1000
    )
    timeout_seconds: int = Field(
        default=DEFAULT_TIMEOUT_SECONDS, alias="timeoutSeconds", ge=1, le=3600
    )
    containers: list[Container]
    # Knative's webhook writes `enableServiceLinks: false`; accepted, never rendered.
    enable_service_links: bool | None = Field(
        default=None, alias="enableServiceLinks", exclude=True
    )

    @field_validator("containers")
    @classmethod
    def _exactly_one(cls, containers: list[Container]) -> list[Container]:
        if not containers:
            raise SpecProblem("one container is required")
        if len(containers) > 1:
            raise SpecProblem(
                f"exactly one container is supported, got {len(containers)}: "
                "multi-container revisions (sidecars) are not supported by Slipway yet"
            )
        return containers

    @field_validator("enable_service_links")
    @classmethod
    def _no_service_links(cls, value: bool | None) -> bool | None:
        if value:
            raise SpecProblem("service links are not supported by Slipway yet; remove it")
        return value

    @property
    def container(self) -> Container:
        return self.containers[0]


class RevisionTemplate(SpecModel):
    metadata: TemplateMeta = Field(default_factory=TemplateMeta)
    spec: RevisionSpec

    @field_validator("metadata", mode="before")
    @classmethod
    def _null_metadata(cls, value: Any) -> Any:
        # `metadata:` with every line under it commented out is YAML null: no metadata.
        return {} if value is None else value

    @property
    def autoscaling(self) -> AutoscalingAnnotations:
        return self.metadata.autoscaling


class ServiceSpec(SpecModel):
    template: RevisionTemplate
    traffic: list[TrafficTarget] = Field(default_factory=default_traffic, validate_default=True)

    @field_validator("traffic")
    @classmethod
    def _check_traffic(cls, traffic: list[TrafficTarget]) -> list[TrafficTarget]:
        return normalise_traffic(traffic)


class KService(SpecModel):
    """A Knative Service as Slipway runs it; build one with `parse_service`."""

    ignored_fields = frozenset({"status"})

    api_version: Literal["serving.knative.dev/v1"] = Field(alias="apiVersion")
    kind: Literal["Service"]
    metadata: ServiceMeta
    spec: ServiceSpec

    @classmethod
    def _precheck(cls, data: dict[Any, Any]) -> None:
        kind, api_version = data.get("kind"), data.get("apiVersion")
        if kind is None or api_version is None:
            raise SpecProblem(
                f"required field is missing; a Knative Service has apiVersion: {API_VERSION} "
                f"and kind: {KIND}",
                path="kind" if kind is None else "apiVersion",
            )
        if kind != KIND:
            described = f"{show(kind)} ({api_version})"
            raise SpecProblem(
                f"expected {KIND!r}, got {described}: Slipway deploys Knative "
                f"{API_VERSION} Services",
                path="kind",
            )
        if api_version != API_VERSION:
            why = (
                "this is a Kubernetes core Service, not a Knative one"
                if api_version == "v1"
                else "Slipway supports Knative Serving's v1 API only"
            )
            raise SpecProblem(
                f"expected {API_VERSION!r}, got {show(api_version)}: {why}", path="apiVersion"
            )

    @model_validator(mode="after")
    def _belongs_to_service(self) -> KService:
        revision = self.spec.template.metadata.name
        if revision is not None and not revision_pattern(self.name).fullmatch(revision):
            raise SpecProblem(
                f"revision name {revision!r} does not fit service {self.name!r}: use "
                f"'{self.name}-00001' style (a number of 5 or more digits), or omit it and "
                "Slipway numbers revisions itself",
                path="spec.template.metadata.name",
            )
        try:
            check_ownership(self.name, self.spec.traffic)
        except SpecProblem as problem:
            raise SpecProblem(problem.message, path=TRAFFIC_PATH + problem.path) from None
        return self

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def template(self) -> RevisionTemplate:
        return self.spec.template

    @property
    def container(self) -> Container:
        return self.spec.template.spec.container

    @property
    def traffic(self) -> list[TrafficTarget]:
        return self.spec.traffic

    @property
    def is_cluster_local(self) -> bool:
        return is_cluster_local(self.metadata.labels)

    def with_image(self, image: str) -> KService:
        """The same service running `image` (what the deploy path does after a build)."""
        manifest = self.to_manifest()
        manifest["spec"]["template"]["spec"]["containers"][0]["image"] = image
        return parse_service(manifest)

    def to_manifest(self) -> dict[str, Any]:
        """A Knative Service manifest: camelCase keys, no nulls, no empty maps or lists."""
        manifest: dict[str, Any] = _prune(
            self.model_dump(mode="json", by_alias=True, exclude_none=True)
        )
        return manifest


def parse_service(source: str | bytes | dict[str, Any], *, require_image: bool = True) -> KService:
    """Parse a Knative Service from YAML/JSON text or a loaded mapping; raise InvalidSpec."""
    document = _load(source) if isinstance(source, str | bytes) else source
    if not isinstance(document, dict):
        raise InvalidSpec(
            "expected a Knative Service: a mapping with apiVersion, kind, metadata and spec; "
            f"got {show(document)}"
        )
    try:
        return KService.model_validate(document, context={"require_image": require_image})
    except ValidationError as exc:
        raise to_invalid_spec(exc) from None


def _load(source: str | bytes) -> object:
    if isinstance(source, bytes):
        try:
            source = source.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidSpec(
                f"not UTF-8 text (byte {exc.start}); save the file as UTF-8"
            ) from None
    try:
        documents = [doc for doc in yamlload.load_all(source) if doc is not None]
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidSpec(f"not valid YAML{where}: {problem}") from None
    if not documents:
        raise InvalidSpec("the document is empty; expected a Knative Service")
    if len(documents) > 1:
        raise InvalidSpec(
            f"expected one Knative Service, found {len(documents)} YAML documents; "
            "put each service in its own file"
        )
    return documents[0]


def template_hash(template: RevisionTemplate) -> str:
    """sha256 of the template as rendered, minus its name: equal templates, equal revisions."""
    dumped = template.model_dump(mode="json", by_alias=True, exclude_none=True)
    dumped["metadata"].pop("name", None)
    rendered = _prune(dumped)
    canonical = json.dumps(rendered, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def default_service(
    name: str,
    *,
    image: str | None = None,
    env: dict[str, str] | None = None,
    port: int | None = None,
    container_concurrency: int | None = None,
    timeout_seconds: int | None = None,
    min_scale: int | None = None,
    max_scale: int | None = None,
    cluster_local: bool = False,
) -> KService:
    """The service `slipway deploy <name> --source .` creates when no YAML is given."""
    container: dict[str, Any] = {"image": image}
    if env:
        container["env"] = [{"name": key, "value": value} for key, value in env.items()]
    if port is not None:
        container["ports"] = [{"containerPort": port}]
    annotations = {
        key: str(value)
        for key, value in ((MIN_SCALE_ANNOTATION, min_scale), (MAX_SCALE_ANNOTATION, max_scale))
        if value is not None
    }
    revision_spec: dict[str, Any] = {"containers": [container]}
    if container_concurrency is not None:
        revision_spec["containerConcurrency"] = container_concurrency
    if timeout_seconds is not None:
        revision_spec["timeoutSeconds"] = timeout_seconds
    document = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "labels": {VISIBILITY_LABEL: CLUSTER_LOCAL} if cluster_local else {},
        },
        "spec": {"template": {"metadata": {"annotations": annotations}, "spec": revision_spec}},
    }
    return parse_service(document, require_image=False)


def _prune(value: Any) -> Any:
    if isinstance(value, dict):
        pruned = {key: _prune(item) for key, item in value.items()}
        return {key: item for key, item in pruned.items() if item not in ({}, [], None)}
    if isinstance(value, list):
        return [_prune(item) for item in value]
    return value
