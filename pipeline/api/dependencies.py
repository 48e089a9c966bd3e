"""How a route reaches the platform, and the admin-token check: FastAPI dependencies.

`create_app` puts the wired `Platform` on `app.state.platform`; a route asks for it with a
`PlatformDep` parameter, so every router is a module-level table a test can mount on its own
app with a stand-in platform. `ADMIN` guards the /v1 routes; declaring the bearer scheme here
gives the OpenAPI document its security scheme and `/docs` its Authorize button.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pipeline.api import auth
from pipeline.app.platform import Platform


def platform_of(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(platform_of)]

# auto_error=False: `auth.check` answers a missing or wrong token with Slipway's own 401s.
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AdminToken",
    description="The admin token: file admin-token in the data dir (or SLIPWAY_TOKEN).",
)


def authed(
    request: Request,
    platform: PlatformDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    auth.check(request, platform.token)


ADMIN = [Depends(authed)]

# Path parameters several routers share, described once for the OpenAPI document.
ServiceName = Annotated[
    str, Path(description="The service's name: a DNS label (lowercase letters, digits, '-').")
]
BuildId = Annotated[str, Path(description="A build's id, as `slipway builds list` shows it.")]


def body_described(text: str) -> dict[str, Any]:
    """`openapi_extra` giving a route's request body its description (FastAPI gives none)."""
    return {"requestBody": {"description": text}}
