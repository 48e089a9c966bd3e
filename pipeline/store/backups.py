"""Backup and restore of one Slipway: the database and the files beside it, in one archive.

A backup is taken while the platform runs: SQLite through its online backup API (a consistent
copy even while the reconciler writes), PostgreSQL through `pg_dump`; then the files that make
the platform *this* platform: signing keys (tokens minted before still verify), the secrets key
and sealed secrets, the git repositories, the admin token and webhook secrets, the TLS material.
Build logs, stored sources, HAProxy's files and run state are not in it: they are made again.
With an image writer (`slipway backup --with-images`) the archive also holds the images the
revisions pin, byte for byte (written by `build.imagecopy`, handed in by the CLI: this layer
knows no registry).

A restore writes all of that into an empty data dir (or over one with `force`) while the control
plane is stopped; at its next start the migrations bring an older backup forward and the
reconciler brings every revision back from the registry, with the same traffic and tags.
Images in the archive are staged in `<data>/restore/images/` (`staged_images`); the CLI pushes
them at once if the registry answers, else the control plane does when it next starts.

    slipway-backup.tar.gz
      MANIFEST.json        format, Slipway version, when, what database
      database/slipway.db  or database/postgres.sql
      data/<entry>         the entries of DATA_ENTRIES that existed
      images/...           with --with-images: see `build.imagecopy`
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import sqlalchemy

from pipeline import __version__
from pipeline.core.errors import Conflict, InvalidInput, Unavailable
from pipeline.core.settings import Settings
from pipeline.store import db

FORMAT = 1
DATA_ENTRIES = (
    "keys", "secret.key", "secrets", "git", "admin-token",
    "github-webhook-secret", "gitlab-webhook-secret", "tls",
)  # fmt: skip
_SQLITE = "database/slipway.db"
_POSTGRES = "database/postgres.sql"
_IMAGES = "images"


class ImageWriter(Protocol):
    """Writes the images of `images` (digest-pinned references) into the archive; `scratch` is
    a private folder beside it for files on their way in."""

    def __call__(self, tar: tarfile.TarFile, *, images: tuple[str, ...], scratch: Path) -> None: ...


def staged_images(data_dir: Path) -> Path:
    """Where a restore leaves the archive's images until they are pushed to the registry."""
    return data_dir / "restore" / _IMAGES


@dataclass(frozen=True, kw_only=True)
class Manifest:
    format: int
    version: str
    created: float
    database: str  # "sqlite" | "postgresql"
    entries: tuple[str, ...]
    images: bool = False  # the archive holds images/ (a backup taken --with-images)

    def to_json(self) -> bytes:
        return json.dumps({**self.__dict__, "entries": list(self.entries)}, indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        raw = json.loads(data)
        if raw.get("format") != FORMAT:
            raise InvalidInput(
                f"backup format {raw.get('format')!r} is not one this Slipway reads ({FORMAT}): "
                "restore it with the Slipway version that made it"
            )
        return cls(format=FORMAT, version=str(raw["version"]), created=float(raw["created"]),
                   database=str(raw["database"]), entries=tuple(raw["entries"]),
                   images=bool(raw.get("images", False)))  # fmt: skip


def backup(settings: Settings, target: Path, *, images: ImageWriter | None = None) -> Manifest:
    """Write the archive to `target` (mode 0600, written whole or not at all); with `images`,
    the images the revisions of the copied database pin go in too."""
    data = settings.data_dir
    entries = tuple(e for e in DATA_ENTRIES if (data / e).exists())
    kind = "postgresql" if settings.database_url else "sqlite"
    manifest = Manifest(format=FORMAT, version=__version__, created=time.time(),
                        database=kind, entries=entries, images=images is not None)  # fmt: skip
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".slipway-backup-") as tmp:
        dump = Path(tmp) / "database"
        _dump_database(settings, dump)
        partial = Path(tmp) / "archive.tar.gz"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            _add_bytes(tar, "MANIFEST.json", manifest.to_json())
            tar.add(dump, arcname=_SQLITE if kind == "sqlite" else _POSTGRES)
            for entry in entries:
                tar.add(data / entry, arcname=f"data/{entry}")
            if images is not None:
                scratch = Path(tmp) / "scratch"
                scratch.mkdir()
                images(tar, images=_pinned_images(settings, dump), scratch=scratch)
        os.replace(partial, target)
    return manifest


def restore(settings: Settings, archive: Path, *, force: bool = False) -> Manifest:
    """Bring a backup into this machine's data dir; the control plane must be stopped."""
    _refuse_if_running(settings)
    data = settings.data_dir
    if not force and _has_state(settings):
        raise Conflict(
            f"{data} already holds a Slipway (its database has services): restore into an empty "
            "data dir, or pass --force to replace it"
        )
    with tarfile.open(archive, mode="r:gz") as tar:
        manifest = Manifest.from_json(_read_member(tar, "MANIFEST.json"))
        with tempfile.TemporaryDirectory(prefix=".slipway-restore-", dir=_parent(data)) as tmp:
            tar.extractall(tmp, filter="data")
            data.mkdir(parents=True, exist_ok=True, mode=0o700)
            for entry in manifest.entries:
                _replace(Path(tmp) / "data" / entry, data / entry)
            _load_database(settings, Path(tmp), manifest.database)
            _stage_images(Path(tmp) / _IMAGES, staged_images(data))
    return manifest


def _stage_images(extracted: Path, staged: Path) -> None:
    """The archive's images wait in the data dir for the registry; images an earlier restore
    left there belong to another database and go."""
    if staged.exists():
        shutil.rmtree(staged)
    if extracted.is_dir():
        staged.parent.mkdir(exist_ok=True, mode=0o700)
        shutil.move(extracted, staged)


def _pinned_images(settings: Settings, dump: Path) -> tuple[str, ...]:
    """Every image a revision pins (tags point at revisions, so this covers them too): read
    from the SQLite copy just taken, or from PostgreSQL right after its dump."""
    query = "SELECT DISTINCT image FROM revisions ORDER BY image"
    if not settings.database_url:
        with contextlib.closing(sqlite3.connect(dump)) as copy:
            return tuple(str(r[0]) for r in copy.execute(query))
    engine = db.make_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            return tuple(str(r[0]) for r in conn.execute(sqlalchemy.text(query)))
    finally:
        engine.dispose()


def _dump_database(settings: Settings, dump: Path) -> None:
    if settings.database_url:
        _run(["pg_dump", "--clean", "--if-exists", "--no-owner", "--file", str(dump),
              settings.database_url], what="pg_dump")  # fmt: skip
        return
    source = sqlite3.connect(f"file:{_sqlite_path(settings)}?mode=ro", uri=True)
    copy = sqlite3.connect(dump)
    try:
        source.backup(copy)  # SQLite's online backup: consistent while others write
    finally:
        copy.close()
        source.close()


def _load_database(settings: Settings, tmp: Path, kind: str) -> None:
    if kind == "postgresql":
        if not settings.database_url:
            raise InvalidInput("the backup holds a PostgreSQL dump: set SLIPWAY_DATABASE_URL")
        _run(["psql", "-v", "ON_ERROR_STOP=1", "--quiet", "--file", str(tmp / _POSTGRES),
              settings.database_url], what="psql")  # fmt: skip
        return
    if settings.database_url:
        raise InvalidInput("the backup holds SQLite: unset SLIPWAY_DATABASE_URL to restore it")
    path = _sqlite_path(settings)
    for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        stale.unlink(missing_ok=True)
    shutil.copyfile(tmp / _SQLITE, path)
    path.chmod(0o600)


def _sqlite_path(settings: Settings) -> Path:
    return Path(settings.db_url.removeprefix("sqlite:///"))


def _has_state(settings: Settings) -> bool:
    if settings.database_url:
        return False  # an operator pointing at a database knows what is in it
    path = _sqlite_path(settings)
    if not path.exists():
        return False
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return "services" in tables and db.execute("SELECT count(*) FROM services").fetchone()[0]


def _refuse_if_running(settings: Settings) -> None:
    pid_file = settings.data_dir / "run" / "control-plane.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return
    raise Conflict(
        f"the control plane is running (pid {pid}): stop it first (./scripts/down), restore, "
        "then start it again (./scripts/up)"
    )


def _replace(source: Path, target: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    else:
        target.unlink(missing_ok=True)
    shutil.move(source, target)


def _parent(data: Path) -> Path:
    data.parent.mkdir(parents=True, exist_ok=True)
    return data.parent


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _read_member(tar: tarfile.TarFile, name: str) -> bytes:
    try:
        member = tar.extractfile(name)
    except KeyError:
        member = None
    if member is None:
        raise InvalidInput(f"not a Slipway backup: it has no {name}")
    return member.read()


def _run(argv: list[str], *, what: str) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
    except FileNotFoundError as e:
        raise Unavailable(f"{what} is not installed: apt-get install postgresql-client") from e
    if done.returncode != 0:
        raise Unavailable(f"{what} failed: {done.stderr.strip()[-500:]}")
