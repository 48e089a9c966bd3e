"""What the renderer lets into haproxy.cfg: a plane's routes sifted, the rest checked (pure).

Names end up unquoted in the config, so every one is checked against a strict pattern before
`render` writes it. A route is the user's (hosts come from service names and tags): one that
HAProxy would reject, or that would send a host to two places, is left out by `sift` with the
reason, and every other route still renders — one bad name must not freeze the data plane for
every service. The reconciler shows each rejection on its service (`reconcile.rejections`).
What is Slipway's own making (the domain, backend and server names, addresses, the token
policy) is checked by `check`, which raises: a failure there is a bug, not a user's name.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, replace

from pipeline.core.errors import InvalidSpec
from pipeline.dataplane.model import DataPlane, Route, Site

API_BACKEND = "slipway-api"
NO_ROUTE_BACKEND = "slipway-no-route"
RESERVED_BACKENDS = frozenset({API_BACKEND, NO_ROUTE_BACKEND})
# HAProxy's fetch of the Host header as routes name hosts (`_HOST`): lowercased, without a port.
HOST_FETCH = "req.hdr(host),field(1,:),lower"

_HOST = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_ADDRESS = re.compile(r"[A-Za-z0-9.:-]+")
_ISSUER = re.compile(r"https?://[A-Za-z0-9.:/_-]+")
_PATH = re.compile(r"/[A-Za-z0-9._/+-]+")


@dataclass(frozen=True, kw_only=True)
class Rejected:
    """A route left out of the config, and why (a phrase that completes "not served: ...")."""

    route: Route
    why: str


@dataclass(frozen=True, kw_only=True)
class Sifted:
    plane: DataPlane  # without the rejected routes and the backends HAProxy could not take
    rejected: tuple[Rejected, ...] = ()


def sift(plane: DataPlane, *, domain: str) -> Sifted:
    """The plane without the routes (and badly named backends) HAProxy cannot take."""
    backends = tuple(b for b in plane.backends if _NAME.fullmatch(b.name))
    claims = Counter(r.host for r in plane.routes)
    known = {b.name for b in backends}
    kept: list[Route] = []
    rejected: list[Rejected] = []
    for route in plane.routes:
        why = _fault(route, domain=domain, claimants=_claimants(plane, route, claims))
        why = why or _split_fault(route, known=known)
        if why is None:
            kept.append(route)
        else:
            rejected.append(Rejected(route=route, why=why))
    sifted = replace(plane, routes=tuple(kept), backends=backends)
    return Sifted(plane=sifted, rejected=tuple(rejected))


def _claimants(plane: DataPlane, route: Route, claims: Counter[str]) -> list[str] | None:
    """The other services that claim this route's host; None when it is the only claim."""
    if claims[route.host] < 2:
        return None
    return sorted({r.service for r in plane.routes if r.host == route.host} - {route.service})


def _fault(route: Route, *, domain: str, claimants: list[str] | None) -> str | None:
    host = route.host
    if not _HOST.fullmatch(host):
        return f"{host!r} is not a lowercase DNS name (letters, digits, '-' and '.')"
    if host == domain:
        return f"it is the bare domain {domain!r}, which serves Slipway's API"
    if claimants == []:
        return "the service claims it twice"
    if claimants:
        who = ", ".join(repr(s) for s in claimants)
        return (
            f"service {who} answers on it too, and a host routes to one place only: rename one "
            "of the services or drop the tag"
        )
    if route.private and not _NAME.fullmatch(route.service):
        return f"a private host needs the name of its service, got {route.service!r}"
    total = sum(s.percent for s in route.splits)
    if total != 100 or any(s.percent < 0 for s in route.splits):
        return f"its traffic adds up to {total} percent, not 100"
    return None


def _split_fault(route: Route, *, known: set[str]) -> str | None:
    for split in route.splits:
        if not _NAME.fullmatch(split.backend):
            return f"revision backend {split.backend!r} is not a name HAProxy can take"
        if split.backend not in known:
            return f"it sends traffic to backend {split.backend!r}, which is not in the data plane"
    return None


def check(plane: DataPlane, *, site: Site) -> None:
    """Raise InvalidSpec for what would break the whole config: the parts Slipway names itself."""
    if not _HOST.fullmatch(site.domain):
        raise InvalidSpec(f"invalid domain {site.domain!r}: use a lowercase DNS name")
    names = Counter(b.name for b in plane.backends)  # not list.count: square in the backends
    for name in names:
        if not _NAME.fullmatch(name) or name in RESERVED_BACKENDS:
            raise InvalidSpec(f"invalid backend name {name!r}: use names.backend_name(revision)")
        if names[name] > 1:
            raise InvalidSpec(f"backend {name!r} appears twice in the data plane")
    for backend in plane.backends:
        servers = [s.name for s in backend.servers]
        for server in backend.servers:
            if not _NAME.fullmatch(server.name) or servers.count(server.name) > 1:
                raise InvalidSpec(
                    f"invalid or duplicate server name {server.name!r} in backend {backend.name!r}"
                )
            if not _ADDRESS.fullmatch(server.address) or not 0 < server.port < 65536:
                raise InvalidSpec(
                    f"invalid address {server.address}:{server.port} for server {server.name!r}"
                )
    if plane.jwt is not None:
        if not plane.jwt.issuer or not _ISSUER.fullmatch(plane.jwt.issuer):
            raise InvalidSpec(f"invalid token issuer {plane.jwt.issuer!r}: a URL without spaces")
        for kid, path in plane.jwt.keys:
            if not _NAME.fullmatch(kid) or not _PATH.fullmatch(str(path)):
                raise InvalidSpec(f"invalid signing key {kid!r} at {str(path)!r}")
