"""The reconciler's read of desired state, once a pass: only rows that changed are loaded whole.

A pass reads every service and revision. Building each one from its ORM row (and parsing its
JSON spec or template) cost about 0.2 s a pass at 500 services, nearly all of it for rows that
had not changed. So each pass reads the rows' small columns only (no JSON, datetimes as stored),
and loads whole — through the ORM, as before — just the rows whose small columns differ from the
last read: new ones, a service whose spec was replaced (its generation and `updated_at` move), a
revision whose status or condition changed. Unchanged rows are the same `Service`/`Revision`
objects as last time, and with nothing changed the same `Snapshot` comes back: callers may
compare by identity to skip work (the planner's route table does).

This reads the database every time, so writes by anyone (another process, a restore) are seen
on the next read: there is no invalidation to get wrong.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import String, select, type_coerce
from sqlalchemy.orm import Session, sessionmaker

from pipeline.core.records import Revision, Service, Snapshot
from pipeline.store.models import RevisionRow, ServiceRow

T = TypeVar("T")

_SERVICE_KEY = (
    ServiceRow.name,
    ServiceRow.generation,
    # As stored: comparing them needs no parsing (SQLite keeps text; PostgreSQL's are cheap).
    type_coerce(ServiceRow.created_at, String),
    type_coerce(ServiceRow.updated_at, String),
)
_REVISION_KEY = (
    RevisionRow.name,
    RevisionRow.service,
    RevisionRow.number,
    RevisionRow.image,
    RevisionRow.template_hash,
    RevisionRow.status,
    RevisionRow.reason,
    RevisionRow.message,
    RevisionRow.build_id,
    type_coerce(RevisionRow.created_at, String),
    type_coerce(RevisionRow.ready_at, String),
)


class Snapshots:
    """`Store.snapshot`'s reader: remembers the last read's rows by their small columns."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        service: Callable[[ServiceRow], Service],
        revision: Callable[[RevisionRow], Revision],
    ) -> None:
        self._sessions = sessions
        self._service = service
        self._revision = revision
        self._services: dict[str, tuple[tuple[Any, ...], Service]] = {}
        self._revisions: dict[str, tuple[tuple[Any, ...], Revision]] = {}
        self._last: Snapshot | None = None
        self._lock = threading.Lock()  # the API's threads read it too

    def read(self) -> Snapshot:
        with self._lock, self._sessions() as s:
            service_keys = [tuple(r) for r in s.execute(select(*_SERVICE_KEY))]
            revision_keys = [tuple(r) for r in s.execute(select(*_REVISION_KEY))]
            self._services = _merged(
                self._services,
                service_keys,
                load=lambda names: {
                    r.name: self._service(r)
                    for r in s.scalars(select(ServiceRow).where(ServiceRow.name.in_(names)))
                },
            )
            self._revisions = _merged(
                self._revisions,
                revision_keys,
                load=lambda names: {
                    r.name: self._revision(r)
                    for r in s.scalars(select(RevisionRow).where(RevisionRow.name.in_(names)))
                },
            )
            # In key order; a row deleted between the two reads is left out (the next read
            # settles it).
            services = tuple(
                self._services[k[0]][1] for k in service_keys if k[0] in self._services
            )
            revisions = tuple(
                self._revisions[k[0]][1] for k in revision_keys if k[0] in self._revisions
            )
            last = self._last
            if (
                last is not None
                and _same(last.services, services)
                and _same(last.revisions, revisions)
            ):
                return last
            self._last = Snapshot(services=services, revisions=revisions)
            return self._last


def _merged(
    cached: dict[str, tuple[tuple[Any, ...], T]],
    keys: Sequence[tuple[Any, ...]],
    *,
    load: Callable[[list[str]], dict[str, T]],
) -> dict[str, tuple[tuple[Any, ...], T]]:
    """The rows now (by name), reusing the cached value of each whose key did not change."""
    kept = {k[0]: cached[k[0]] for k in keys if k[0] in cached and cached[k[0]][0] == k}
    missing = [str(k[0]) for k in keys if k[0] not in kept]
    if missing:
        loaded = load(missing)
        kept |= {k[0]: (k, loaded[k[0]]) for k in keys if k[0] in loaded and k[0] not in kept}
    return kept


def _same(a: Sequence[object], b: Sequence[object]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))
