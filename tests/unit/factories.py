"""Plain values for unit tests: services, revisions, instances."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pipeline.core import names
from pipeline.core.records import Revision, Service, Snapshot
from pipeline.engines.base import Instance

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def service(name: str, traffic: list[dict[str, Any]] | None = None) -> Service:
    spec: dict[str, Any] = {"spec": {"template": {"spec": {"containers": [{}]}}}}
    if traffic is not None:
        spec["spec"]["traffic"] = traffic
    return Service(name=name, spec=spec, generation=1, created_at=T0)


def revision(
    svc: str, number: int, status: str = "Ready", *, concurrency: int = 0, timeout: int = 300
) -> Revision:
    return Revision(
        name=names.revision_name(svc, number),
        service=svc,
        number=number,
        image=f"r/{svc}@sha256:{number:064d}",
        template={
            "spec": {
                "containerConcurrency": concurrency,
                "timeoutSeconds": timeout,
                "containers": [{"image": "x"}],
            }
        },
        template_hash=str(number),
        status=status,
        reason="",
        message="",
        build_id=None,
        created_at=T0,
        ready_at=None,
    )


def instance(rev: str, inst: str, *, running: bool = True, address: str = "10.0.0.2") -> Instance:
    return Instance(
        id=f"c-{inst}",
        name=f"slipway-t-{rev}-{inst}",
        service=rev.rsplit("-", 1)[0],
        revision=rev,
        instance=inst,
        address=address if running else "",
        running=running,
        exit_code=None if running else 3,
    )


def snapshot(services: list[Service], revisions: list[Revision]) -> Snapshot:
    return Snapshot(services=tuple(services), revisions=tuple(revisions))
