"""`slipway revisions`: a service's revisions, newest first, with their traffic and status."""

from __future__ import annotations

from rich.table import Table

from pipeline.cli.formats import Format, Output, print_rows
from pipeline.cli.output import call


def instances_cell(counts: dict[str, int]) -> str:
    """Running instances, and the frozen ones beside them: "0 (1 frozen)"."""
    frozen = counts.get("frozen", 0)
    return f"{counts['running']}" + (f" ({frozen} frozen)" if frozen else "")


def list_revisions(service: str, output: Output = Format.table) -> None:
    rows = call("GET", f"/v1/services/{service}/revisions")
    table = Table(
        "REVISION", "STATUS", "TRAFFIC", "TAGS", "INSTANCES", "CREATED", "READY", "DIGEST",
        "REASON", box=None,
    )  # fmt: skip
    for r in rows:
        table.add_row(
            r["name"], r["status"], f"{r['traffic']}%", ",".join(r["tags"]) or "-",
            instances_cell(r["instances"]), r["created"][:19], (r["ready_at"] or "-")[:19],
            r["image"].rsplit("@", 1)[-1][:19], r["reason"],
        )  # fmt: skip
    print_rows(rows, output=output, table=table)
