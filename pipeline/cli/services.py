"""`slipway services`: list, describe, delete, and replace from a Knative Service document."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pipeline.cli.domains import print_tls
from pipeline.cli.formats import Format, Output, print_data, print_rows, print_table
from pipeline.cli.output import call, fail, follow_stream, out, print_traffic
from pipeline.cli.revisions import instances_cell
from pipeline.core.errors import SlipwayError


def list_services(output: Output = Format.table) -> None:
    rows = call("GET", "/v1/services")
    table = Table("NAME", "URL", "LATEST READY", "TRAFFIC", box=None)
    for s in rows:
        split = ", ".join(f"{t['revision']}={t['percent']}%" for t in s["traffic"] if t["percent"])
        table.add_row(s["name"], s["url"], s["latest_ready_revision"] or "-", split or "-")
    print_rows(rows, output=output, table=table)


def describe(
    name: str,
    output: Annotated[
        Format,
        typer.Option(
            "--output", "-o", case_sensitive=False,
            help="table (the default); json: everything below, as the API answers; yaml: the "
            "Knative Service document, which `services replace` takes back.",
        ),
    ] = Format.table,
    as_json: Annotated[bool, typer.Option("--json", help="The same as -o json.")] = False,
) -> None:
    """A service: URL, traffic, revisions and why any failed; or its spec (-o yaml)."""
    if as_json and output is Format.yaml:
        raise fail(f"--json and -o {output.value} disagree: use one of them")
    view = call("GET", f"/v1/services/{name}")
    if as_json or output is Format.json:
        print_data(view, output=Format.json)
        return
    if output is Format.yaml:
        # The spec the store holds: status-free, images pinned by digest, so replacing it
        # unchanged makes no new revision.
        print_data(view["spec"], output=Format.yaml)
        return
    out.print(f"[bold]{view['name']}[/]  {view['url']}  generation {view['generation']}")
    if view.get("private"):
        out.print(f"Private; invokers: {', '.join(view['invokers']) or '-'}", highlight=False)
    out.print("Traffic:")
    print_traffic(view, header=False)
    print_tls(view)
    table = Table("REVISION", "STATUS", "INSTANCES", "IMAGE", "REASON", box=None)
    for r in view["revisions"]:
        table.add_row(
            r["name"], r["status"], instances_cell(r["instances"]), r["image"], r["reason"]
        )
    print_table(table)
    for r in view["revisions"]:
        if r["status"] == "Failed" or r["reason"]:  # a Ready one backing off says why too
            color = "red" if r["status"] == "Failed" else "yellow"
            out.print(f"[{color}]{r['name']}[/]: {r['message']}", highlight=False)


def delete(name: str) -> None:
    """Delete the service with its revisions, builds, git repository and images."""
    done = call("DELETE", f"/v1/services/{name}")
    out.print(f"Deleted {name}")
    for what in done.get("removed", []):
        out.print(f"  removed {what}", highlight=False)
    if done.get("failed"):
        raise fail(
            f"some of what {name} left could not be removed ({'; '.join(done['failed'])}): "
            f"run `slipway services delete {name}` again to retry"
        )


def replace(
    file: Annotated[Path, typer.Argument(help="A serving.knative.dev/v1 Service (YAML/JSON).")],
) -> None:
    """Create or replace a service from a Knative Service document."""
    try:
        text = file.read_text()
    except OSError as e:
        raise fail(f"cannot read {file}: {e.strerror}") from e
    from pipeline import spec

    try:
        name = spec.parse_service(text, require_image=True).to_manifest()["metadata"]["name"]
    except SlipwayError as e:
        raise fail(f"{file}: {e.message}") from e
    done = follow_stream(
        "PUT",
        f"/v1/services/{name}",
        content=text.encode(),
        headers={"Content-Type": "application/yaml"},
    )
    state = "ready" if done.get("created") else "unchanged"
    out.print(f"{done['revision']} {state}  {'  '.join(done.get('urls') or [])}", highlight=False)
