"""`metadata` of a Service and of its revision template: names, labels, annotations.

What the server writes into `kubectl get ksvc -o yaml` output (uid, resourceVersion, ...) is
accepted and dropped, so a pasted object round-trips; what a user could mean but Slipway does
not do is refused by name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field, field_validator

from pipeline.core.annotations import (
    AUTOSCALING_PREFIX,
    CLUSTER_LOCAL,
    CREATOR_ANNOTATION,
    LAST_MODIFIER_ANNOTATION,
    RETIRED_VISIBILITY_LABEL,
    VISIBILITY_LABEL,
)
from pipeline.core.errors import InvalidName
from pipeline.core.names import is_dns1035_label, validate_service_name
from pipeline.spec.autoscaling import (
    AutoscalingAnnotations,
    frozen_retention_seconds,
    parse_autoscaling,
)
from pipeline.spec.base import NOT_YET, SpecModel, SpecProblem, not_yet

NAMESPACE = "default"

SERVER_FIELDS = frozenset(
    {"creationTimestamp", "generation", "resourceVersion", "uid", "managedFields", "selfLink"}
)
SERVER_ANNOTATIONS = frozenset(
    {
        CREATOR_ANNOTATION,
        LAST_MODIFIER_ANNOTATION,
        "kubectl.kubernetes.io/last-applied-configuration",
    }
)

_NAME_PART = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_DNS_PART = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_KEY = re.compile(rf"^({_DNS_PART}(\.{_DNS_PART})*/)?{_NAME_PART}$")
_LABEL_VALUE = re.compile(rf"^({_NAME_PART})?$")


def _check_keys(mapping: dict[str, str], what: str) -> None:
    for key in mapping:
        prefix, _, name = key.rpartition("/")
        if not _KEY.fullmatch(key) or len(name) > 63 or len(prefix) > 253:
            raise SpecProblem(
                f"invalid {what} key {key!r}: use an optional DNS prefix and '/', then up to 63 "
                "letters, digits, '-', '_' or '.', e.g. 'example.com/team'",
                path=key,
            )


def _null_is_empty(value: Any) -> Any:
    """`annotations:` with nothing under it is YAML null; Kubernetes reads it as no map."""
    return {} if value is None else value


def _check_labels(labels: dict[str, str]) -> dict[str, str]:
    _check_keys(labels, "label")
    for key, value in labels.items():
        if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
            raise SpecProblem(
                f"invalid label value {value!r}: up to 63 letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit",
                path=key,
            )
    if RETIRED_VISIBILITY_LABEL in labels:
        raise SpecProblem(
            f"this label was retired by Knative; use {VISIBILITY_LABEL!r}",
            path=RETIRED_VISIBILITY_LABEL,
        )
    visibility = labels.get(VISIBILITY_LABEL)
    if visibility is not None and visibility != CLUSTER_LOCAL:
        raise SpecProblem(
            f"expected {CLUSTER_LOCAL!r} (remove the label for a public service), "
            f"got {visibility!r}",
            path=VISIBILITY_LABEL,
        )
    return labels


class ServiceMeta(SpecModel):
    """The Service's own metadata (Kubernetes ObjectMeta, the part Slipway uses)."""

    ignored_fields = SERVER_FIELDS
    unsupported_fields = not_yet(
        "generateName",
        "finalizers",
        "ownerReferences",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    )

    name: str
    # Slipway has one namespace; "default" is accepted so Knative YAML works unchanged.
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        try:
            return validate_service_name(name)
        except InvalidName as exc:
            raise SpecProblem(exc.message) from None

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, namespace: str | None) -> str | None:
        if namespace is not None and namespace != NAMESPACE:
            raise SpecProblem(
                f"namespaces are {NOT_YET}: omit it or use {NAMESPACE!r}, got {namespace!r}"
            )
        return namespace

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        return _check_labels(labels)

    @field_validator("labels", mode="before")
    @classmethod
    def _null_labels(cls, value: Any) -> Any:
        return _null_is_empty(value)

    @field_validator("annotations", mode="before")
    @classmethod
    def _drop_server_annotations(cls, value: Any) -> Any:
        value = _null_is_empty(value)
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if k not in SERVER_ANNOTATIONS}
        return value

    @field_validator("annotations")
    @classmethod
    def _check_annotations(cls, annotations: dict[str, str]) -> dict[str, str]:
        _check_keys(annotations, "annotation")
        for key in annotations:
            if key.startswith(AUTOSCALING_PREFIX):
                raise SpecProblem(
                    "autoscaling annotations belong on the revision template; "
                    "move it to spec.template.metadata.annotations",
                    path=key,
                )
        return annotations


class TemplateMeta(SpecModel):
    """Metadata of the revision template: what every revision made from it carries."""

    ignored_fields = frozenset({"creationTimestamp"})
    unsupported_fields: ClassVar[Mapping[str, str]] = {
        **not_yet("generateName", "finalizers"),
        "namespace": "a revision lives in its service's namespace; remove it",
    }

    # Checked against the service name by KService: `<service>-NNNNN`.
    name: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str | None) -> str | None:
        if name is not None and not is_dns1035_label(name):
            raise SpecProblem(f"invalid revision name {name!r}: use '<service>-00001' style")
        return name

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        return _check_labels(labels)

    @field_validator("labels", "annotations", mode="before")
    @classmethod
    def _null_maps(cls, value: Any) -> Any:
        return _null_is_empty(value)

    @field_validator("annotations")
    @classmethod
    def _check_annotations(cls, annotations: dict[str, str]) -> dict[str, str]:
        _check_keys(annotations, "annotation")
        parse_autoscaling(annotations)
        frozen_retention_seconds(annotations)
        return annotations

    @property
    def autoscaling(self) -> AutoscalingAnnotations:
        return parse_autoscaling(self.annotations)
