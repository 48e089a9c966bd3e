"""The long-running commands: `slipway server` (the control plane), and the processes it starts
beside itself, which outlive its restarts (pipeline.app.daemons runs them as
`python -m pipeline.cli.main dns|metadata|activator ...`): the internal resolver, the metadata
server and the activator.

Each imports what it serves only when run, so the client commands start fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.output import fail
from pipeline.core.errors import SlipwayError


def server() -> None:
    """Run the control plane (API + reconciler) in the foreground."""
    from pipeline.api import server as server_mod

    try:
        server_mod.run()
    except SlipwayError as e:
        raise fail(e.message) from e


def dns(
    bind: Annotated[str, typer.Option("--bind")],
    domain: Annotated[str, typer.Option("--domain")],
) -> None:
    """The internal resolver (started by the control plane; see pipeline.dataplane.resolver)."""
    from pipeline.dataplane import resolver as internaldns

    internaldns.serve(bind=bind, port=53, domain=domain, address=bind)


def metadata(
    bind: Annotated[str, typer.Option("--bind")],
    port: Annotated[int, typer.Option("--port")],
    keys_dir: Annotated[Path, typer.Option("--keys-dir")],
    platform: Annotated[str, typer.Option("--platform")],
    issuer: Annotated[str, typer.Option("--issuer")],
    domain: Annotated[str, typer.Option("--domain")],
    engine: Annotated[str, typer.Option("--engine", help="docker or knative")] = "docker",
    network: Annotated[str, typer.Option("--network", help="docker: callers' network")] = "",
    namespace: Annotated[str, typer.Option("--namespace", help="knative: pods' namespace")] = "",
    kubeconfig: Annotated[str, typer.Option("--kubeconfig", help="knative: '' = in-cluster")] = "",
) -> None:
    """The metadata server (started by the control plane next to Docker, a container of the
    control-plane pod on Kubernetes; see pipeline.app.metadataserver)."""
    from pipeline.app import metadataserver as metadata_mod

    if engine not in ("docker", "knative"):
        raise fail(f"--engine {engine!r}: use docker or knative")
    missing = "--network" if engine == "docker" and not network else ""
    missing = missing or ("--namespace" if engine == "knative" and not namespace else "")
    if missing:
        raise fail(f"--engine {engine} needs {missing}")
    options = metadata_mod.Options(
        bind=bind, port=port, keys_dir=keys_dir, platform=platform, issuer=issuer, domain=domain,
        engine=engine, network=network, namespace=namespace, kubeconfig=kubeconfig,
    )  # fmt: skip
    try:
        metadata_mod.main(options)
    except SlipwayError as e:
        raise fail(e.message) from e


def activator(
    bind: Annotated[str, typer.Option("--bind")],
    port: Annotated[int, typer.Option("--port")],
    run_dir: Annotated[Path, typer.Option("--run-dir", help="the control plane's run dir")],
    data_dir: Annotated[Path, typer.Option("--data-dir", help="where secrets are")],
    platform: Annotated[str, typer.Option("--platform")],
    network: Annotated[str, typer.Option("--network", help="instances' Docker network")],
    timeout_s: Annotated[float, typer.Option("--timeout", help="longest wait for an instance")],
    dns: Annotated[str, typer.Option("--dns", help="instances' resolver, '' = none")] = "",
    metadata_host: Annotated[str, typer.Option("--metadata-host", help="'' = none")] = "",
) -> None:
    """The activator (started by the control plane next to Docker; see
    pipeline.app.activatorserver)."""
    from pipeline.app import activatorserver

    options = activatorserver.Options(
        bind=bind, port=port, run_dir=run_dir, data_dir=data_dir, platform=platform,
        network=network, timeout_s=timeout_s, dns=dns, metadata_host=metadata_host,
    )  # fmt: skip
    activatorserver.main(options)
