"""`slipway server` with the /metrics router included, for the metrics tests.

Until `pipeline.api.app.create_app` includes `metrics_route.create_router` itself, this wraps it;
once it does, the wrapper adds nothing and the control plane is exactly `slipway server`.
"""

from __future__ import annotations

from fastapi import FastAPI

from pipeline import server
from pipeline.api import metrics_route
from pipeline.platform import Platform

_create_app = server.create_app


def create_app(platform: Platform) -> FastAPI:
    app = _create_app(platform)
    if not any(getattr(route, "path", None) == "/metrics" for route in app.routes):
        app.include_router(metrics_route.create_router(platform))
    return app


if __name__ == "__main__":
    server.create_app = create_app  # type: ignore[attr-defined]
    server.run()
