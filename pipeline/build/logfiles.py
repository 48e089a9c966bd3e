"""Build logs on disk: read whole, or followed while the build runs (like `tail -f`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

CHUNK = 64 * 1024


def read(path: Path) -> Iterator[bytes]:
    if path.exists():
        with path.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                yield chunk


def follow(
    path: Path, *, running: Callable[[], bool], poll_s: float = 0.2, max_s: float = 3600
) -> Iterator[bytes]:
    """Yield the log as it grows; stop once the build is no longer running and all is sent."""
    deadline = time.monotonic() + max_s
    offset = 0
    while time.monotonic() < deadline:
        still_running = running()  # checked before reading, so the last lines are never lost
        if path.exists():
            with path.open("rb") as fh:
                fh.seek(offset)
                while chunk := fh.read(CHUNK):
                    offset += len(chunk)
                    yield chunk
        if not still_running:
            return
        time.sleep(poll_s)
