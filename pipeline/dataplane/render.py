"""Render the data plane's desired state as haproxy.cfg text.

The reconciler builds a `DataPlane`; `render` turns it into the whole configuration file, and the
manager (`process.py`) writes it, validates it and reloads HAProxy when `structure` changed, or
pushes only the server changes through the runtime API (`runtime.py`) when it did not. Pure: the
same plane and site give the same text, byte for byte (everything is sorted), so golden files
stay stable and the structure key is a plain hash. Every name is checked first (`checks`): a
route HAProxy would reject is left out and the rest renders, so one bad name never freezes the
data plane.

Shape of the file, and why:

- One frontend: the Host header, lowercased and without its port, picks the route; the bare
  domain goes to Slipway's API, `/metrics` included (Slipway's metrics join HAProxy's counters
  with services, tags and instances), and `/metrics/haproxy` to HAProxy's own Prometheus exporter
  (asked for in the API backend, so no other host's request checks for it); a host nothing
  answers to gets a 404 naming the host.
- A host served by one revision (most hosts: every service at 100%, every tag URL), and the bare
  domain, is a line of a map file (`route_maps`, host -> backend), so moving a service to its
  new revision is a `set map` on the runtime API, not a reload, and the lookup does not grow with
  the number of services as a chain of ACLs does. Without a split on the listener, routing is
  that one lookup, straight into `use_backend` (a host the map does not know ends at the default
  backend, the 404). With one, the host and the map's answer go into variables first (`txn.host`,
  `txn.backend`): the split rules need the host, and a dynamic `use_backend` that finds no
  backend ends the search, so it must be taken only when the map answered. Setting the two
  variables costs a request about 1.8k instructions (`bench.proxycounts`), which is why a
  listener without splits does without them.
- Traffic splits are drawn per request, never per connection: one keep-alive client still sees
  the configured percentages. Only a split host has rules of its own, and the number is drawn
  inside them (`_split_rules`), so no other host's request draws one or evaluates a rule for it.
- One backend per revision, `balance leastconn`: requests vary in duration and each instance has
  a concurrency limit (maxconn), so the least busy instance is the right pick; it is also one of
  the dynamic algorithms that `add server` on the runtime API requires.
- Private services (`Route.private`): each revision backend of a private service checks the
  identity token and the invokers map before anything else, whichever listener or host led
  there; the rules come from `dataplane.jwt`. In the backend, not the frontends, so a public
  service's request evaluates none of them.
- Every backend carries its "no ready instance" 503 whether or not it has servers, so adding or
  removing servers never changes anything but `server` lines: that is what lets scaling go
  through the runtime API without a reload.
- HTTPS (`Site.https_bind`): a TLS frontend routing like the public one, and ACME challenges
  plus a redirect on the plain one; the lines come from `dataplane.tlsrender`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from pipeline.core import names
from pipeline.dataplane import jwt, requestlogs, resends, tlsrender
from pipeline.dataplane.checks import API_BACKEND, HOST_FETCH, NO_ROUTE_BACKEND, check, sift
from pipeline.dataplane.checks import RESERVED_BACKENDS as RESERVED_BACKENDS  # for the manager
from pipeline.dataplane.model import (
    Backend,
    DataPlane,
    Route,
    Server,
    Site,
    Split,
    Unready,
)

STRUCTURE_MARKER = "# slipway-structure "
# HAProxy's own exporter, on the bare domain; `/metrics` itself is Slipway's (pipeline.api.metrics).
HAPROXY_METRICS_PATH = "/metrics/haproxy"

# The control plane streams build logs and git pushes through the API backend: give it the
# longest request time a revision may have (Cloud Run's maximum timeoutSeconds).
API_TIMEOUT_S = 3600
# Failed requests in a row (5xx, timeouts, refused connections) that take an instance down.
ERROR_LIMIT = 20
# What may follow `option httpchk GET` as a path: no space, quote, `#` or `$` (HAProxy would read
# a comment or an environment variable); any other readiness path keeps the TCP check.
_CHECK_PATH = re.compile(r"/[A-Za-z0-9._~!&()*+,;=:@%/?-]*")

# An old worker left behind by a reload keeps serving its in-flight requests, at most this long
# past the longest server timeout, then it is stopped so old processes cannot pile up.
HARD_STOP_MARGIN_S = 30


def render(plane: DataPlane, *, site: Site) -> str:
    """The complete haproxy.cfg for `plane`, led by its structure key."""
    return f"{STRUCTURE_MARKER}{structure(plane, site=site)}\n{_body(plane, site=site)}"


def structure(plane: DataPlane, *, site: Site) -> str:
    """A key that changes with routes, backends, timeouts, the site or the renderer itself, but
    not with servers: the manager reloads HAProxy only when it changes."""
    without_servers = replace(plane, backends=tuple(replace(b, servers=()) for b in plane.backends))
    return hashlib.sha256(_body(without_servers, site=site).encode()).hexdigest()[:16]


def structure_of_config(text: str) -> str | None:
    """The structure key a rendered config was written with (None if it has none)."""
    first = text.split("\n", 1)[0]
    return first.removeprefix(STRUCTURE_MARKER) if first.startswith(STRUCTURE_MARKER) else None


def route_maps(plane: DataPlane, *, site: Site) -> dict[Path, dict[str, str]]:
    """The map files the frontends route single-revision hosts by: file -> host -> backend.
    The public one leaves cluster-local hosts out; the internal one exists with its listener.
    Pure; the manager writes these files before a start or reload and brings the running
    worker's maps to them at runtime."""
    routes = sift(plane, domain=site.domain).plane.routes
    single = {r.host: splits[0].backend for r in routes if len(splits := _splits(r)) == 1}
    public = {r.host for r in routes if not r.internal_only}
    # The bare domain is the API's on the public listeners (not on the internal one).
    api = {site.domain: API_BACKEND}
    maps = {site.routes_map: {h: b for h, b in single.items() if h in public} | api}
    if site.internal_bind:
        maps[site.internal_routes_map] = single
    return maps


def _splits(route: Route) -> list[Split]:
    return sorted((s for s in route.splits if s.percent > 0), key=lambda s: s.backend)


def server_args(server: Server) -> str:
    """Everything after `server <name>` for one instance.

    Shared by the config file and the runtime API's `add server`, so an instance behaves the
    same whether it arrived by reload or at runtime: dynamic servers take nothing from
    `default-server` and keep no idle connections unless told, hence every keyword is explicit.
    """
    address = f"[{server.address}]" if ":" in server.address else server.address
    args = [
        f"{address}:{server.port}",
        # A light check (TCP, or HTTP on the readiness path: `_check_lines`) plus observing real
        # traffic: an instance that answers 5xx, times out or refuses connections
        # ERROR_LIMIT times in a row leaves rotation (as Cloud Run replaces one after 20
        # consecutive 5xx), and the reconciler replaces it. Refused connections are retried
        # elsewhere (`retry-on`), so the higher limit costs clients nothing.
        "check inter 2s fall 2 rise 1",
        f"observe layer7 error-limit {ERROR_LIMIT} on-error mark-down",
        # Keep-alive to instances saves a handshake per request; retry-on empty-response covers
        # the race where an instance closes an idle connection as a request is sent on it.
        "pool-max-conn -1 pool-purge-delay 5s",
    ]
    if server.maxconn:
        args.append(f"maxconn {server.maxconn}")
    if server.draining:
        # The config file has no "drain" state: weight 0 is its equivalent (no new requests,
        # in-flight ones finish). At runtime the manager uses `set server ... state drain`.
        args.append("weight 0")
    return " ".join(args)


def _body(plane: DataPlane, *, site: Site) -> str:
    # A route HAProxy would reject is left out, never the whole file (`checks.sift`).
    plane = sift(plane, domain=site.domain).plane
    check(plane, site=site)
    if plane.tls is not None:
        tlsrender.check([plane.tls.fallback, *plane.tls.certificates])
    backends = sorted(plane.backends, key=lambda b: b.name)
    longest = max([API_TIMEOUT_S, *(b.timeout_s for b in backends)])
    routes = sorted(plane.routes, key=lambda r: r.host)
    guarded = jwt.guarded_backends(routes)
    sections = [
        _global(site, hard_stop_after_s=longest + HARD_STOP_MARGIN_S),
        _defaults(),
        _frontend(routes, site=site),
        *([_frontend(routes, site=site, tls=True)] if site.https_bind else []),
        *([_frontend(routes, site=site, internal=True)] if site.internal_bind else []),
        _api_backend(site),
        _no_route_backend(plane.unready),
        *(
            _backend(
                b,
                activator=site.activator,
                guard=(
                    jwt.backend_lines(*guarded[b.name], site=site, policy=plane.jwt)
                    if b.name in guarded
                    else []
                ),
            )
            for b in backends
        ),
    ]
    return "\n".join(sections)


def _global(site: Site, *, hard_stop_after_s: int) -> str:
    # No `daemon`/`pidfile`: the manager starts HAProxy with -W -D -p, so the same file also
    # works under `haproxy -W` in the foreground for debugging.
    return _section(
        "global",
        # Each connection costs two fds (client and server side); 4096 fits a default 10k+ ulimit.
        "maxconn 4096",
        # expose-fd listeners: a reloaded worker takes the listening sockets over from the old
        # one, so no connection attempt is refused during a reload.
        f"stats socket {site.admin_socket} mode 600 level admin expose-fd listeners",
        "stats timeout 30s",
        f"hard-stop-after {hard_stop_after_s}s",
    )


def _defaults() -> str:
    return _section(
        "defaults",
        "mode http",
        "timeout connect 5s",
        "timeout client 1h",
        "timeout client-fin 30s",
        "timeout http-request 30s",
        "timeout http-keep-alive 10s",
        "timeout tunnel 1h",
        "timeout server 300s",
        "timeout queue 30s",
        # Re-pick an instance on every retry; retry a refused connection, and a connection
        # closed before any response byte only for requests that may be sent twice (`resends`,
        # checked in each listener).
        "retries 3",
        "option redispatch 1",
        "retry-on conn-failure empty-response",
        # HAProxy keeps a request to resend only if it had all of it before sending: wait for
        # the body (up to a buffer; larger ones stream on), as nginx does by default, so a PUT
        # or a POST with an idempotency key is resent as reliably as a GET.
        "option http-buffer-request",
        # On a reload the old worker answers one more request on each idle keep-alive connection
        # with `Connection: close` instead of closing it under the client: keep-alive clients
        # see no failed request during a reload.
        "option idle-close-on-response",
    )


def _frontend(
    routes: list[Route],
    *,
    site: Site,
    internal: bool = False,
    tls: bool = False,
) -> str:
    """The public ingress (plain, or `tls` on the HTTPS port), or (internal=True) the listener
    instances reach on the bridge gateway: there every service answers, cluster-local ones too,
    and the API does not."""
    if not internal:
        routes = [r for r in routes if not r.internal_only]
    bind = tlsrender.bind(site) if tls else site.internal_bind if internal else site.bind
    split = [r for r in routes if len(_splits(r)) > 1]
    routes_map = site.internal_routes_map if internal else site.routes_map
    lines = [
        f"bind {bind}",
        "option forwardfor",
        f"http-request set-header X-Forwarded-Proto {'https' if tls else 'http'}",
        *(tlsrender.plain_lines(site) if site.https_bind and not (tls or internal) else []),
        # Only requests that may run twice are resent when an instance drops them (`resends`).
        f"http-request disable-l7-retry unless {resends.HAPROXY_CONDITION}",
    ]
    if internal and site.internal_sources:
        lines.insert(1, f"tcp-request connection reject unless {{ src {site.internal_sources} }}")
    lines += requestlogs.frontend_lines(site)  # a line per request for `slipway logs`
    if not split:
        # The map's answer is the backend; a host it does not know resolves to no backend,
        # which ends the search at the default one.
        lines.append(f"use_backend %[{HOST_FETCH},map({routes_map})]")
    else:
        lines += [
            f"http-request set-var(txn.host) {HOST_FETCH}",
            # A host that the map does not know leaves the variable unset.
            f"http-request set-var(txn.backend) var(txn.host),map({routes_map})",
            "acl mapped var(txn.backend) -m found",
            # Host ACLs only where a rule names the host: split hosts.
            *(f"acl host:{r.host} var(txn.host) -m str {r.host}" for r in split),
            # First the map's answer, the common case: HAProxy stops at the first `use_backend`
            # that applies. A dynamic name it cannot resolve would end the search at the default
            # backend, hence the condition: an unmapped host goes on to the split rules.
            "use_backend %[var(txn.backend)] if mapped",
        ]
        for route in split:
            lines += _split_rules(route)
    lines.append(f"default_backend {NO_ROUTE_BACKEND}")
    name = "internal" if internal else "https" if tls else "ingress"
    return _section(f"frontend {name}", *lines)


def _split_rules(route: Route) -> list[str]:
    """One `use_backend` per revision of a split host, each drawing its own number: revision i
    of percent p_i is taken with probability p_i / (what the earlier ones left), `rand(left)
    lt p_i`, and the last takes the rest, which makes each revision's share exactly p_i / 100.
    Drawn in the rules rather than into a variable for every request: a request to any other
    host draws nothing, and one to this host draws at most one number per revision."""
    splits = _splits(route)
    rules = []
    left = 100
    for s in splits[:-1]:
        rules.append(
            f"use_backend {s.backend} if host:{route.host} {{ rand({left}) -m int lt {s.percent} }}"
        )
        left -= s.percent
    rules.append(f"use_backend {splits[-1].backend} if host:{route.host}")
    return rules


def _api_backend(site: Site) -> str:
    return _section(
        f"backend {API_BACKEND}",
        f"timeout server {API_TIMEOUT_S}s",
        f"http-request use-service prometheus-exporter if {{ path {HAPROXY_METRICS_PATH} }}",
        f"server api {site.api_server}",
    )


def _no_route_backend(unready: Sequence[Unready] = ()) -> str:
    message = (
        "slipway: no service answers to host '%[var(txn.host)]'; "
        "`slipway services list` shows what is deployed\\n"
    )
    # Set here too: a listener without splits routes without it (`_frontend`).
    host = f"http-request set-var(txn.host) {HOST_FETCH}"
    # A service that exists but has no revision able to serve: 503 and why, before the 404.
    waiting = [
        "http-request return status 503 content-type text/plain string "
        f'"slipway: service {u.service} exists but has no ready revision: {quoted(u.why)}; '
        f'`slipway services describe {u.service}` shows more\\n" '
        f"if {{ var(txn.host) -m str {u.host} }}"
        for u in unready
    ]
    return _section(
        f"backend {NO_ROUTE_BACKEND}",
        host,
        *waiting,
        f'http-request return status 404 content-type text/plain lf-string "{message}"',
    )


# What may stand inside a double-quoted HAProxy argument as is: no quote, backslash or `$`
# (environment expansion); a revision's failure text is the app's, so everything else goes.
_UNQUOTED = re.compile(r"[^A-Za-z0-9 .,:;()\[\]/_+=@!?<>'-]")
QUOTED_MAX = 300


def quoted(text: str) -> str:
    """`text` made safe for a double-quoted argument: one line, plain characters, bounded."""
    flat = _UNQUOTED.sub(" ", " ".join(text.split()))
    return flat if len(flat) <= QUOTED_MAX else flat[: QUOTED_MAX - 3] + "..."


# Every request to a revision carries the name of the server HAProxy chose: an instance's
# (`i-...`), or the activator's, which names the revision (`names.activator_server_name`). HAProxy
# removes any the client sent.
SERVER_HEADER = "X-Slipway-Server"


def _backend(backend: Backend, *, activator: str = "", guard: Sequence[str] = ()) -> str:
    revision = backend.name.removeprefix("rev-")
    lines = [
        "balance leastconn",
        f"timeout server {backend.timeout_s}s",
        f"timeout queue {backend.queue_timeout_s}s",
        # nbsrv counts servers that can take a request: none ready (scaled to zero, all draining
        # or all down) answers at once instead of queueing for the queue timeout. An old worker
        # finishing its last requests after a reload sees nbsrv 0 for every backend, hence the
        # `stopping` guard: it must still forward them.
        "http-request return status 503 content-type text/plain string "
        f'"slipway: revision {revision} has no ready instance\\n" '
        "if !{ nbsrv gt 0 } !{ stopping }",
        "http-error status 503 content-type text/plain string "
        f'"slipway: revision {revision} could not take the request: no instance was free '
        f'within {backend.queue_timeout_s}s or none could be reached\\n"',
        # The 502s HAProxy makes (one the app sends passes through as it is): the connection
        # closed before an answer, or the answer was not HTTP. Only what `resends` allows was
        # sent again.
        "http-error status 502 content-type text/plain string "
        f'"slipway: revision {revision} sent no valid answer: the instance closed the '
        "connection (did it crash?) or its response was malformed. A request that may not run "
        'twice (POST, PATCH) is not resent: send an Idempotency-Key header to allow it\\n"',
        "http-error status 504 content-type text/plain string "
        f'"slipway: revision {revision} did not answer within its timeout of '
        f'{backend.timeout_s}s\\n"',
    ]
    lines += _check_lines(backend)
    lines += [
        f"server {s.name} {server_args(s)}" for s in sorted(backend.servers, key=lambda s: s.name)
    ]
    if activator:
        # Used only while no instance can take the request (at zero, or all draining): the
        # activator holds it, asks for an instance and forwards it once one is ready. The
        # header is set once the server is chosen (and again on a redispatch).
        lines.insert(0, f"http-send-name-header {SERVER_HEADER}")
        lines.append(f"server {names.activator_server_name(revision)} {activator} backup")
    # A private revision's token check comes first: a refused request neither learns whether
    # the revision is ready nor wakes it through the activator.
    return _section(f"backend {backend.name}", *guard, *lines)


def _check_lines(backend: Backend) -> list[str]:
    """An HTTP readiness probe is also HAProxy's check: an instance that still accepts
    connections but no longer answers (hung) fails it and leaves rotation."""
    if not backend.check_path or not _CHECK_PATH.fullmatch(backend.check_path):
        return []
    return [
        f"option httpchk GET {backend.check_path}",
        "http-check expect status 200-399",  # what the readiness probe accepts
        f"timeout check {backend.check_timeout_s}s",
    ]


def _section(header: str, *lines: str) -> str:
    return "".join([f"{header}\n", *(f"    {line}\n" for line in lines)])
