"""A recording stand-in for the API client, for tests that drive the `slipway` command in-process.

`install(monkeypatch)` makes `Client.from_env` hand out a `Recorder`: it answers requests from a
table, streams the events it is given, and records every call (method, path, keyword arguments).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from pipeline.cli.client import Client, ClientError
from pipeline.cli.main import app

DONE = {"event": "done", "revision": "hello-00002", "created": True, "urls": ["http://hello.x"]}


class Recorder:
    """Stands in for `Client`: answers from a table, streams the given events, records calls."""

    def __init__(self, replies: dict[tuple[str, str], Any], events: list[dict[str, Any]]) -> None:
        self.replies = replies
        self.events = events
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        self.calls.append((method, path, kwargs))
        reply = self.replies[(method, path)]
        if isinstance(reply, ClientError):
            raise reply
        return reply

    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        self.calls.append((method, path, kwargs))
        yield from self.events

    def stream_text(self, path: str, **kwargs: Any) -> Iterator[str]:
        self.calls.append(("GET", path, kwargs))
        yield "step 1\n"


def install(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    fake = Recorder({}, [DONE])
    monkeypatch.setattr(Client, "from_env", classmethod(lambda cls: fake))
    return fake


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    """`slipway ARGS` in-process, 200 columns wide (tables stay on one line)."""
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})
