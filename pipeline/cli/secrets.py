"""`slipway secrets`: set (a new version of every key), list and delete secrets (refused while a
serving revision reads one, unless --force).

`KEY=VALUE` here is not `core.pairs`: secret keys may hold `-` and `.` (file names such as
`tls.crt`; the store checks them), and no error may echo a value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pipeline.cli.formats import Format, Output, print_rows
from pipeline.cli.output import call, fail, out


def set_secret(
    name: str,
    pairs: Annotated[list[str], typer.Argument(help="KEY=VALUE, or KEY=@file to read a file.")],
) -> None:
    """Store a new version of a secret (all its keys)."""
    done = call("PUT", f"/v1/secrets/{name}", json={"data": _data(pairs)})
    out.print(f"{name} v{done['version']}  keys: {', '.join(done['keys'])}", highlight=False)


def list_secrets(output: Output = Format.table) -> None:
    rows = call("GET", "/v1/secrets")
    table = Table("SECRET", "VERSION", "KEYS", box=None)
    for r in rows:
        table.add_row(r["name"], str(r["version"]), ", ".join(r["keys"]))
    print_rows(rows, output=output, table=table)


def delete(
    name: str,
    force: Annotated[
        bool, typer.Option("--force", help="Delete even if serving revisions read it.")
    ] = False,
) -> None:
    """Delete a secret; refused while a serving revision reads it, unless --force."""
    done = call("DELETE", f"/v1/secrets/{name}", params={"force": "true"} if force else None)
    out.print(f"Deleted secret {name}", highlight=False)
    if done.get("breaks"):
        out.print(
            "These revisions cannot start new instances now (a scale-up, a restart or a crash "
            f"fails): {', '.join(done['breaks'])}; deploy their services without {name}.",
            highlight=False,
        )


def _data(pairs: list[str]) -> dict[str, str]:
    data: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise fail(f"expected KEY=VALUE or KEY=@file, got {key!r}")  # never echo values
        if value.startswith("@"):
            try:
                value = Path(value[1:]).read_text()
            except OSError as e:
                raise fail(f"cannot read {value[1:]}: {e.strerror}") from e
        data[key] = value
    return data
