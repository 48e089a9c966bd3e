"""`slipway server`: migrate, wire the platform, start the reconciler, answer the activator, serve
the API.

The activator is its own process (`pipeline.app.activatorserver`), so it outlives this one:
here the control plane answers its asks on a unix socket (`dataplane.wakeups`), makes sure it
runs (started once, reused across restarts, restarted within seconds if it dies), and serves.
"""

from __future__ import annotations

import threading

import uvicorn

from pipeline.api.app import create_app
from pipeline.app import daemons, platform, restoredimages
from pipeline.core import logs
from pipeline.core.settings import Settings
from pipeline.dataplane import wakeups
from pipeline.engines.docker import DockerEngine
from pipeline.reconcile.loop import Reconciler

WATCH_EVERY_S = 2.0  # how soon an activator that died is started again


def run() -> None:
    logs.configure()
    settings = Settings.from_env()
    plat = platform.build(settings)
    log = logs.get(component="server")
    restoredimages.push_at_start(settings)  # a restore's images, before revisions need them
    if isinstance(plat.reconciler, Reconciler):
        # Before the first pass: from here on the activator asks (and waits for the passes)
        # instead of starting alone, so the first pass and the activator never both start one.
        _answer_activator(plat.reconciler, settings)
    plat.reconciler.reconcile_once()  # adopt what runs and bring HAProxy up before serving
    plat.start_loops()
    if isinstance(plat.engine, DockerEngine):  # on Knative, Knative's activator
        _keep_activator(settings, engine=plat.engine, stop=plat.stop)
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


def _answer_activator(reconciler: Reconciler, settings: Settings) -> None:
    """The activator's asks, on a 0600 unix socket in the run dir (not the public API)."""
    app = wakeups.create_app(wake=reconciler.wake, instance_for=reconciler.instance_for)
    sock = wakeups.bind(wakeups.socket_path(settings.data_dir / "run"))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="wakeups",
                     daemon=True).start()  # fmt: skip


def activator_args(settings: Settings, *, engine: DockerEngine) -> list[str]:
    """The activator's options besides where it listens (pipeline.app.activatorserver). What
    instances are given (resolver, metadata host) is among them: a change restarts it, so an
    instance it starts alone gets what the reconciler's get."""
    args = [
        "--run-dir", str(settings.data_dir / "run"), "--data-dir", str(settings.data_dir),
        "--platform", settings.platform_id, "--network", settings.network,
        "--timeout", f"{settings.readiness_timeout_s:g}",
    ]  # fmt: skip
    if engine.dns:
        args += ["--dns", engine.dns]
    if engine.metadata_host:
        args += ["--metadata-host", engine.metadata_host]
    return args


def _keep_activator(settings: Settings, *, engine: DockerEngine, stop: threading.Event) -> None:
    """Start the activator (or reuse the one that outlived the last control plane), then check
    every few seconds that it is alive and start it again if not. On a thread: an activator
    slow to start (a loaded machine) must not hold up the API."""
    run_dir, logs_dir = settings.data_dir / "run", settings.data_dir / "logs"

    def ensure() -> bool:
        return daemons.ensure_activator(
            run_dir=run_dir, logs_dir=logs_dir, address=settings.api_host,
            port=settings.activator_port, args=activator_args(settings, engine=engine),
        )  # fmt: skip

    def keep() -> None:
        ensure()
        while not stop.wait(WATCH_EVERY_S):
            if not daemons.running(run_dir, "activator"):
                logs.get(component="server").warning("activator_died", restarting=True)
                ensure()

    threading.Thread(target=keep, name="activator-keeper", daemon=True).start()
