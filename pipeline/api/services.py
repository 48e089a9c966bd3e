"""`/v1/services`: list, describe, replace (Service YAML) and delete services.

`describe` is also what the traffic routes answer with (`pipeline.api.revisions`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from pipeline.api import domains, views
from pipeline.api.dependencies import ADMIN, PlatformDep, ServiceName
from pipeline.api.streams import STREAMED, stream
from pipeline.app import removals
from pipeline.app.platform import Platform

router = APIRouter(prefix="/v1/services", tags=["services"], dependencies=ADMIN)

SERVICE_DOCUMENT = {
    "requestBody": {
        "required": True,
        "description": "A Knative serving.knative.dev/v1 Service, as YAML or JSON.",
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}


def describe(platform: Platform, name: str) -> dict[str, Any]:
    """The service, its revisions (with the autoscaler's view of each) and its URLs."""
    view = views.service_view(
        platform.store.get_service(name),
        platform.store.list_revisions(name),
        platform.engine.list_instances(),
        domain=platform.settings.domain,
        port=platform.settings.ingress_port,
    )
    autoscaler = getattr(platform.reconciler, "autoscaler_view", None)
    for rev in view["revisions"]:
        rev["autoscaler"] = autoscaler(rev["name"]) if autoscaler else None
    view = views.with_published_urls(view, platform.deployer.urls(name))
    return {**view, **domains.tls_view(platform, view)}


@router.get("")
def list_services(platform: PlatformDep) -> list[dict[str, Any]]:
    instances = platform.engine.list_instances()
    return [
        views.service_summary(views.with_published_urls(views.service_view(
            s, platform.store.list_revisions(s.name), instances,
            domain=platform.settings.domain, port=platform.settings.ingress_port,
        ), platform.deployer.urls(s.name)))
        for s in platform.store.list_services()
    ]  # fmt: skip


@router.get("/{name}")
def describe_service(name: ServiceName, platform: PlatformDep) -> dict[str, Any]:
    return describe(platform, name)


@router.delete("/{name}")
def delete_service(name: ServiceName, platform: PlatformDep) -> dict[str, Any]:
    """Delete the service and what is kept for it: revisions, builds and their logs and sources,
    the git repository, its registry and local images, its build caches. Leftovers with no
    service (a rejected first push's repository) are removed too; 404 only when nothing is left.
    Webhook delivery ids stay (replay protection). `failed` lists the steps that did not finish:
    deleting again retries them."""
    return removals.remove_service(platform, name).view()


@router.put("/{name}", openapi_extra=SERVICE_DOCUMENT, responses=STREAMED)
async def replace_service(
    name: ServiceName, request: Request, platform: PlatformDep
) -> StreamingResponse:
    """Deploy a Service document (`slipway services replace`); streams like a deployment."""
    body = await request.body()
    return stream(lambda emit: platform.deployer.replace(body, name=name, emit=emit))
