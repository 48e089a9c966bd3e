"""The store on a real PostgreSQL server (Debian's postgresql, a throwaway cluster)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from pipeline.core.errors import NotFound
from pipeline.store import db
from pipeline.store.state import Store
from tests.integration.conftest import free_port

pytestmark = pytest.mark.postgres


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    assert found, "PostgreSQL server binaries are missing: ./scripts/test installs postgresql"
    return Path(found[-1]).parent


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    bindir = _pg_bin()
    # Not under pytest's tmp dir: that one is 0700 root, and the cluster belongs to postgres.
    root = Path(tempfile.mkdtemp(prefix="slipway-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    user = pwd.getpwnam("postgres")
    # initdb refuses to run as root: the cluster belongs to the postgres user.
    for p in (root, sock):
        os.chown(p, user.pw_uid, user.pw_gid)

    def as_pg(*argv: str) -> None:
        done = subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True,
                              text=True)  # fmt: skip
        assert done.returncode == 0, f"{argv[0]} failed:\n{done.stdout}\n{done.stderr}"

    port = free_port()
    as_pg(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    as_pg(str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "log"), "start",
          "-o", f"-p {port} -k {sock} -c listen_addresses=127.0.0.1")  # fmt: skip
    try:
        as_pg(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "slipway")
        yield f"postgresql://postgres@127.0.0.1:{port}/slipway"
    finally:
        as_pg(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_store_on_postgresql(postgres_url: str) -> None:
    engine = db.make_engine(postgres_url)
    try:
        _exercise(engine)
    finally:
        engine.dispose()  # close pooled connections before the server stops


def _exercise(engine: Engine) -> None:
    db.migrate(engine)
    db.migrate(engine)  # idempotent: an upgraded database is left as it is
    store = Store(db.session_factory(engine))

    store.put_service("hello", spec={"kind": "Service"})
    first = store.create_revision("hello", image="r/x@sha256:1", template={}, template_hash="a")
    second = store.create_revision("hello", image="r/x@sha256:2", template={}, template_hash="b")
    store.mark_revision(first.name, status="Ready")
    store.mark_revision(second.name, status="Failed", reason="ExitCode", message="exit 3")

    assert [r.name for r in store.list_revisions("hello")] == ["hello-00001", "hello-00002"]
    snap = store.snapshot()
    assert {(r.name, r.status) for r in snap.revisions} == {
        ("hello-00001", "Ready"), ("hello-00002", "Failed"),
    }  # fmt: skip
    build = store.create_build("hello", builder="dockerfile")
    store.finish_build(build.id, error="boom")
    assert store.get_build(build.id).status == "failed"

    store.delete_service("hello")
    assert store.list_revisions("hello") == []
    with pytest.raises(NotFound):
        store.get_service("hello")
    # A deleted service takes its revisions along; a new service of that name starts at 1.
    store.put_service("hello", spec={})
    assert store.create_revision("hello", image="i", template={}, template_hash="c").number == 1
