"""Build processes (`docker build`, `pack build`): run, stream, cancel, time out.

Every build runs as a subprocess in its own process group, so a cancel or a timeout kills the
whole build (SIGTERM, then SIGKILL): when the `docker` CLI dies, its BuildKit session ends and the
engine cancels the build, RUN step included (for a context folder; see `buildkit`). Output is
read line by line and handed on as it comes; the last lines are kept for the error message.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.errors import BuildCancelled, BuildFailed, Unavailable

TAIL_LINES = 20
MAX_LINE = 16 * 1024  # a longer line is cut (the rest would only bloat events and the log)
KILL_AFTER_S = 5.0
CANCELLED = "cancelled"


class BuildControl:
    """Cancel one build from another thread (an API call, the timeout timer)."""

    def __init__(self, build_id: str) -> None:
        self.build_id = build_id
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self.reason = ""  # why it was stopped; "" while it may go on
        self.changed = threading.Event()

    @property
    def stopped(self) -> bool:
        return bool(self.reason)

    def attach(self, proc: subprocess.Popen[bytes] | None) -> None:
        with self._lock:
            self._proc = proc
            stopped = self.stopped
        if stopped and proc is not None:
            _terminate(proc)

    def cancel(self, reason: str) -> None:
        with self._lock:
            if not self.reason:
                self.reason = reason
            proc = self._proc
        self.changed.set()
        if proc is not None:
            _terminate(proc)

    def check(self, *, where: str = "") -> None:
        if self.reason:
            error = BuildCancelled if self.reason == CANCELLED else BuildFailed
            raise error(f"build {self.reason}{where}")


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    def kill() -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=KILL_AFTER_S)
                return
            except subprocess.TimeoutExpired:
                continue

    threading.Thread(target=kill, name="build-kill", daemon=True).start()


@dataclass(frozen=True, kw_only=True)
class Finished:
    returncode: int
    tail: list[str]


def run(
    argv: Sequence[str],
    *,
    on_line: Callable[[str], None],
    control: BuildControl,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    cwd: Path | None = None,
    missing: str = "",
) -> Finished:
    """Run `argv`, streaming each output line (stdout and stderr merged) to `on_line`."""
    control.check()
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    except FileNotFoundError:
        if missing:
            raise BuildFailed(missing) from None
        raise Unavailable(f"{argv[0]} is not installed") from None
    control.attach(proc)
    if stdin is not None:
        threading.Thread(target=_feed, args=(proc, stdin), daemon=True).start()
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            for part in raw.decode("utf-8", errors="replace").rstrip("\n").split("\r"):
                line = part.rstrip()
                if not line:
                    continue
                if len(line) > MAX_LINE:
                    line = line[:MAX_LINE] + " […line cut]"
                tail.append(line)
                on_line(line)
        returncode = proc.wait()
    finally:
        control.attach(None)
        if proc.poll() is None:
            _terminate(proc)
    control.check()
    return Finished(returncode=returncode, tail=list(tail))


def _feed(proc: subprocess.Popen[bytes], data: bytes) -> None:
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError, OSError):
        proc.stdin.write(data)
    with contextlib.suppress(BrokenPipeError, OSError):
        proc.stdin.close()
