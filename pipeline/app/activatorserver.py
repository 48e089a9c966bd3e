"""The activator's composition root: `slipway activator` options in, a running activator out.

The activator (`dataplane.activator`) only knows `wait_for_instance`; here it becomes "ask the
control plane over its unix socket (`dataplane.wakeups`), else start alone
(`dataplane.lonestarts`)" with the pieces acting alone needs: the Docker engine (the same
labels, network, resolver and metadata host the control plane gives instances), the desired
state the control plane last wrote, secrets resolved as the reconciler resolves them, and the
reconciler's readiness probe. The control plane starts this process next to Docker
(`app.daemons.ensure_activator`) and restarts it if it dies.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from pipeline.core import logs
from pipeline.dataplane import activator, desiredcache, lonestarts, wakeups
from pipeline.engines.base import Engine
from pipeline.engines.docker import DockerEngine
from pipeline.engines.dockerclient import connect as docker_connect
from pipeline.reconcile import probes
from pipeline.store.secrets import SecretStore
from pipeline.store.secrets import resolve as resolve_secrets

DESIRED_NAME = "desired.json"


@dataclass(frozen=True, kw_only=True)
class Options:
    """The process's command line (`slipway activator`), as `daemons.ensure_activator` passes it."""

    bind: str
    port: int
    run_dir: Path  # the control plane's socket and the desired-state cache are here
    data_dir: Path  # secrets, read as the control plane reads them
    platform: str
    network: str
    timeout_s: float
    dns: str = ""  # the internal resolver, as instances get it ("" = none)
    metadata_host: str = ""  # GCE_METADATA_HOST for instances ("" = none)


def desired_path(run_dir: Path) -> Path:
    return run_dir / DESIRED_NAME


@functools.cache
def _engine(options: Options) -> Engine:
    """Connected on first use, once: the activator runs (and forwards through the control
    plane) even while Docker is not reachable; only acting alone needs it."""
    engine = DockerEngine(docker_connect(), platform=options.platform, network=options.network)
    engine.dns = options.dns
    engine.metadata_host = options.metadata_host
    return engine


def wait_for_instance(options: Options) -> lonestarts.WaitForInstance:
    secrets = SecretStore(options.data_dir)
    alone = lonestarts.LoneStarts(
        engine=lambda: _engine(options),
        desired=lambda: desiredcache.read(desired_path(options.run_dir)),
        resolve=lambda config: resolve_secrets(secrets, config),
        probe=probes.ready,
    )
    socket = wakeups.socket_path(options.run_dir)
    return lonestarts.ask_then_alone(
        ask=lambda revision, timeout_s: wakeups.ask(socket, revision, timeout_s),
        alone=alone.instance_for,
        down=wakeups.ControlPlaneDown,
    )


def quiet_request_logs() -> None:
    """httpx logs every request it sends at INFO: a line per forwarded request in the
    activator's log, the very growth `dataplane.activationcounts` bounds. Its warnings stay."""
    logging.getLogger("httpx").setLevel(logging.WARNING)


def main(options: Options) -> None:
    logs.configure()
    quiet_request_logs()
    app = activator.create_app(wait_for_instance=wait_for_instance(options),
                               timeout_s=options.timeout_s)  # fmt: skip
    uvicorn.run(
        app,
        host=options.bind,
        port=options.port,
        ws="websockets-sansio",  # WebSocket upgrades held at zero (see activator)
        log_level="warning",
        access_log=False,
    )
