"""`-o table|json|yaml` for every list and describe, and tables that survive a pipe.

A table fits the terminal it is printed on; piped or redirected, no terminal width applies, so
each row is printed whole on one line (rich would otherwise cut it to 80 columns, or to the
width of whatever terminal stdin happens to be). JSON and YAML are written to stdout as plain
text, never through rich's highlighter, so they pipe cleanly into `jq` and `yq`.
"""

from __future__ import annotations

import io
import json
import sys
from enum import StrEnum
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console, RenderableType

from pipeline.cli.output import out

# Wide enough for any row: the table takes only the width its cells need (it does not expand).
UNBOUNDED_WIDTH = 100_000


class Format(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


Output = Annotated[
    Format,
    typer.Option(
        "--output", "-o", case_sensitive=False, help="table (the default), json or yaml."
    ),
]


def print_data(data: Any, *, output: Format) -> None:
    """`data` as JSON or YAML on stdout (`output` is json or yaml)."""
    if output is Format.json:
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    else:
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
    sys.stdout.write(text)
    sys.stdout.flush()


def print_rows(rows: Any, *, output: Format, table: RenderableType) -> None:
    """A list command's answer: its table, or the rows themselves as JSON or YAML."""
    if output is Format.table:
        print_table(table)
    else:
        print_data(rows, output=output)


def print_table(table: RenderableType) -> None:
    """On a terminal, fit the table to it; otherwise every row whole, without trailing blanks."""
    if _on_terminal():
        out.print(table)
        return
    buffer = io.StringIO()
    Console(file=buffer, width=UNBOUNDED_WIDTH, color_system=None, soft_wrap=True).print(table)
    lines = [line.rstrip() for line in buffer.getvalue().splitlines()]
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()


def _on_terminal() -> bool:
    # stdout itself: rich also says "terminal" for a pipe when FORCE_COLOR is set.
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty and isatty())
