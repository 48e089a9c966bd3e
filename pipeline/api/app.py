"""The API's assembly: one FastAPI app, the platform on its state, the routers, the error map.

Every route lives in a module-level router (one per resource) and reaches the platform through
`pipeline.api.dependencies`; this module only mounts them. Order: the routers with their own
authentication first (git, metrics, build sources, identity discovery, webhooks), then /v1.
"""

from __future__ import annotations

from fastapi import FastAPI

from pipeline.api import (
    builds,
    deliveries,
    deployments,
    docs,
    domains,
    errors,
    git,
    identity,
    logs,
    metrics_route,
    revisions,
    secrets,
    services,
    sources_route,
)
from pipeline.app.platform import Platform
from webhooks import routes as webhook_routes
from webhooks.hosts import GitHosts

V1_ROUTERS = (
    services.router,
    revisions.router,
    deployments.router,
    secrets.router,
    deliveries.router,
    builds.router,
    domains.router,
    domains.certificates_router,
    logs.router,
)


def create_app(platform: Platform) -> FastAPI:
    app = FastAPI(
        title="Slipway",
        version="0.1.0",
        description="Source to URL on your machine",
        docs_url=None,  # pipeline.api.docs serves both pages with local assets
        redoc_url=None,
    )
    app.state.platform = platform
    docs.install(app)  # no token, like /openapi.json
    errors.install(app)
    app.include_router(git.router)  # basic auth: the token as the git password
    app.include_router(metrics_route.router)  # no token: Prometheus scrapes
    app.include_router(sources_route.router)  # build Jobs: a per-build token
    app.include_router(identity.router)  # discovery without auth, the rest with the token
    # Webhooks authenticate by signature (GitHub) or token (GitLab), not by the API token.
    app.include_router(
        webhook_routes.create_router(
            github_secret=lambda: platform.settings.webhook_secret("github"),
            gitlab_secret=lambda: platform.settings.webhook_secret("gitlab"),
            store=platform.store,
            deliveries=platform.deliveries,
            runner=platform.runner,
            hosts=GitHosts(
                github=platform.settings.github_url, gitlab=platform.settings.gitlab_url
            ),
            secret_of=lambda secret, key: platform.secrets.latest_value(secret, key),
        )
    )
    app.add_api_route("/healthz", healthz, include_in_schema=False)
    for router in V1_ROUTERS:
        app.include_router(router)
    return app


def healthz() -> dict[str, str]:
    return {"status": "ok"}
