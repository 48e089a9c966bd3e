"""From desired state to routes, scale and the data plane — all pure.

`resolve_traffic` applies Knative's traffic semantics (latestRevision follows the newest *ready*
revision), `desired_scale` says how many instances each revision should have, and `build_plane`
turns services, revisions and the instances that are ready into the `DataPlane` HAProxy serves.
`refuse_shared_hosts` is the deployer's check, before it writes a service, that no two services
answer on one host.

What depends on the snapshot alone (the routes, the scale before the autoscaler, the unready
hosts, each revision's backend settings) is kept for the last snapshot seen and reused while the
store hands out the same one (`store.snapshots`: nothing changed): a quiet pass at 500 services
spent most of its planning here. Same inputs, same values: the functions stay pure to callers.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from pipeline.core import names
from pipeline.core.annotations import is_cluster_local as cluster_local_labels
from pipeline.core.records import Revision, Service, Snapshot
from pipeline.core.revisions import RevisionConfig, config_of
from pipeline.dataplane.model import Backend, DataPlane, JwtPolicy, Route, Server, Split, Unready
from pipeline.engines.base import Instance
from pipeline.identity import access

DEFAULT_TRAFFIC: tuple[dict[str, Any], ...] = ({"latestRevision": True, "percent": 100},)
T = TypeVar("T")


class _PerSnapshot(Generic[T]):
    """One value kept for the last snapshot (by identity: a `Snapshot` is never changed in place)
    and key it was computed for."""

    def __init__(self) -> None:
        self._last: tuple[Snapshot, Hashable, T] | None = None

    def get(self, snapshot: Snapshot, key: Hashable, compute: Callable[[], T]) -> T:
        last = self._last
        if last is not None and last[0] is snapshot and last[1] == key:
            return last[2]
        value = compute()
        self._last = (snapshot, key, value)
        return value


_SCALES: _PerSnapshot[dict[str, int]] = _PerSnapshot()
_TABLES: _PerSnapshot[_Table] = _PerSnapshot()
_CONFIGS: dict[str, tuple[dict[str, Any], RevisionConfig]] = {}  # revision -> (template, config)


def config(rev: Revision) -> RevisionConfig:
    """`config_of` the revision's template (image left out), parsed once per template: revisions
    are immutable, and the store hands out the same template while the row is unchanged."""
    cached = _CONFIGS.get(rev.name)
    if cached is not None and cached[0] is rev.template:
        return cached[1]
    if len(_CONFIGS) > 20_000:  # deleted revisions' entries: dropped wholesale, rebuilt on use
        _CONFIGS.clear()
    value = config_of(rev.template, image="")
    _CONFIGS[rev.name] = (rev.template, value)
    return value


@dataclass(frozen=True, kw_only=True)
class Target:
    revision: str
    percent: int
    tag: str = ""


def traffic_of(service: Service) -> list[dict[str, Any]]:
    return _traffic(service.spec)


def _traffic(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    spec: Mapping[str, Any] = manifest.get("spec") or {}
    return list(spec.get("traffic") or DEFAULT_TRAFFIC)


def refuse_shared_hosts(
    manifest: Mapping[str, Any],
    *,
    services: Iterable[Service],
    domain: str,
    tags: Iterable[str] = (),
) -> None:
    """Raise InvalidName if the service this manifest writes, or one of its tags (`tags`: more
    that are about to point at it), would answer on a host another service already answers on.
    Called before the write, so a collision is refused with both names rather than found by the
    data plane later."""
    others = {s.name: _tags(s.spec) for s in services}
    mine = [*_tags(manifest), *tags]
    names.refuse_shared_hosts(str(manifest["metadata"]["name"]), mine, others=others, domain=domain)


def _tags(manifest: Mapping[str, Any]) -> list[str]:
    return [str(e["tag"]) for e in _traffic(manifest) if e.get("tag")]


def latest_ready(revisions: Iterable[Revision]) -> Revision | None:
    ready = [r for r in revisions if r.status == "Ready"]
    return max(ready, key=lambda r: r.number) if ready else None


def resolve_traffic(service: Service, revisions: list[Revision]) -> list[Target]:
    """Concrete targets; a latestRevision target is dropped while no revision is ready."""
    by_name = {r.name: r for r in revisions}
    latest = latest_ready(revisions)
    targets: list[Target] = []
    for entry in traffic_of(service):
        tag = str(entry.get("tag") or "")
        percent = int(entry.get("percent") or 0)
        if entry.get("latestRevision"):
            if latest is not None:
                targets.append(Target(revision=latest.name, percent=percent, tag=tag))
        elif entry.get("revisionName") in by_name:
            targets.append(Target(revision=str(entry["revisionName"]), percent=percent, tag=tag))
    return targets


def revisions_by_service(snapshot: Snapshot) -> dict[str, list[Revision]]:
    """Each service's revisions, oldest first, grouped in one walk: `Snapshot.revisions_of` walks
    every revision per call, which made a pass grow with the square of the services."""
    grouped: dict[str, list[Revision]] = {s.name: [] for s in snapshot.services}
    for rev in sorted(snapshot.revisions, key=lambda r: r.number):
        grouped.setdefault(rev.service, []).append(rev)
    return grouped


def routed_revisions(snapshot: Snapshot) -> set[str]:
    routed: set[str] = set()
    by_service = revisions_by_service(snapshot)
    for svc in snapshot.services:
        for t in resolve_traffic(svc, by_service[svc.name]):
            if t.percent > 0 or t.tag:
                routed.add(t.revision)
    return routed


def desired_scale(snapshot: Snapshot) -> dict[str, int]:
    """Instances per revision: one while it proves itself ready, one while routed, else none.

    The autoscaler replaces the constant 1 later; a failed revision never gets an instance.
    """
    return dict(_SCALES.get(snapshot, None, lambda: _desired_scale(snapshot)))


def _desired_scale(snapshot: Snapshot) -> dict[str, int]:
    routed = routed_revisions(snapshot)
    scale: dict[str, int] = {}
    for r in snapshot.revisions:
        if r.status == "Pending" or (r.status == "Ready" and r.name in routed):
            scale[r.name] = 1
        else:
            scale[r.name] = 0
    return scale


def build_plane(
    snapshot: Snapshot,
    *,
    instances: Iterable[Instance],
    ready: set[str],
    draining: set[str],
    domain: str,
    jwt: JwtPolicy | None = None,
) -> DataPlane:
    """Routes for every service's traffic, a backend for every revision that is routed or has
    ready instances, and those instances as its servers (draining ones marked)."""
    revisions = {r.name: r for r in snapshot.revisions}
    table = _TABLES.get(snapshot, domain, lambda: _table(snapshot, domain=domain))
    servers = _servers(revisions, instances=instances, ready=ready, draining=draining)
    backends = []
    for rev_name in sorted(table.backends.keys() | servers.keys()):
        bare = table.backends.get(rev_name) or _backend(revisions[rev_name])
        own = servers.get(rev_name)
        backends.append(replace(bare, servers=tuple(sorted(own, key=lambda s: s.name))) if own
                        else bare)  # fmt: skip
    return DataPlane(
        routes=table.routes,
        backends=tuple(backends),
        unready=table.unready,
        jwt=jwt,
        invokers=table.invokers,
    )


@dataclass(frozen=True, kw_only=True)
class _Table:
    """What the plane takes from the snapshot alone (kept per snapshot: see the docstring)."""

    routes: tuple[Route, ...]  # by host
    backends: dict[str, Backend]  # the routed revisions', without servers
    unready: tuple[Unready, ...]
    invokers: tuple[tuple[str, str], ...]


def _table(snapshot: Snapshot, *, domain: str) -> _Table:
    revisions = {r.name: r for r in snapshot.revisions}
    routes, needed, invokers = _routes(snapshot, domain=domain)
    return _Table(
        routes=tuple(sorted(routes, key=lambda r: r.host)),
        backends={name: _backend(revisions[name]) for name in needed},
        unready=unready_hosts(snapshot, routed={r.host for r in routes}, domain=domain),
        invokers=tuple(sorted(invokers)),
    )


def _backend(rev: Revision) -> Backend:
    settings = config(rev)
    return Backend(
        name=names.backend_name(rev.name),
        servers=(),
        timeout_s=settings.timeout_s,
        check_path=settings.readiness.path if settings.readiness.kind == "http" else "",
        check_timeout_s=max(1, round(settings.readiness.timeout_s)),
    )


def _routes(
    snapshot: Snapshot, *, domain: str
) -> tuple[list[Route], set[str], list[tuple[str, str]]]:
    """Each service's host (its percent split) and tag hosts; the revisions they route to; the
    (service, member) invoker pairs of private services."""
    routes: list[Route] = []
    needed: set[str] = set()
    invokers: list[tuple[str, str]] = []
    by_service = revisions_by_service(snapshot)
    for svc in snapshot.services:
        targets = resolve_traffic(svc, by_service[svc.name])
        local = is_cluster_local(svc)
        private = access.is_private(svc.spec)
        if private:
            invokers += [(svc.name, member) for member in access.invokers(svc.spec)]
        split: dict[str, int] = {}
        for t in targets:
            if t.percent > 0:
                split[t.revision] = split.get(t.revision, 0) + t.percent
            if t.tag:
                host = names.tag_host(t.tag, svc.name, domain)
                routes.append(
                    _route(host, {t.revision: 100}, internal_only=local, service=svc.name,
                           private=private)
                )  # fmt: skip
                needed.add(t.revision)
        if split:
            routes.append(
                _route(names.service_host(svc.name, domain), split, internal_only=local,
                       service=svc.name, private=private)
            )  # fmt: skip
            needed.update(split)
    return routes, needed, invokers


def unready_hosts(snapshot: Snapshot, *, routed: set[str], domain: str) -> tuple[Unready, ...]:
    """The hosts of public services that no route serves, with why: the newest revision's state.
    Cluster-local services are left out (their host must not be confirmed on the public
    listener), and so is a private service's failure text (only that it is not ready)."""
    out: list[Unready] = []
    by_service = revisions_by_service(snapshot)
    for svc in snapshot.services:
        host = names.service_host(svc.name, domain)
        if host in routed or is_cluster_local(svc):
            continue
        why = why_not_ready(by_service[svc.name])
        if access.is_private(svc.spec):
            why = "no revision is ready"
        out.append(Unready(host=host, service=svc.name, why=why))
    return tuple(sorted(out, key=lambda u: u.host))


def why_not_ready(revisions: list[Revision]) -> str:
    if not revisions:
        return "it has no revision yet (its first build or deploy has not finished)"
    newest = max(revisions, key=lambda r: r.number)
    if newest.status == "Failed":
        detail = ": ".join(p for p in (newest.reason, newest.message) if p)
        return f"revision {newest.name} failed" + (f": {detail}" if detail else "")
    if newest.status == "Pending":
        return f"revision {newest.name} is still starting"
    return f"its traffic names no ready revision (newest: {newest.name}, {newest.status})"


def _servers(
    revisions: dict[str, Revision],
    *,
    instances: Iterable[Instance],
    ready: set[str],
    draining: set[str],
) -> dict[str, list[Server]]:
    """Per revision, its running instances that passed readiness, as HAProxy servers."""
    servers: dict[str, list[Server]] = {}
    for inst in instances:
        if inst.revision not in revisions or not inst.running or not inst.address:
            continue
        if inst.id not in ready:
            continue
        settings = config(revisions[inst.revision])
        servers.setdefault(inst.revision, []).append(
            Server(
                name=names.server_name(inst.instance),
                address=inst.address,
                port=settings.port,
                maxconn=settings.container_concurrency,
                draining=inst.id in draining,
            )
        )
    return servers


def is_cluster_local(service: Service) -> bool:
    labels: dict[str, str] = (service.spec.get("metadata") or {}).get("labels") or {}
    return cluster_local_labels(labels)


def _route(
    host: str,
    split: dict[str, int],
    *,
    internal_only: bool = False,
    service: str = "",
    private: bool = False,
) -> Route:
    return Route(
        host=host,
        internal_only=internal_only,
        service=service,
        private=private,
        splits=tuple(
            Split(backend=names.backend_name(rev), percent=pct)
            for rev, pct in sorted(split.items())
        ),
    )
