"""What every command prints and how it fails: the consoles, API calls whose errors become one
`error:` line and exit 1, the deployment event stream as progress lines, the traffic block.

The command modules beside this one only decide what to ask and which fields to show.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from pipeline.cli.client import Client, ClientError
from pipeline.cli.progress import INTERRUPTED, StreamPrinter, interrupted_lines

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


Event = dict[str, Any]


def follow_stream(
    method: str, path: str, *, seen: Callable[[Event], None] = lambda _ev: None, **kwargs: Any
) -> Event:
    """One streaming API request, its events printed as they arrive (each also to `seen`); the
    final event."""
    try:
        return follow(_each(Client.from_env().stream(method, path, **kwargs), seen))
    except ClientError as e:
        raise fail(e.message) from e


def _each(events: Iterator[Event], seen: Callable[[Event], None]) -> Iterator[Event]:
    for ev in events:
        seen(ev)
        yield ev


def follow(events: Iterator[dict[str, Any]]) -> dict[str, Any]:
    """Print deployment events as they arrive; return the final one. Ctrl-C stops the printing,
    not the deploy: it says so, and how to follow or cancel the build (exit 130)."""
    printer = StreamPrinter(out)
    last: dict[str, Any] = {}
    build = ""
    try:
        for ev in events:
            last = ev
            if ev.get("event") == "build":
                build = str(ev["build"])
            if ev.get("event") == "error":
                printer.close()
                if ev.get("log_tail"):
                    err.print(ev["log_tail"], highlight=False, markup=False)
                raise fail(ev["message"])
            printer.event(ev)
    except KeyboardInterrupt:
        printer.close()
        for line in interrupted_lines(build):
            err.print(line, highlight=False, markup=False)
        raise typer.Exit(code=INTERRUPTED) from None
    printer.close()
    return last


def print_traffic(view: dict[str, Any], *, header: bool = True) -> None:
    """A service's traffic block: one line per target, its tag URL after it."""
    if header:
        out.print(f"{view['name']}  {view['url']}", highlight=False)
    for t in view["traffic"]:
        tag = f"  #{t['tag']} {t['url']}" if t.get("tag") else ""
        out.print(f"  {t['percent']:>3}%  {t['revision']}{tag}", highlight=False)
