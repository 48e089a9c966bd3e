"""`GET /v1/builds/{id}/source`: where an in-cluster build Job fetches its source.

Authenticated by the build's own short-lived token (`pipeline.build.sourcetokens`), or the admin
token; it serves the gzip tar the deployment stored under `<data dir>/sources/<id>.tar.gz`.
Mounted by the app like the other routers; not behind `ADMIN`, since a Job holds no admin token.
"""

from __future__ import annotations

import hmac
import re
import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse

from pipeline.api.dependencies import BuildId, PlatformDep
from pipeline.build import sourcetokens

_BUILD_ID = re.compile(r"^[0-9a-f]{1,64}$")

router = APIRouter(tags=["builds"])


def now() -> float:
    """The clock source tokens are checked against (a dependency, so tests can fix it)."""
    return time.time()


# The bearer here is the build's own source token (or the admin token): declared so /docs
# lets a user authorize the call.
@router.get(
    "/v1/builds/{build_id}/source",
    response_class=FileResponse,
    openapi_extra={"security": [{"AdminToken": []}]},
)
def build_source(
    build_id: BuildId,
    request: Request,
    platform: PlatformDep,
    clock: Annotated[float, Depends(now)],
) -> FileResponse:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(
            status_code=401,
            detail="missing bearer token: build Jobs send the token Slipway gave them",
            headers={"WWW-Authenticate": "Bearer"},
        )
    admin_token = platform.token
    admin = bool(admin_token) and hmac.compare_digest(token.encode(), admin_token.encode())
    if not _BUILD_ID.fullmatch(build_id):
        raise HTTPException(status_code=404, detail=f"build {build_id!r} not found")
    key = platform.source_token_key
    if not admin and not sourcetokens.verify(key, build_id, token, now=clock):
        raise HTTPException(
            status_code=401,
            detail="invalid or expired source token for this build",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    path = platform.settings.sources_dir / f"{build_id}.tar.gz"
    if not path.is_file():
        raise HTTPException(status_code=404, detail=f"no stored source for build {build_id}")
    return FileResponse(path, media_type="application/gzip", filename=f"{build_id}.tar.gz")
