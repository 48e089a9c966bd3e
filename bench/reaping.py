"""Leaving nothing running after a bench: the processes a throwaway platform started, found by
the paths under its temp dir, and stopped whole.

HAProxy and the daemons run in sessions of their own (they outlive the control plane by design),
so after the usual shutdown every process group the run started is signalled whole, SIGKILLed
after a timeout, and what is still there is named (an HAProxy left behind once kept spinning at
41% CPU for 40 minutes).
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import suppress
from pathlib import Path
from typing import NamedTuple

from bench.common import with_descendants

STOP_TIMEOUT_S = 10.0


class Proc(NamedTuple):
    """A process as first seen: its start time tells it from a later one given the same pid."""

    pid: int
    start: int


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, start time) from /proc now; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses
    return fields[0], int(fields[2]), int(fields[19])  # fields 3, 5 and 22 of the line


def _names(pid: int, root: Path) -> bool:
    """Does the command line or the environment (as it was at exec) name a path under `root`?"""
    needle = f"{root}/".encode()
    try:
        return any(needle in Path(f"/proc/{pid}/{part}").read_bytes()
                   for part in ("cmdline", "environ"))  # fmt: skip
    except OSError:
        return False  # gone, or not ours to read


def started_under(root: Path) -> set[Proc]:
    """The processes of a run whose files are under `root`, and their descendants: the control
    plane and what it starts carry SLIPWAY_DATA_DIR there (HAProxy, the daemons: the resolver's
    command line names no path), the registry's command line names its config there."""
    pids = {int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()}
    procs = set()
    for pid in with_descendants({pid for pid in pids if _names(pid, root)}) - {os.getpid()}:
        stat = _stat(pid)
        if stat is not None:
            procs.add(Proc(pid, stat[2]))
    return procs


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _alive(proc: Proc) -> bool:
    stat = _stat(proc.pid)
    return stat is not None and stat[0] != "Z" and stat[2] == proc.start


def _signal(procs: set[Proc], sig: signal.Signals) -> None:
    """Each process's whole group where it leads a session of its own (HAProxy's workers, a
    daemon's children, grandchildren that outlived their parent); in the bench's own group only
    the process itself."""
    own = os.getpgrp()
    for proc in procs:
        stat = _stat(proc.pid)
        if stat is None or stat[2] != proc.start:
            continue
        with suppress(ProcessLookupError, PermissionError):
            if stat[1] != own:
                os.killpg(stat[1], sig)
            else:
                os.kill(proc.pid, sig)


def reap(procs: set[Proc], *, timeout_s: float = STOP_TIMEOUT_S) -> list[str]:
    """SIGTERM to what still runs of `procs`, SIGKILL to what outlives `timeout_s`; the command
    lines of any left even then (none, unless one is stuck in the kernel)."""
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        living = {p for p in procs if _alive(p)}
        if not living:
            return []
        _signal(living, sig)
        deadline = time.monotonic() + wait_s
        while any(_alive(p) for p in living) and time.monotonic() < deadline:
            time.sleep(0.05)
    return [_cmdline(p.pid) for p in procs if _alive(p)]
