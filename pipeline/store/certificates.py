"""Certificates: one row per certificate Slipway serves (a host, or `*.<domain>`), its chain and
what became of its last order.

The chain (public) is kept in the row; the private key never enters the database: it is a 0600
file under the data dir (`key_dir`), one per serial, written before the row points at the chain
it belongs to (so a crash between the two never pairs a chain with another chain's key).
A failed renewal leaves the chain in place, so the old certificate keeps serving; `status`,
`reason` and `message` say what went wrong and `retry_at` when Slipway tries again.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, Text, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from pipeline.core.errors import InvalidInput, NotFound
from pipeline.store.models import Base, utcnow

_NAME = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")
_SERIAL = re.compile(r"[0-9a-f]+|none")


class CertificateRow(Base):
    __tablename__ = "certificates"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    hosts: Mapped[list[str]] = mapped_column(JSON)
    issuer: Mapped[str] = mapped_column(String(16))  # "local" | "acme"
    chain_pem: Mapped[str] = mapped_column(Text, default="")  # "" until the first issuance
    serial: Mapped[str] = mapped_column(String(64), default="")
    not_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    not_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    renew_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    check_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="Pending")  # Pending|Ready|Failed
    reason: Mapped[str] = mapped_column(String(64), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    failures: Mapped[int] = mapped_column(Integer, default=0)
    retry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


@dataclass(frozen=True, kw_only=True)
class Certificate:
    """A certificate as the store holds it (its key is in `CertificateStore.key_file`)."""

    name: str
    hosts: tuple[str, ...]
    issuer: str
    chain_pem: str = ""
    serial: str = ""
    not_before: datetime | None = None
    not_after: datetime | None = None
    renew_at: datetime | None = None  # when to order the next one (ARI, else 2/3 of its life)
    check_at: datetime | None = None  # when to ask the CA's renewal info again (ACME only)
    status: str = "Pending"
    reason: str = ""
    message: str = ""
    failures: int = 0  # orders failed in a row
    retry_at: datetime | None = None  # after a failure: not before then

    @property
    def issued(self) -> bool:
        return bool(self.chain_pem)


_COLUMNS = tuple(f.name for f in fields(Certificate))


def _certificate(row: CertificateRow) -> Certificate:
    values: dict[str, Any] = {name: _utc(getattr(row, name)) for name in _COLUMNS}
    values["hosts"] = tuple(row.hosts)
    return Certificate(**values)


def _utc(value: Any) -> Any:
    # SQLite hands timezone-aware columns back naive (they were written in UTC).
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class CertificateStore:
    def __init__(self, sessions: sessionmaker[Session], *, key_dir: Path) -> None:
        self._sessions = sessions
        self.key_dir = key_dir

    def list(self) -> list[Certificate]:
        with self._sessions() as s:
            rows = s.scalars(select(CertificateRow).order_by(CertificateRow.name))
            return [_certificate(r) for r in rows]

    def get(self, name: str) -> Certificate:
        with self._sessions() as s:
            row = s.get(CertificateRow, name)
            if row is None:
                raise NotFound(
                    f"no certificate {name!r}: `slipway domains certs` lists the certificates"
                )
            return _certificate(row)

    def save(self, cert: Certificate, *, key_pem: str = "") -> None:
        """Write the row (and, with `key_pem`, first the key of its new chain; then the keys of
        its earlier chains go)."""
        if not _NAME.match(cert.name):
            raise InvalidInput(f"invalid certificate name {cert.name!r}")
        if key_pem:
            write_private(self.key_file(cert.name, cert.serial), key_pem)
        values = {name: getattr(cert, name) for name in _COLUMNS}
        values["hosts"] = list(cert.hosts)
        with self._sessions.begin() as s:
            row = s.get(CertificateRow, cert.name)
            if row is None:
                s.add(CertificateRow(**values))
            else:
                for key, value in values.items():
                    setattr(row, key, value)
        if key_pem:
            self._drop_keys(cert.name, keep=self.key_file(cert.name, cert.serial))

    def delete(self, name: str) -> None:
        with self._sessions.begin() as s:
            s.execute(delete(CertificateRow).where(CertificateRow.name == name))
        self._drop_keys(name)

    def key_file(self, name: str, serial: str) -> Path:
        return self.key_dir / f"{_file_stem(name)}.{serial or 'none'}.key"

    def key_pem(self, cert: Certificate) -> str:
        try:
            return self.key_file(cert.name, cert.serial).read_text()
        except FileNotFoundError:
            return ""

    def _drop_keys(self, name: str, *, keep: Path | None = None) -> None:
        stem = _file_stem(name)
        for path in self.key_dir.glob(f"{stem}.*.key"):
            # `a.b.*.key` also matches the keys of `a.b.c`: only a serial may follow the stem.
            if _SERIAL.fullmatch(path.name[len(stem) + 1 : -len(".key")]) and path != keep:
                path.unlink(missing_ok=True)


def _file_stem(name: str) -> str:
    return name.replace("*", "_wildcard")


def write_private(path: Path, text: str, *, mode: int = 0o600) -> None:
    """Write `text` whole (a reader sees the old file or the new one), readable by `mode`."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
