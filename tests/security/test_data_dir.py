"""Local users against the data dir: the database (with `--env` values, also in SQLite's WAL),
sources, pushed repositories, keys, HAProxy's files and the logs must be the owner's alone.

A real control plane (its own data dir) deploys a service from source with an `--env` value and
takes a `git push`; then every file and folder under the data dir is checked for group or other
bits. A restart over a data dir an older Slipway left readable shows it tightened at start.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import Slipway, write_app

pytestmark = pytest.mark.integration

ENV_VALUE = "hunter2-not-for-local-users"


def _offenders(root: Path) -> list[str]:
    """Every path under `root` (itself included) a group or other user could read, write or
    enter, as `mode path`; symlinks are not followed (their own bits mean nothing)."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = os.lstat(path).st_mode
        if not stat.S_ISLNK(mode) and mode & 0o077:
            found.append(f"{stat.filemode(mode)} {path.relative_to(root.parent)}")
    return found


def _push(slipway: Slipway, folder: Path, service: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.test",
        "GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@example.test",
        "GIT_TERMINAL_PROMPT": "0",
    }  # fmt: skip
    remote = f"http://x:{slipway.token}@localhost:{slipway.ingress_port}/git/{service}.git"
    for args in (
        ["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "v1"],
        ["push", "-q", remote, "main"],
    ):  # fmt: skip
        subprocess.run(["git", *args], cwd=folder, env=env, check=True, capture_output=True,
                       timeout=300)  # fmt: skip


@pytest.fixture(scope="module")
def used(slipway: Slipway, tmp_path_factory: pytest.TempPathFactory) -> Slipway:
    """The platform after a deploy from source with an `--env` value and a `git push`."""
    tmp = tmp_path_factory.mktemp("datadir")
    app = write_app(tmp / "app", body="private\n")
    out = slipway.cli("deploy", "envy", "--source", str(app), "--env", f"API_KEY={ENV_VALUE}")
    assert "envy-00001 ready" in out.stdout
    _push(slipway, write_app(tmp / "pushed", body="pushed\n"), "pushed")
    assert slipway.get("pushed").text == "pushed\n"
    return slipway


def test_nothing_in_the_data_dir_is_readable_by_other_users(used: Slipway) -> None:
    data = used.data_dir
    db = data / "slipway.db"
    wal = data / "slipway.db-wal"
    # What the check must cover is there: the database holds the value, the repository a pack.
    assert db.exists() and wal.exists()
    assert any(ENV_VALUE.encode() in p.read_bytes() for p in (db, wal))
    assert list((data / "git" / "pushed.git" / "objects" / "pack").glob("*.pack"))
    # Sources are deleted when their build ends (test_bombs.py); their folder stays.
    assert (data / "sources").is_dir() and list((data / "haproxy").glob("*.sock"))

    assert _offenders(data) == []
    assert stat.S_IMODE(data.stat().st_mode) == 0o700


def test_a_readable_data_dir_is_tightened_when_the_control_plane_starts(used: Slipway) -> None:
    data = used.data_dir
    used.stop()
    # What an older Slipway, or a careless operator, left behind.
    data.chmod(0o755)
    (data / "slipway.db").chmod(0o644)
    (data / "sources").chmod(0o755)
    old_log = data / "logs" / "old.log"
    old_log.write_text(f"API_KEY={ENV_VALUE}\n")
    old_log.chmod(0o644)
    outside = data.parent / "outside.txt"  # a symlink's target is not the data dir's to change
    outside.write_text("not slipway's\n")
    outside.chmod(0o644)
    (data / "link-out").symlink_to(outside)

    used.start()

    assert _offenders(data) == []
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644
    assert used.get("envy").text == "private\n"
