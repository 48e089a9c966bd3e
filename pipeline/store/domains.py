"""Domain mappings: a custom host routed to a service (Knative's `DomainMapping`), one row each.

The host is the key, so a host maps to one service at most; `put` refuses a host another
service holds (which hosts a mapping may take at all is decided in `pipeline.tls.hosts`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import DateTime, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from pipeline.core.errors import Conflict, NotFound
from pipeline.store.models import Base, utcnow


class DomainMappingRow(Base):
    __tablename__ = "domain_mappings"

    host: Mapped[str] = mapped_column(String(253), primary_key=True)
    service: Mapped[str] = mapped_column(String(63), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


@dataclass(frozen=True, kw_only=True)
class DomainMapping:
    host: str
    service: str
    created_at: datetime


def _mapping(row: DomainMappingRow) -> DomainMapping:
    return DomainMapping(host=row.host, service=row.service, created_at=row.created_at)


class DomainMappings:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def list(self) -> list[DomainMapping]:
        with self._sessions() as s:
            rows = s.scalars(select(DomainMappingRow).order_by(DomainMappingRow.host))
            return [_mapping(r) for r in rows]

    def find(self, host: str) -> DomainMapping | None:
        with self._sessions() as s:
            row = s.get(DomainMappingRow, host)
            return _mapping(row) if row is not None else None

    def put(self, *, host: str, service: str) -> tuple[DomainMapping, bool]:
        """Map `host` to `service`; (the mapping, whether it is new). Mapping a host again to
        the same service changes nothing; to another service is a Conflict."""
        with self._sessions.begin() as s:
            row = s.get(DomainMappingRow, host)
            if row is not None and row.service != service:
                raise Conflict(
                    f"host {host!r} is already mapped to service {row.service!r}; "
                    f"`slipway domains unmap {host}` first"
                )
            created = row is None
            if row is None:
                row = DomainMappingRow(host=host, service=service)
                s.add(row)
                s.flush()
            return _mapping(row), created

    def delete(self, host: str) -> DomainMapping:
        with self._sessions.begin() as s:
            row = s.get(DomainMappingRow, host)
            if row is None:
                raise NotFound(
                    f"host {host!r} is not mapped: `slipway domains list` shows the mappings"
                )
            mapping = _mapping(row)
            s.delete(row)
            return mapping
