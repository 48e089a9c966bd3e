"""Schemas rendered Kubernetes objects are checked against, without an API server.

- Knative objects: the CRDs' `openAPIV3Schema` from ../shared/fixtures/knative-crds, closed with
  `additionalProperties: false` wherever an object lists its properties (what the API server's
  pruning does to unknown fields), as tests/unit/test_spec_schema.py does.
- Core objects (Job, Deployment, Service, RBAC, PVC, Ingress, Secret): the `kubernetes-validate`
  package's strict schemas for one Kubernetes version.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

KUBERNETES_VERSION = "1.33.0"


def shared_fixtures() -> Path:
    repo_root = Path(__file__).resolve().parents[2]
    for ancestor in repo_root.parents:
        candidate = ancestor / "shared" / "fixtures"
        if (candidate / "knative-crds").is_dir():
            return candidate
    pytest.skip(
        "!!! KNATIVE CRD FIXTURES NOT FOUND: no shared/fixtures/knative-crds in any parent of "
        f"{repo_root}; manifests were NOT checked against Knative's schema !!!"
    )


def closed(schema: Any) -> Any:
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: closed(value) for key, value in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def knative_schema(file: str) -> dict[str, Any]:
    crd = yaml.safe_load((shared_fixtures() / "knative-crds" / file).read_text())
    (v1,) = [version for version in crd["spec"]["versions"] if version["name"] == "v1"]
    return dict(closed(v1["schema"]["openAPIV3Schema"]))


def validate_knative(obj: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError unless `obj` fits its Knative CRD (closed)."""
    files = {"Service": "service.yaml", "Revision": "revision.yaml", "Route": "route.yaml"}
    jsonschema.validate(obj, knative_schema(files[obj["kind"]]))


def validate_core(obj: dict[str, Any]) -> None:
    """Raise AssertionError naming the problem unless `obj` is a valid core object (strict)."""
    try:
        kubernetes_validate.validate(obj, desired_version=KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        where = "/".join(str(p) for p in e.path) if hasattr(e, "path") else ""
        first = str(e).splitlines()[0]
        raise AssertionError(
            f"{obj['kind']} {obj['metadata'].get('name')}: {where}: {first}"
        ) from None
