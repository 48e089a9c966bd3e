"""`slipway server`: migrate, wire the platform, start the reconciler, serve the API."""

from __future__ import annotations

import uvicorn

from pipeline import logs, platform
from pipeline.api.app import create_app
from pipeline.config import Settings


def run() -> None:
    logs.configure()
    settings = Settings.from_env()
    plat = platform.build(settings)
    log = logs.get(component="server")
    plat.reconciler.reconcile_once()  # adopt what runs and bring HAProxy up before serving
    plat.start_loops()
    log.info(
        "control_plane_started",
        api=settings.api_url,
        ingress=settings.ingress_url,
        data_dir=str(settings.data_dir),
    )
    try:
        uvicorn.run(
            create_app(plat),
            host=settings.api_host,
            port=settings.api_port,
            log_level="warning",
            access_log=False,
        )
    finally:
        plat.stop.set()
