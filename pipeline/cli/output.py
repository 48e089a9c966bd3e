"""What every command prints and how it fails: the consoles, API calls whose errors become one
`error:` line and exit 1, the deployment event stream as progress lines, the traffic block.

The command modules beside this one only decide what to ask and which fields to show.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from pipeline.cli.client import Client, ClientError

# soft_wrap: long lines (digests, URLs) stay whole when piped or copied.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def fail(message: str) -> typer.Exit:
    """Print `error: message`; the caller raises what this returns (exit code 1)."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True)
    return typer.Exit(code=1)


def call(method: str, path: str, **kwargs: Any) -> Any:
    """One API request and its JSON answer."""
    try:
        return Client.from_env().request(method, path, **kwargs)
    except ClientError as e:
        raise fail(e.message) from e


def follow_stream(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """One streaming API request, its events printed as they arrive; the final event."""
    try:
        return follow(Client.from_env().stream(method, path, **kwargs))
    except ClientError as e:
        raise fail(e.message) from e


def follow(events: Iterator[dict[str, Any]]) -> dict[str, Any]:
    """Print deployment events as they arrive; return the final one."""
    last: dict[str, Any] = {}
    for ev in events:
        last = ev
        kind = ev.get("event")
        if kind == "log":
            line = str(ev["line"])
            indent = "" if line.startswith("----->") else "       "
            out.print(f"{indent}{line}", highlight=False, markup=False)
        elif kind == "build":
            out.print(f"-----> Build {ev['build']} ({ev['builder']})", highlight=False)
        elif kind == "stage":
            secs = f"   {ev['seconds']}s" if ev.get("seconds") else ""
            out.print(f"-----> {ev['text']}{secs}", highlight=False, markup=False)
        elif kind == "revision":
            out.print(
                f"-----> Revision {ev['revision']} created, waiting until ready", highlight=False
            )
        elif kind == "ready":
            out.print(f"-----> {ev['revision']} ready   {ev['seconds']}s", highlight=False)
        elif kind == "error":
            if ev.get("log_tail"):
                err.print(ev["log_tail"], highlight=False, markup=False)
            raise fail(ev["message"])
    return last


def print_traffic(view: dict[str, Any], *, header: bool = True) -> None:
    """A service's traffic block: one line per target, its tag URL after it."""
    if header:
        out.print(f"{view['name']}  {view['url']}", highlight=False)
    for t in view["traffic"]:
        tag = f"  #{t['tag']} {t['url']}" if t.get("tag") else ""
        out.print(f"  {t['percent']:>3}%  {t['revision']}{tag}", highlight=False)
