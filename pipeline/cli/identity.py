"""`slipway keys`, `slipway auth` and a service's invokers: who may call a private service, and
the keys that sign the tokens that say so."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from pipeline.cli.formats import Format, Output, print_data
from pipeline.cli.output import call, out

Member = Annotated[str, typer.Option("--member", help="service:<name> or user:<name>.")]


def add_invoker(name: str, member: Member) -> None:
    """Allow a caller to invoke a private service (applied without a reload)."""
    _print_access(call("POST", f"/v1/services/{name}/invokers", json={"member": member}))


def remove_invoker(name: str, member: Member) -> None:
    """Take a caller off a private service's invokers."""
    _print_access(call("DELETE", f"/v1/services/{name}/invokers/{member}"))


def rotate_keys() -> None:
    """A new signing key; older keys keep verifying until every token they signed expired."""
    _print_keys(call("POST", "/v1/keys/rotate"))


def list_keys(output: Output = Format.table) -> None:
    rows = call("GET", "/v1/keys")
    if output is Format.table:
        _print_keys(rows)
    else:
        print_data(rows, output=output)


def print_identity_token(
    audience: Annotated[str, typer.Option("--audience", help="URL of the service to call.")],
    user: Annotated[str, typer.Option("--user", help="Member user:<name> it identifies.")] = (
        "admin"
    ),
) -> None:
    """Print an identity token (≤ 1 h) for `user:<name>`, to call a private service."""
    done = call("POST", "/v1/auth/identity-token", json={"audience": audience, "user": user})
    sys.stdout.write(done["token"] + "\n")


def _print_access(view: dict[str, Any]) -> None:
    state = "private" if view["private"] else "public"
    members = ", ".join(view["invokers"]) or "-"
    out.print(f"{view['name']}  {state}  invokers: {members}", highlight=False)


def _print_keys(rows: list[dict[str, Any]]) -> None:
    for k in rows:
        out.print(f"{k['kid']}  {'signing' if k['signing'] else 'verifying'}", highlight=False)
