"""Tables: services, revisions, builds. The database is the desired state the reconciler reads.

A revision row is immutable once created except for its status (Pending → Ready | Failed), which
is how the user sees why a revision never took traffic.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class ServiceRow(Base):
    __tablename__ = "services"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    # The Knative Service manifest as the user last gave it (template image may be a digest).
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class RevisionRow(Base):
    __tablename__ = "revisions"
    __table_args__ = (UniqueConstraint("service", "number", name="uq_revision_number"),)

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    service: Mapped[str] = mapped_column(
        String(63), ForeignKey("services.name", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    image: Mapped[str] = mapped_column(String(512))  # pinned by digest
    template: Mapped[dict[str, Any]] = mapped_column(JSON)  # spec.template snapshot
    template_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="Pending")  # Pending|Ready|Failed
    reason: Mapped[str] = mapped_column(String(64), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    build_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ready_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class BuildRow(Base):
    __tablename__ = "builds"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    service: Mapped[str] = mapped_column(String(63), index=True)
    # queued | running | succeeded | failed | cancelled
    status: Mapped[str] = mapped_column(String(16), default="running", index=True)
    builder: Mapped[str] = mapped_column(String(32), default="dockerfile")
    image: Mapped[str] = mapped_column(String(512), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
