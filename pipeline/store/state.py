"""The store: every read and write of desired state goes through here.

The reconciler takes a `Snapshot` (plain frozen values, detached from the session) and decides on
it; the API and deployments write through the methods below. Revision numbers are allocated inside
one transaction so they only ever grow, also with concurrent deploys.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from pipeline.core import names
from pipeline.core.errors import Conflict, NotFound
from pipeline.core.records import UNFINISHED_BUILDS, Build, Revision, Service, Snapshot
from pipeline.store.models import BuildRow, RevisionRow, ServiceRow, utcnow
from pipeline.store.snapshots import Snapshots


def _service(row: ServiceRow) -> Service:
    return Service(
        name=row.name, spec=row.spec, generation=row.generation, created_at=row.created_at
    )


def _revision(row: RevisionRow) -> Revision:
    return Revision(
        name=row.name,
        service=row.service,
        number=row.number,
        image=row.image,
        template=row.template,
        template_hash=row.template_hash,
        status=row.status,
        reason=row.reason,
        message=row.message,
        build_id=row.build_id,
        created_at=row.created_at,
        ready_at=row.ready_at,
    )


def _build(row: BuildRow) -> Build:
    return Build(
        id=row.id,
        service=row.service,
        status=row.status,
        builder=row.builder,
        image=row.image,
        error=row.error,
        created_at=row.created_at,
        finished_at=row.finished_at,
        started_at=row.started_at,
    )


class Store:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._snapshots = Snapshots(sessions, service=_service, revision=_revision)

    # services ---------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """Every service and revision; rows unchanged since the last call are not loaded
        again, and with nothing changed it is the same object (see `snapshots`)."""
        return self._snapshots.read()

    def list_services(self) -> list[Service]:
        with self._sessions() as s:
            return [_service(r) for r in s.scalars(select(ServiceRow).order_by(ServiceRow.name))]

    def find_service(self, name: str) -> Service | None:
        with self._sessions() as s:
            row = s.get(ServiceRow, name)
            return _service(row) if row else None

    def get_service(self, name: str) -> Service:
        svc = self.find_service(name)
        if svc is None:
            raise NotFound(f"service {name!r} not found: `slipway services list` shows what exists")
        return svc

    def put_service(self, name: str, *, spec: dict[str, Any]) -> Service:
        """Create the service or replace its spec (bumping its generation)."""
        with self._sessions.begin() as s:
            row = s.get(ServiceRow, name)
            if row is None:
                row = ServiceRow(name=name, spec=spec, generation=1)
                s.add(row)
            else:
                row.spec = spec
                row.generation += 1
            s.flush()
            return _service(row)

    def delete_service(self, name: str) -> None:
        with self._sessions.begin() as s:
            if s.get(ServiceRow, name) is None:
                raise NotFound(f"service {name!r} not found: nothing to delete")
            s.execute(delete(RevisionRow).where(RevisionRow.service == name))
            s.execute(delete(ServiceRow).where(ServiceRow.name == name))

    # revisions --------------------------------------------------------------------------------
    def create_revision(
        self,
        service: str,
        *,
        image: str,
        template: dict[str, Any],
        template_hash: str,
        build_id: str | None = None,
    ) -> Revision:
        with self._sessions.begin() as s:
            if s.get(ServiceRow, service) is None:
                raise NotFound(f"service {service!r} not found")
            # Serialise number allocation: on PostgreSQL lock the service row; SQLite's write
            # transaction already serialises writers.
            s.execute(select(ServiceRow).where(ServiceRow.name == service).with_for_update())
            top = s.scalar(
                select(func.max(RevisionRow.number)).where(RevisionRow.service == service)
            )
            number = (top or 0) + 1
            row = RevisionRow(
                name=names.revision_name(service, number),
                service=service,
                number=number,
                image=image,
                template=template,
                template_hash=template_hash,
                status="Pending",
                reason="",
                message="",
                build_id=build_id,
            )
            s.add(row)
            s.flush()
            return _revision(row)

    def list_revisions(self, service: str) -> list[Revision]:
        with self._sessions() as s:
            rows = s.scalars(
                select(RevisionRow)
                .where(RevisionRow.service == service)
                .order_by(RevisionRow.number)
            )
            return [_revision(r) for r in rows]

    def get_revision(self, name: str) -> Revision:
        with self._sessions() as s:
            row = s.get(RevisionRow, name)
            if row is None:
                raise NotFound(f"revision {name!r} not found")
            return _revision(row)

    def mark_revision(self, name: str, *, status: str, reason: str = "", message: str = "") -> None:
        with self._sessions.begin() as s:
            row = s.get(RevisionRow, name)
            if row is None:
                return  # deleted with its service meanwhile: nothing to mark
            if row.status != "Pending" and status != row.status:
                # Ready and Failed are final: a revision that served never turns "Pending" again.
                raise Conflict(f"revision {name} is already {row.status}")
            row.status = status
            row.reason = reason
            row.message = message
            if status == "Ready":
                row.ready_at = utcnow()

    def delete_revisions(self, names: list[str]) -> None:
        with self._sessions.begin() as s:
            s.execute(delete(RevisionRow).where(RevisionRow.name.in_(names)))

    def note(self, name: str, *, reason: str, message: str) -> None:
        """Set a revision's condition (e.g. CrashLoopBackOff) without changing its status."""
        with self._sessions.begin() as s:
            row = s.get(RevisionRow, name)
            if row is not None and (row.reason, row.message) != (reason, message):
                row.reason = reason
                row.message = message

    # builds -----------------------------------------------------------------------------------
    def create_build(self, service: str, *, builder: str, status: str = "running") -> Build:
        with self._sessions.begin() as s:
            row = BuildRow(
                id=secrets.token_hex(6),
                service=service,
                status=status,
                builder=builder,
                image="",
                error="",
            )
            s.add(row)
            s.flush()
            return _build(row)

    def start_build(self, build_id: str) -> None:
        """A queued build got its slot."""
        with self._sessions.begin() as s:
            row = s.get(BuildRow, build_id)
            if row is None:
                raise NotFound(f"build {build_id!r} not found")
            row.status = "running"
            row.started_at = utcnow()

    def finish_build(
        self, build_id: str, *, image: str = "", error: str = "", status: str = ""
    ) -> None:
        with self._sessions.begin() as s:
            row = s.get(BuildRow, build_id)
            if row is None:
                raise NotFound(f"build {build_id!r} not found")
            row.status = status or ("failed" if error else "succeeded")
            row.image = image
            row.error = error
            row.finished_at = utcnow()

    def fail_unfinished_builds(self, *, reason: str) -> list[str]:
        """At start: no build of a previous process is still running; mark them failed."""
        with self._sessions.begin() as s:
            rows = list(s.scalars(select(BuildRow).where(BuildRow.status.in_(UNFINISHED_BUILDS))))
            for row in rows:
                row.status = "failed"
                row.error = reason
                row.finished_at = utcnow()
            return [row.id for row in rows]

    def list_builds(self, *, service: str | None = None, limit: int | None = 50) -> list[Build]:
        """Newest first; `limit=None` returns every build (the metrics count them all)."""
        with self._sessions() as s:
            query = select(BuildRow).order_by(BuildRow.created_at.desc()).limit(limit)
            if service:
                query = query.where(BuildRow.service == service)
            return [_build(r) for r in s.scalars(query)]

    def delete_builds(self, service: str) -> list[str]:
        """Forget every build of `service` (`services delete`); returns their ids, whose log and
        stored source files the caller removes."""
        with self._sessions.begin() as s:
            ids = list(s.scalars(select(BuildRow.id).where(BuildRow.service == service)))
            s.execute(delete(BuildRow).where(BuildRow.service == service))
            return ids

    def get_build(self, build_id: str) -> Build:
        with self._sessions() as s:
            row = s.get(BuildRow, build_id)
            if row is None:
                raise NotFound(f"build {build_id!r} not found")
            return _build(row)
