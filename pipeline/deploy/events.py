"""What a deploy tells its caller while it runs: one JSON-able event at a time.

The API streams these as NDJSON, `git push` prints them as `remote:` lines, webhooks note the
build id. Kinds: `build` (id, builder), `log` (a build output line), `stage` (a step done, with
its seconds), `revision` (created, Pending), `ready` (serving, with its URLs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Emit = Callable[[dict[str, Any]], None]


def stage(text: str, *, seconds: float = 0) -> dict[str, Any]:
    return {"event": "stage", "text": text, "seconds": seconds}


def ignore(_event: dict[str, Any]) -> None:
    """For edits nobody watches (traffic, access, tag removal)."""
