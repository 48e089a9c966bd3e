"""`slipway logs SERVICE`: every instance's stdout and stderr merged in time order, or with
`--requests` the requests HAProxy passed to the service; `--follow` streams until Ctrl-C.

One GET /v1/services/<name>/logs (NDJSON, `pipeline.api.logs`); one printed line per event:

    2026-11-30T12:00:00.123Z hello-00002/i-ab12 [stdout] listening on 8080
    2026-11-30T12:00:01.456Z hello-00002/i-ab12 GET /api/items 200 12ms
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer

from pipeline.cli.client import Client, ClientError
from pipeline.cli.output import err, fail

Service = Annotated[str, typer.Argument(help="Service name.")]
Revision = Annotated[str, typer.Option("--revision", help="Only this revision's instances.")]
Follow = Annotated[
    bool, typer.Option("--follow", "-f", help="Keep streaming new lines until Ctrl-C.")
]
Since = Annotated[
    str,
    typer.Option("--since", help="Only newer lines: 10m, 1h30m, 45s, or an RFC 3339 time."),
]
Tail = Annotated[int | None, typer.Option("--tail", help="Only the last N lines (then follow).")]
Requests = Annotated[
    bool,
    typer.Option("--requests", help="Request logs from HAProxy: method, path, status, time."),
]


def logs(
    service: Service,
    revision: Revision = "",
    follow: Follow = False,
    since: Since = "",
    tail: Tail = None,
    requests: Requests = False,
) -> None:
    """Print a service's logs (every instance, stopped ones too until removed)."""
    params: dict[str, str | int] = {}
    if revision:
        params["revision"] = revision
    if since:
        params["since"] = since
    if tail is not None:
        params["tail"] = tail
    if follow:
        params["follow"] = "1"
    if requests:
        params["requests"] = "1"
    try:
        for event in Client.from_env().stream("GET", f"/v1/services/{service}/logs", params=params):
            show(event)
    except ClientError as e:
        raise fail(e.message) from e
    except BrokenPipeError:
        # `slipway logs x | head`: the reader left; say nothing more, not even at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def show(event: dict[str, Any]) -> None:
    kind = event.get("event")
    if kind == "error":
        raise fail(str(event.get("message", "")))
    if kind == "dropped":
        err.print(f"({event['lines']} request lines dropped: this reader fell behind)")
        return
    line = line_of(event)
    if line is not None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def line_of(event: dict[str, Any]) -> str | None:
    """The printed line for a log or request event; None for any other event."""
    kind = event.get("event")
    if kind == "log":
        where = f"{event['revision']}/{event['instance']}"
        return f"{short_time(event['time'])} {where} [{event['stream']}] {event['line']}"
    if kind == "request":
        where = f"{event['revision']}/{event['instance'] or '-'}"
        took = f"{event['duration_ms']}ms" if event["duration_ms"] >= 0 else "-"
        status = event["status"] if event["status"] >= 0 else "-"
        request = f"{event['method']} {event['path']} {status} {took}"
        return f"{short_time(event['time'])} {where} {request}"
    return None


def short_time(stamp: str) -> str:
    """`2026-11-30T12:00:00.123456789Z` -> `2026-11-30T12:00:00.123Z` (milliseconds)."""
    return f"{stamp[:23]}Z" if len(stamp) > 23 and stamp[19] == "." else stamp
