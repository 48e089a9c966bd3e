"""`slipway server`: migrate, wire the platform, start the reconciler and the activator, serve
the API."""

from __future__ import annotations

import threading

import uvicorn

from pipeline.api.app import create_app
from pipeline.app import platform, restoredimages
from pipeline.core import logs
from pipeline.core.settings import Settings
from pipeline.dataplane import activator
from pipeline.reconcile.loop import Reconciler


def run() -> None:
    logs.configure()
    settings = Settings.from_env()
    plat = platform.build(settings)
    log = logs.get(component="server")
    restoredimages.push_at_start(settings)  # a restore's images, before revisions need them
    plat.reconciler.reconcile_once()  # adopt what runs and bring HAProxy up before serving
    plat.start_loops()
    if isinstance(plat.reconciler, Reconciler):
        _start_activator(plat.reconciler, settings)
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


def _start_activator(reconciler: Reconciler, settings: Settings) -> None:
    app = activator.create_app(
        wake=reconciler.wake,
        wait_for_instance=reconciler.instance_for,
        timeout_s=settings.readiness_timeout_s,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.api_host,
            port=settings.activator_port,
            ws="websockets-sansio",  # WebSocket upgrades held at zero (see activator)
            log_level="warning",
            access_log=False,
        )
    )
    threading.Thread(target=server.run, name="activator", daemon=True).start()
