"""Desired state as plain frozen values: what the store hands out and everything above
decides on. Detached from any database session, so pure code can take and return them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Service:
    name: str
    spec: dict[str, Any]
    generation: int
    created_at: datetime


@dataclass(frozen=True, kw_only=True)
class Revision:
    name: str
    service: str
    number: int
    image: str
    template: dict[str, Any]
    template_hash: str
    status: str
    reason: str
    message: str
    build_id: str | None
    created_at: datetime
    ready_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class Build:
    id: str
    service: str
    status: str
    builder: str
    image: str
    error: str
    created_at: datetime
    finished_at: datetime | None
    started_at: datetime | None = None

    @property
    def unfinished(self) -> bool:
        return self.status in UNFINISHED_BUILDS


UNFINISHED_BUILDS = ("queued", "running")


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    services: tuple[Service, ...]
    revisions: tuple[Revision, ...]

    def revisions_of(self, service: str) -> list[Revision]:
        return sorted((r for r in self.revisions if r.service == service), key=lambda r: r.number)
