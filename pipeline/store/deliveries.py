"""Webhook deliveries: one row per delivery id, for replay protection and for visibility.

A delivery id (`X-GitHub-Delivery`, `X-Gitlab-Event-UUID`) is recorded once, before anything is
built; a second request with the same id is answered "duplicate" and builds nothing. The row then
says what became of it: "accepted" while the runner works, then "ignored: …", "built: <rev>",
"failed: <message>" (one part per service when several follow the same repository).

A delivery id is not signed by GitHub, so the same signed body with a new id is a new delivery.
What stops such a replay from rolling a service back is `deployed_refs`: the commit each tracked
ref (a branch, or a pull request's preview tag) last deployed; the runner builds a push only if
its commit is newer than that one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import DateTime, String, Text, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from pipeline.core.errors import NotFound
from pipeline.store.models import Base, utcnow

DELIVERY_ID_MAX = 128


class DeliveryRow(Base):
    __tablename__ = "deliveries"

    id: Mapped[str] = mapped_column(String(DELIVERY_ID_MAX), primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))  # github | gitlab
    event: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )
    service: Mapped[str | None] = mapped_column(String(255), nullable=True)
    action: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str] = mapped_column(Text, default="accepted")
    build_id: Mapped[str | None] = mapped_column(String(32), nullable=True)


class DeployedRefRow(Base):
    __tablename__ = "deployed_refs"

    service: Mapped[str] = mapped_column(String(255), primary_key=True)
    ref: Mapped[str] = mapped_column(String(255), primary_key=True)
    sha: Mapped[str] = mapped_column(String(40))
    deployed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


@dataclass(frozen=True, kw_only=True)
class Delivery:
    id: str
    provider: str
    event: str
    received_at: datetime
    service: str | None
    action: str
    outcome: str
    build_id: str | None


def _delivery(row: DeliveryRow) -> Delivery:
    return Delivery(
        id=row.id,
        provider=row.provider,
        event=row.event,
        received_at=row.received_at,
        service=row.service,
        action=row.action,
        outcome=row.outcome,
        build_id=row.build_id,
    )


class Deliveries:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def record_new(
        self,
        *,
        id: str,
        provider: str,
        event: str,
        service: str | None,
        action: str,
        outcome: str,
    ) -> bool:
        """Record a delivery; False when its id was seen before (a replay: build nothing)."""
        try:
            with self._sessions.begin() as s:
                s.add(
                    DeliveryRow(
                        id=id,
                        provider=provider,
                        event=event[:64],
                        service=service,
                        action=action,
                        outcome=outcome,
                    )
                )
        except IntegrityError:
            return False
        return True

    def set_outcome(self, id: str, *, outcome: str, build_id: str | None = None) -> None:
        with self._sessions.begin() as s:
            row = s.get(DeliveryRow, id)
            if row is None:
                raise NotFound(f"delivery {id!r} not found")
            row.outcome = outcome
            if build_id is not None:
                row.build_id = build_id

    def set_build(self, id: str, build_id: str) -> None:
        with self._sessions.begin() as s:
            row = s.get(DeliveryRow, id)
            if row is not None:
                row.build_id = build_id

    def get(self, id: str) -> Delivery:
        with self._sessions() as s:
            row = s.get(DeliveryRow, id)
            if row is None:
                raise NotFound(f"delivery {id!r} not found")
            return _delivery(row)

    def recent(self, *, limit: int = 50) -> list[Delivery]:
        with self._sessions() as s:
            rows = s.scalars(
                select(DeliveryRow).order_by(DeliveryRow.received_at.desc()).limit(limit)
            )
            return [_delivery(r) for r in rows]

    def deployed_sha(self, *, service: str, ref: str) -> str | None:
        """The commit `ref` last deployed to `service` through a webhook, if any."""
        with self._sessions() as s:
            row = s.get(DeployedRefRow, (service, ref))
            return row.sha if row is not None else None

    def set_deployed(self, *, service: str, ref: str, sha: str) -> None:
        with self._sessions.begin() as s:
            row = s.get(DeployedRefRow, (service, ref))
            if row is None:
                s.add(DeployedRefRow(service=service, ref=ref, sha=sha))
            else:
                row.sha, row.deployed_at = sha, utcnow()
