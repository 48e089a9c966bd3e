"""`/v1/builds`: builds and their logs, and cancelling one.

The source a build Job fetches (`/v1/builds/{id}/source`) has its own token and its own module
(`pipeline.api.sources_route`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from pipeline.api import views
from pipeline.api.dependencies import ADMIN, BuildId, PlatformDep
from pipeline.build import logfiles as buildlogs
from pipeline.core.logs import get as get_log

router = APIRouter(prefix="/v1/builds", tags=["builds"], dependencies=ADMIN)


@router.get("")
def list_builds(
    platform: PlatformDep,
    service: Annotated[
        str | None, Query(description="Only this service's builds (default: every service's).")
    ] = None,
) -> list[dict[str, Any]]:
    return [views.build_view(b) for b in platform.store.list_builds(service=service)]


@router.get("/{build_id}")
def get_build(build_id: BuildId, platform: PlatformDep) -> dict[str, Any]:
    return views.build_view(platform.store.get_build(build_id))


@router.post("/{build_id}/cancel")
def cancel_build(build_id: BuildId, platform: PlatformDep) -> dict[str, Any]:
    """Stop a queued or running build (the process is killed); no revision is made."""
    platform.deployer.cancel_build(build_id)
    get_log(component="api").info("build_cancel_requested", build=build_id)
    return views.build_view(platform.store.get_build(build_id))


@router.get(
    "/{build_id}/log", responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}}
)
def build_log(
    build_id: BuildId,
    platform: PlatformDep,
    follow: Annotated[
        bool, Query(description="Keep the log open and stream it until the build ends.")
    ] = False,
) -> StreamingResponse:
    """The stored build log; with `follow=1`, kept open and streamed until the build ends."""
    platform.store.get_build(build_id)
    path = platform.settings.builds_dir / f"{build_id}.log"
    return StreamingResponse(
        buildlogs.follow(path, running=lambda: platform.store.get_build(build_id).unfinished)
        if follow
        else buildlogs.read(path),
        media_type="text/plain; charset=utf-8",
    )
