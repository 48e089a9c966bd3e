"""`/v1/services/{name}/revisions`, `/traffic`, `/rollback`: a service's revisions and where
its traffic goes. Traffic edits never create a revision."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from pipeline.api import views
from pipeline.api.dependencies import ADMIN, PlatformDep, ServiceName, body_described
from pipeline.api.services import describe
from pipeline.core import traffic
from pipeline.reconcile.routing import resolve_traffic

router = APIRouter(prefix="/v1/services/{name}", tags=["revisions"], dependencies=ADMIN)


class TrafficEdit(BaseModel):
    """Body of POST /v1/services/{name}/traffic; every field optional."""

    model_config = ConfigDict(extra="forbid")

    to_revisions: dict[str, int] = Field(
        default_factory=dict, description=f"REVISION: percent; {traffic.LATEST}: the latest ready."
    )
    to_tags: dict[str, int] = Field(default_factory=dict, description="TAG: percent.")
    to_latest: bool = Field(False, description="The rest of the traffic follows the latest.")
    update_tags: dict[str, str] = Field(
        default_factory=dict, description=f"TAG: REVISION (or {traffic.LATEST}); added or moved."
    )
    set_tags: dict[str, str] = Field(default_factory=dict, description="Same as update_tags.")
    remove_tags: list[str] = Field(default_factory=list, description="Tags to drop.")
    clear_tags: bool = Field(False, description="Drop every tag (before update_tags).")

    def change(self) -> traffic.Change:
        return traffic.Change(
            to_revisions=self.to_revisions,
            to_tags=self.to_tags,
            to_latest=self.to_latest,
            set_tags={**self.set_tags, **self.update_tags},
            remove_tags=tuple(self.remove_tags),
            clear_tags=self.clear_tags,
        )


@router.get("/revisions")
def list_revisions(name: ServiceName, platform: PlatformDep) -> list[dict[str, Any]]:
    svc = platform.store.get_service(name)
    instances = platform.engine.list_instances()
    revisions = platform.store.list_revisions(name)
    targets = resolve_traffic(svc, revisions)
    return [views.revision_view(r, instances, targets) for r in reversed(revisions)]


@router.post(
    "/traffic",
    openapi_extra=body_described(
        "The traffic edit: percents per revision or tag, the latest ready revision's share, "
        "tags to set or remove (every field optional)."
    ),
)
def set_traffic(name: ServiceName, body: TrafficEdit, platform: PlatformDep) -> dict[str, Any]:
    """Change the split and tags (gcloud/kn vocabulary). Never creates a revision."""
    platform.deployer.set_traffic(name, body.change())
    return describe(platform, name)


@router.post("/rollback")
def rollback(name: ServiceName, platform: PlatformDep) -> dict[str, Any]:
    """All traffic back to the revision that served before the current one."""
    target = platform.deployer.rollback(name)
    return {"rolled_back_to": target, **describe(platform, name)}
