"""Slipway service + revisions + traffic -> one `serving.knative.dev/v1` Service, purely.

Knative makes a Revision each time a Service's template changes and names it after
`spec.template.metadata.name` (bring-your-own revision name). Slipway already numbers its
revisions (`<svc>-00001`) and stores each one's template with the image pinned by digest, so the
Service rendered here carries the newest Slipway revision as its template under that name;
older revisions exist in the cluster from earlier applies and are named in `traffic`. Rendering
the same rows twice gives the same manifest, which is what lets server-side apply be a no-op.

Knative's `latestRevision: true` follows the newest *ready* revision, as `routing.resolve_traffic`
does, so traffic entries pass through unchanged except one: a 0% tag on a revision that failed
(or that Slipway does not know) is left out, because Knative would hold the whole Route
not-ready for it, while Slipway simply does not route that tag.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from pipeline.core.annotations import (
    BUILD_ANNOTATION,
    SERVICE_LABEL,
    SERVING_API_VERSION,
    k8s_labels,
)
from pipeline.core.records import Revision, Service

METADATA_ENV = ("GCE_METADATA_HOST", "GCE_METADATA_IP")
_TRAFFIC_KEYS = ("tag", "revisionName", "latestRevision", "percent")


def newest(revisions: Sequence[Revision]) -> Revision | None:
    return max(revisions, key=lambda r: r.number) if revisions else None


def render_service(
    *,
    service: Service,
    revisions: Sequence[Revision],
    namespace: str,
    platform: str,
    metadata_host: str = "",
) -> dict[str, Any] | None:
    """The Knative Service for `service`, or None while it has no revision to run yet."""
    latest = newest(revisions)
    if latest is None:
        return None
    stored_meta: dict[str, Any] = service.spec.get("metadata") or {}
    labels = dict(stored_meta.get("labels") or {})
    labels.update(k8s_labels(platform=platform, **{SERVICE_LABEL: service.name}))
    metadata: dict[str, Any] = {"name": service.name, "namespace": namespace, "labels": labels}
    annotations = dict(stored_meta.get("annotations") or {})
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": SERVING_API_VERSION,
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "template": render_template(
                latest, service=service.name, platform=platform, metadata_host=metadata_host
            ),
            "traffic": render_traffic(service, revisions),
        },
    }


def render_template(
    revision: Revision, *, service: str, platform: str, metadata_host: str = ""
) -> dict[str, Any]:
    """The revision's stored template under its Slipway name, image pinned by digest.

    Knative refuses a changed template under an unchanged name, so everything here is a
    function of the revision row alone (never of settings that may change between passes,
    except the platform id and the metadata host, which are fixed per installation).
    Slipway's labels go on the template, not only on the Service: Knative copies template labels
    to the revision's pods, and the metadata server recognises its callers by them
    (`knative.callers`).
    """
    template = copy.deepcopy(revision.template)
    meta: dict[str, Any] = template.setdefault("metadata", {})
    meta["name"] = revision.name
    labels = dict(meta.get("labels") or {})
    labels.update(k8s_labels(platform=platform, **{SERVICE_LABEL: service}))
    meta["labels"] = labels
    if revision.build_id:
        meta.setdefault("annotations", {})[BUILD_ANNOTATION] = revision.build_id
    spec: dict[str, Any] = template.setdefault("spec", {})
    containers: list[dict[str, Any]] = spec.get("containers") or [{}]
    container = containers[0]
    container["image"] = revision.image
    if metadata_host:
        env: list[dict[str, Any]] = list(container.get("env") or [])
        present = {e.get("name") for e in env}
        env.extend(
            {"name": key, "value": metadata_host} for key in METADATA_ENV if key not in present
        )
        container["env"] = env
    spec["containers"] = [container]
    return template


def render_traffic(service: Service, revisions: Sequence[Revision]) -> list[dict[str, Any]]:
    spec: dict[str, Any] = service.spec.get("spec") or {}
    entries: list[dict[str, Any]] = list(
        spec.get("traffic") or [{"latestRevision": True, "percent": 100}]
    )
    status = {r.name: r.status for r in revisions}
    out: list[dict[str, Any]] = []
    for entry in entries:
        name = entry.get("revisionName")
        percent = int(entry.get("percent") or 0)
        if name is not None and percent == 0 and status.get(str(name), "Failed") == "Failed":
            continue  # a tag on a revision that cannot serve: Slipway does not route it either
        rendered = {key: entry[key] for key in _TRAFFIC_KEYS if entry.get(key) is not None}
        rendered["latestRevision"] = name is None
        rendered["percent"] = percent
        out.append(rendered)
    return out


def keep_live_template(rendered: dict[str, Any], live: dict[str, Any] | None) -> dict[str, Any]:
    """`rendered` with the cluster's own template when both name the same revision.

    Knative's defaulting webhook fills in the template on the apply that creates a revision
    (`containers[0].name: user-container`, a TCP `readinessProbe`, ...), and server-side apply
    records those fields as set by Slipway's field manager. When the template name is unchanged
    (a traffic or tag edit), the webhook skips defaulting ("BYO RevisionName"), so applying the
    rendered template again would drop the defaulted fields, and the validating webhook refuses
    any template change under an unchanged name ("Saw the following changes without a name
    change"). A revision's template never changes under its name, so the live one is sent back.
    """
    live_template: dict[str, Any] = ((live or {}).get("spec") or {}).get("template") or {}
    live_name = (live_template.get("metadata") or {}).get("name")
    if not live_name or live_name != rendered["spec"]["template"]["metadata"]["name"]:
        return rendered
    out = copy.deepcopy(rendered)
    out["spec"]["template"] = copy.deepcopy(live_template)
    return out


def manifest_hash(*manifests: dict[str, Any] | None) -> str:
    """What the reconciler compares to skip an apply that would change nothing."""
    canonical = json.dumps(manifests, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
