"""`slipway revisions`: a service's revisions, newest first, with their traffic and status."""

from __future__ import annotations

from rich.table import Table

from pipeline.cli.formats import Format, Output, print_rows
from pipeline.cli.output import call


def list_revisions(service: str, output: Output = Format.table) -> None:
    rows = call("GET", f"/v1/services/{service}/revisions")
    table = Table(
        "REVISION", "STATUS", "TRAFFIC", "TAGS", "INSTANCES", "CREATED", "READY", "DIGEST",
        "REASON", box=None,
    )  # fmt: skip
    for r in rows:
        table.add_row(
            r["name"], r["status"], f"{r['traffic']}%", ",".join(r["tags"]) or "-",
            str(r["instances"]["running"]), r["created"][:19], (r["ready_at"] or "-")[:19],
            r["image"].rsplit("@", 1)[-1][:19], r["reason"],
        )  # fmt: skip
    print_rows(rows, output=output, table=table)
