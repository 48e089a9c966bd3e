"""The `slipway` command: a thin client over the API, plus `server` to run the control plane.

This module is the table: which function answers which command, in the order `--help` lists
them. The commands live in one module per group beside it. `python -m pipeline.cli.main` is how
the control plane starts its long-running helpers (pipeline.app.daemons), so it runs `main()`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer

from pipeline.cli import (
    backups,
    builds,
    deployments,
    domains,
    identity,
    images,
    logs,
    revisions,
    secrets,
    servers,
    services,
    traffic,
)
from pipeline.cli.output import out


def version() -> None:
    from pipeline import __version__

    out.print(f"slipway {__version__}")


Command = Callable[..., None]

# (name, function, hidden): hidden ones are started by the control plane, not typed by people.
COMMANDS: tuple[tuple[str, Command, bool], ...] = (
    ("deploy", deployments.deploy, False),
    ("traffic", traffic.traffic, False),
    ("rollback", traffic.rollback, False),
    ("logs", logs.logs, False),
    ("server", servers.server, False),
    ("backup", backups.backup, False),
    ("restore", backups.restore, False),
    ("dns", servers.dns, True),
    ("metadata", servers.metadata, True),
    ("version", version, False),
)

# (group, its help, its commands)
GROUPS: tuple[tuple[str, str, tuple[tuple[str, Command], ...]], ...] = (
    ("services", "List, describe, replace and delete services.", (
        ("list", services.list_services),
        ("describe", services.describe),
        ("delete", services.delete),
        ("replace", services.replace),
        ("add-invoker", identity.add_invoker),
        ("remove-invoker", identity.remove_invoker),
    )),
    ("domains", "Custom domains (Knative DomainMappings) and certificates.", (
        ("map", domains.map_domain),
        ("unmap", domains.unmap),
        ("list", domains.list_domains),
        ("replace", domains.replace),
        ("certs", domains.certificates),
        ("renew", domains.renew),
    )),
    ("revisions", "Inspect revisions.", (
        ("list", revisions.list_revisions),
    )),
    ("secrets", "Secrets, encrypted at rest; used as env.", (
        ("set", secrets.set_secret),
        ("list", secrets.list_secrets),
        ("delete", secrets.delete),
    )),
    ("images", "Base images made from the OS package archive.", (
        ("ensure", images.ensure),
    )),
    ("builds", "Builds and their logs.", (
        ("list", builds.list_builds),
        ("cancel", builds.cancel),
        ("log", builds.log),
    )),
    ("keys", "Keys that sign identity tokens.", (
        ("rotate", identity.rotate_keys),
        ("list", identity.list_keys),
    )),
    ("auth", "Identity tokens for people.", (
        ("print-identity-token", identity.print_identity_token),
    )),
)  # fmt: skip


def build_app() -> typer.Typer:
    # Locals in tracebacks could include the token: never show them.
    root = typer.Typer(
        no_args_is_help=True,
        add_completion=False,
        help="Slipway: source to URL.",
        pretty_exceptions_show_locals=False,
    )
    for name, command, hidden in COMMANDS:
        root.command(name, hidden=hidden)(command)
    for group_name, group_help, commands in GROUPS:
        group = typer.Typer(no_args_is_help=True, help=group_help)
        for name, command in commands:
            group.command(name)(command)
        root.add_typer(group, name=group_name)
    return root


app = build_app()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
