"""The `slipway` command: a thin client over the API, plus `server` to run the control plane.

This module is the table: which function answers which command, in the order `--help` lists
them. The commands live in one module per group beside it. `python -m pipeline.cli.main` is how
the control plane starts its long-running helpers (pipeline.app.daemons), so it runs `main()`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated

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
    """Print Slipway's version."""
    from pipeline import __version__

    out.print(f"slipway {__version__}", highlight=False)


def _print_version(value: bool) -> None:
    if value:
        version()
        raise typer.Exit()


def root_options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Slipway: source to URL."""


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
    ("activator", servers.activator, True),
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


# `-h` as well as `--help`, on every command (click passes it down to subcommands).
CONTEXT = {"help_option_names": ["-h", "--help"]}


def build_app() -> typer.Typer:
    # Locals in tracebacks could include the token: never show them.
    root = typer.Typer(
        no_args_is_help=True,
        add_completion=True,
        context_settings=CONTEXT,
        pretty_exceptions_show_locals=False,
    )
    root.callback()(root_options)
    for name, command, hidden in COMMANDS:
        root.command(name, hidden=hidden)(command)
    for group_name, group_help, commands in GROUPS:
        group = typer.Typer(no_args_is_help=True, help=group_help, context_settings=CONTEXT)
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
