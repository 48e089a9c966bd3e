"""A deploy that runs out of disk says so and how to fix it, whichever write hit the wall: a
file (ENOSPC), SQLite (SQLITE_FULL) or PostgreSQL (SQLSTATE 53100) through SQLAlchemy."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import sqlalchemy as sa

from pipeline.api.errors import disk_full, error_event


def sqlite_full(tmp_path: Path) -> sa.exc.OperationalError:
    """A real SQLITE_FULL: a database capped at a few pages, filled through SQLAlchemy."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'small.db'}")
    with engine.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x BLOB)")
        conn.exec_driver_sql("PRAGMA max_page_count = 3")
        with pytest.raises(sa.exc.OperationalError) as caught:
            for _ in range(100):
                conn.exec_driver_sql("INSERT INTO t VALUES (zeroblob(4096))")
    return caught.value


def test_a_full_disk_is_named_with_the_fix(tmp_path: Path) -> None:
    enospc = OSError(errno.ENOSPC, "No space left on device", "/data/builds/b1.log")

    for error in (enospc, sqlite_full(tmp_path)):
        event = error_event(error)
        assert disk_full(error)
        assert (event["error"], event["status"]) == ("DiskFull", 507)
        assert "the disk is full" in event["message"] and "free space" in event["message"]
    assert "(writing /data/builds/b1.log)" in error_event(enospc)["message"]


def test_other_errors_are_not_taken_for_a_full_disk() -> None:
    for error in (OSError(errno.EACCES, "Permission denied"), RuntimeError("boom")):
        assert not disk_full(error)
        assert error_event(error)["error"] == "InternalError"
