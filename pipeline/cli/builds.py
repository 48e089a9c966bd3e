"""`slipway builds`: list, cancel, and print (or follow) a build's log."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from pipeline.cli.client import Client, ClientError
from pipeline.cli.formats import Format, Output, print_rows
from pipeline.cli.output import call, fail, out


def list_builds(
    service: Annotated[str | None, typer.Option("--service", help="Only this service.")] = None,
    output: Output = Format.table,
) -> None:
    rows = call("GET", "/v1/builds", params={"service": service} if service else {})
    table = Table("BUILD", "SERVICE", "STATUS", "CREATED", "IMAGE / ERROR", box=None)
    for b in rows:
        table.add_row(b["id"], b["service"], b["status"], b["created"], b["error"] or b["image"])
    print_rows(rows, output=output, table=table)


def cancel(build_id: str) -> None:
    """Stop a queued or running build; no revision is made from it."""
    build = call("POST", f"/v1/builds/{build_id}/cancel")
    out.print(f"Build {build_id} {build['status']}", highlight=False)


def log(
    build_id: str,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream until it ends.")] = False,
) -> None:
    """Print a build's log; with --follow, stream it while the build runs."""
    client = Client.from_env()
    try:
        for chunk in client.stream_text(
            f"/v1/builds/{build_id}/log", params={"follow": "1" if follow else "0"}
        ):
            sys.stdout.write(chunk)
            sys.stdout.flush()
        status = client.request("GET", f"/v1/builds/{build_id}")
    except ClientError as e:
        raise fail(e.message) from e
    if status["status"] == "failed":
        raise fail(f"build {build_id} failed: {status['error']}")
