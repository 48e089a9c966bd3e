"""The bench platform's teardown (`bench.platforms.reap`) without a platform: a real HAProxy in
master-worker daemon mode (its own session, as the control plane starts it) and a process that
ignores SIGTERM, with a child and an orphan in its group, their files under a run's temp dir;
after the reap nothing of either runs. `python -m bench.scale` runs the whole teardown."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.reaping import reap, started_under

HAPROXY = shutil.which("haproxy")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def in_group(pgid: int) -> list[int]:
    """Live processes of a process group, from /proc now."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "slipway-bench-x"
    root.mkdir()
    yield root
    reap(started_under(root), timeout_s=1)  # whatever a failed case left


def start_haproxy(root: Path) -> int:
    """HAProxy as the control plane starts it (-W -D, a pid file and a master socket); its
    master's pid, the leader of its group."""
    assert HAPROXY, "haproxy is not installed: ./scripts/test installs it"
    (root / "haproxy.cfg").write_text(
        "global\n  master-worker\ndefaults\n  mode http\n  timeout client 5s\n"
        "  timeout connect 5s\n  timeout server 5s\n"
        f"frontend f\n  bind 127.0.0.1:{free_port()}\n  http-request return status 200\n"
    )
    subprocess.run(
        [HAPROXY, "-W", "-D", "-p", str(root / "haproxy.pid"),
         "-S", f"{root / 'master.sock'},mode,600", "-f", str(root / "haproxy.cfg")],
        stdin=subprocess.DEVNULL, start_new_session=True, check=True, timeout=30,
    )  # fmt: skip
    master = int((root / "haproxy.pid").read_text().split()[0])
    deadline = time.monotonic() + 10
    while len(in_group(master)) < 2:  # the master and its worker
        assert time.monotonic() < deadline, "HAProxy's worker did not start"
        time.sleep(0.05)
    return master


def test_haproxy_and_a_process_deaf_to_sigterm_are_gone_with_their_groups(run_dir: Path) -> None:
    master = start_haproxy(run_dir)
    # A daemon's shape: its own session, SIGTERM ignored (its child inherits that), and
    # SLIPWAY_DATA_DIR under the run's dir in its environment but no path there in its command
    # line; and an orphan in its group that names nothing there: only its group finds it.
    deaf = subprocess.Popen(
        ["sh", "-c", "(env -i sleep 600 &); trap '' TERM; sleep 600 & wait"],
        env={**os.environ, "SLIPWAY_DATA_DIR": str(run_dir / "data")},
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while len(in_group(deaf.pid)) < 3:
        assert time.monotonic() < deadline, "the child did not start"
        time.sleep(0.05)

    started = started_under(run_dir)
    assert {master, deaf.pid} <= {p.pid for p in started}
    assert os.getpid() not in {p.pid for p in started}

    assert reap(started, timeout_s=1) == []
    assert deaf.wait(timeout=5) == -9, "it outlived SIGTERM: SIGKILL after the timeout"
    assert in_group(master) == [] and in_group(deaf.pid) == [], "a whole group is gone"
    assert started_under(run_dir) == set()


def test_a_process_in_the_bench_own_group_is_killed_alone(run_dir: Path) -> None:
    """The control plane runs in the bench's group: it is signalled itself, never the group
    (which would take the bench down)."""
    script = f"import time; open({str(run_dir / 'log')!r}, 'w'); time.sleep(600)"
    child = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 10
    while not (started := started_under(run_dir)):  # its /proc entry can lag its exec a moment
        assert time.monotonic() < deadline, "the child is not found under the run's dir"
        time.sleep(0.05)
    assert [p.pid for p in started] == [child.pid]
    assert reap(started, timeout_s=5) == []
    assert child.wait(timeout=5) == -15  # SIGTERM was enough
