"""JSON views of services and revisions, pure: what `describe` and `list` show."""

from __future__ import annotations

from typing import Any

from pipeline.core import names
from pipeline.core.records import Build, Revision, Service
from pipeline.engines.base import Instance
from pipeline.identity import access
from pipeline.reconcile.routing import Target, resolve_traffic


def revision_view(
    rev: Revision, instances: list[Instance], targets: list[Target] | None = None
) -> dict[str, Any]:
    own = [i for i in instances if i.revision == rev.name]
    mine = [t for t in targets or [] if t.revision == rev.name]
    return {
        "traffic": sum(t.percent for t in mine),
        "tags": sorted(t.tag for t in mine if t.tag),
        "name": rev.name,
        "number": rev.number,
        "image": rev.image,
        "status": rev.status,
        "reason": rev.reason,
        "message": rev.message,
        "build": rev.build_id,
        "created": rev.created_at.isoformat(),
        "ready_at": rev.ready_at.isoformat() if rev.ready_at else None,
        "instances": {
            "running": sum(1 for i in own if i.running and not i.frozen),
            "frozen": sum(1 for i in own if i.frozen),
            "total": len(own),
        },
    }


def service_view(
    svc: Service,
    revisions: list[Revision],
    instances: list[Instance],
    *,
    domain: str,
    port: int,
) -> dict[str, Any]:
    targets = resolve_traffic(svc, revisions)
    latest_created = revisions[-1].name if revisions else None
    ready = [r for r in revisions if r.status == "Ready"]
    traffic = []
    for t in targets:
        entry: dict[str, Any] = {"revision": t.revision, "percent": t.percent}
        if t.tag:
            entry["tag"] = t.tag
            entry["url"] = names.tag_url(t.tag, svc.name, domain, port)
        traffic.append(entry)
    serving = any(t.percent > 0 for t in targets)
    return {
        "name": svc.name,
        "url": names.service_url(svc.name, domain, port),
        "generation": svc.generation,
        "ready": serving,
        "latest_created_revision": latest_created,
        "latest_ready_revision": ready[-1].name if ready else None,
        "traffic": traffic,
        "private": access.is_private(svc.spec),
        "invokers": access.invokers(svc.spec),
        "revisions": [revision_view(r, instances, targets) for r in reversed(revisions)],
        "spec": svc.spec,
    }


SUMMARY_KEYS = (
    "name", "url", "ready", "latest_created_revision", "latest_ready_revision", "traffic",
)  # fmt: skip


def service_summary(view: dict[str, Any]) -> dict[str, Any]:
    """One row of `services list`: the service view without its revisions and spec."""
    return {k: view[k] for k in SUMMARY_KEYS}


def build_view(b: Build) -> dict[str, Any]:
    return {
        "id": b.id,
        "service": b.service,
        "status": b.status,
        "builder": b.builder,
        "image": b.image,
        "error": b.error,
        "created": b.created_at.isoformat(),
        "started": b.started_at.isoformat() if b.started_at else None,
        "finished": b.finished_at.isoformat() if b.finished_at else None,
    }


def with_published_urls(view: dict[str, Any], urls: list[str]) -> dict[str, Any]:
    """The view with the URLs the engine publishes (Knative: from its status) where it has them;
    on the embedded engine they are the same ones."""
    by_label = {u.split("//", 1)[-1].split(".", 1)[0]: u for u in urls}
    out = dict(view)
    if by_label.get(view["name"]):
        out["url"] = by_label[view["name"]]
    out["traffic"] = [
        {**t, "url": by_label.get(f"{t['tag']}--{view['name']}", t["url"])} if t.get("tag") else t
        for t in view["traffic"]
    ]
    return out
