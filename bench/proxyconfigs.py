"""Configs of the proxies `bench/peers.py` compares, as text from values (no process runs here).

Slipway's ingress is the config Slipway renders (`pipeline.dataplane.render`) for a plane of three
services on one upstream, with only `nbthread 1` added, as every proxy gets one thread; the
ablations take named groups of its lines out, to show what each costs. The others are each
proxy's plain reverse-proxy setup: what its users would write.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.core import names
from pipeline.dataplane import requestlogs
from pipeline.dataplane.mapsync import write_maps
from pipeline.dataplane.model import Backend, DataPlane, JwtPolicy, Route, Server, Site, Split
from pipeline.dataplane.render import render
from pipeline.identity import tokens
from pipeline.identity.keys import KeyStore

# Knative's queue-proxy always listens on these (networking.QueueAdminPort, its metrics server).
QUEUE_FIXED_PORTS = (8022, 9090)

PUBLIC, SPLIT, PRIVATE = "bench-peers", "bench-peers-split", "bench-peers-private"
DOMAIN = "localhost"
ACTIVATOR = "127.0.0.1:9"
INVOKER = "bench"


# nginx --------------------------------------------------------------------------------------------
def nginx_conf(
    *, port: int, run_dir: Path, upstream_port: int = 0, root: Path | None = None
) -> str:
    """One worker, no access log: a static file server (`root`), or a keep-alive reverse proxy."""
    if upstream_port:
        server = (
            "location / { proxy_pass http://up; proxy_http_version 1.1; "
            'proxy_set_header Connection ""; proxy_set_header Host $host; '
            "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; }"
        )
        upstream = f"upstream up {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}"
    else:
        server, upstream = f"root {root};", ""
    return _nginx(
        run_dir,
        f"access_log off; {_nginx_http(run_dir)}\n"
        f"  {upstream}\n  server {{ listen 127.0.0.1:{port}; {server} }}",
    )


def _nginx(run_dir: Path, http: str) -> str:
    """One worker in the foreground, its files in `run_dir`, around the `http` block's body."""
    return (
        "worker_processes 1;\ndaemon off;\n"
        f"pid {run_dir}/nginx.pid;\nerror_log stderr warn;\n"
        "events { worker_connections 4096; }\n"
        f"http {{ {http}\n}}\n"
    )


def _nginx_http(run_dir: Path) -> str:
    """Temporary files in `run_dir`, and client keep-alive that outlasts any bench run."""
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp = " ".join(f"{kind}_temp_path {run_dir};" for kind in kinds)
    return f"{temp} keepalive_requests 1000000; keepalive_timeout 75s;"


# HAProxy ------------------------------------------------------------------------------------------
def haproxy_own_conf(*, port: int, upstream_port: int) -> str:
    """A standalone HAProxy as its manual would set one up: one frontend, one backend."""
    return (
        "global\n    nbthread 1\n    maxconn 4096\n"
        "defaults\n    mode http\n    timeout connect 5s\n    timeout client 60s\n"
        "    timeout server 60s\n    timeout http-keep-alive 10s\n"
        f"frontend web\n    bind 127.0.0.1:{port}\n    default_backend app\n"
        f"backend app\n    server app 127.0.0.1:{upstream_port}\n"
    )


# The same work ------------------------------------------------------------------------------------
# The plain configs above do less per request than Slipway's ingress: one upstream, no request log,
# (HAProxy) no forwarded headers. These do what every Slipway request gets that a user of each
# proxy would also ask of it, written as that proxy's manual writes each part: the upstream picked
# by the Host header among the apps it fronts, a log line per request, `X-Forwarded-For` and
# `X-Forwarded-Proto`. What only Slipway needs is left out: the activator's header and backup
# server, split and private-service rules, L7 retries, health checks.
HOSTS_MAP = "hosts.map"
SAME_WORK_HOST = names.service_host(PUBLIC, DOMAIN)


def hosts_map_text() -> str:
    """HAProxy's map of the apps it fronts: host -> backend (the bench's app, and one more)."""
    return f"{SAME_WORK_HOST} app\nanother-app.{DOMAIN} app\n"


def haproxy_same_work_conf(*, port: int, upstream_port: int, run_dir: Path) -> str:
    """A standalone HAProxy doing the same work: the backend from a map of hosts (the way
    HAProxy's docs route many hosts), forwarded headers, and Slipway's request-log lines to the
    same kind of reader, so the log line costs what Slipway's costs."""
    site = Site(bind=f"127.0.0.1:{port}", domain=DOMAIN, api_server="127.0.0.1:9",
                run_dir=run_dir)  # fmt: skip
    log = "".join(f"    {line}\n" for line in requestlogs.frontend_lines(site))
    return (
        "global\n    nbthread 1\n    maxconn 4096\n"
        "defaults\n    mode http\n    timeout connect 5s\n    timeout client 60s\n"
        "    timeout server 60s\n    timeout http-keep-alive 10s\n"
        f"frontend web\n    bind 127.0.0.1:{port}\n    option forwardfor\n"
        "    http-request set-header X-Forwarded-Proto http\n"
        f"{log}"
        f"    use_backend %[req.hdr(host),field(1,:),lower,map({run_dir / HOSTS_MAP})]\n"
        "    default_backend unknown\n"
        "backend unknown\n    http-request return status 404\n"
        f"backend app\n    server app 127.0.0.1:{upstream_port}\n"
    )


def nginx_same_work_conf(*, port: int, run_dir: Path, upstream_port: int) -> str:
    """nginx doing the same work, as Dokku's template sets up each app: a `server` block per
    host (`server_name`), an access log in the default `combined` format (one write a request),
    and the forwarded headers; unknown hosts get the default server's 404."""
    proxy = (
        "location / { proxy_pass http://up; proxy_http_version 1.1; "
        'proxy_set_header Connection ""; proxy_set_header Host $http_host; '
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; "
        "proxy_set_header X-Forwarded-Proto $scheme; }"
    )
    return _nginx(
        run_dir,
        f"{_nginx_http(run_dir)}\n"
        f"  upstream up {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}\n"
        f"  server {{ listen 127.0.0.1:{port} default_server; access_log off; return 404; }}\n"
        f"  server {{ listen 127.0.0.1:{port}; server_name {SAME_WORK_HOST} another-app.{DOMAIN};\n"
        f"    access_log {run_dir}/access.log combined; {proxy} }}",
    )


@dataclass(frozen=True, kw_only=True)
class SlipwayIngress:
    plane: DataPlane
    site: Site


def slipway_plane(
    *, run_dir: Path, port: int, upstream_port: int, private: bool = True, split: bool = True
) -> SlipwayIngress:
    """Slipway's data plane for up to three services on one upstream: public (one revision),
    (`split`) a 90/10 split between two revisions, and (`private`) a private one with one
    invoker. A split anywhere on the listener changes how every host is routed (`render`)."""
    # With an activator, as the platform renders it (`app.engines`): every revision backend then
    # names the revision in a header and has the activator as its backup server. Nothing listens
    # there; with the instance up, HAProxy never sends it a request.
    site = Site(bind=f"127.0.0.1:{port}", domain=DOMAIN, api_server="127.0.0.1:9",
                activator=ACTIVATOR, run_dir=run_dir)  # fmt: skip
    revs = [names.backend_name(f"{PUBLIC}-0000{i}") for i in (1, 2)]
    server = Server(name=names.server_name("i0"), address="127.0.0.1", port=upstream_port)
    whole = (Split(backend=revs[0], percent=100),)
    routes = [Route(host=names.service_host(PUBLIC, DOMAIN), splits=whole, service=PUBLIC)]
    if split:
        shares = (Split(backend=revs[0], percent=90), Split(backend=revs[1], percent=10))
        routes.append(Route(host=names.service_host(SPLIT, DOMAIN), splits=shares, service=SPLIT))
    policy = None
    if private:
        # Its own revision backend, as every service has: a private service's backend carries
        # the token check (dataplane.jwt), so sharing one would put it in front of the others.
        revs.append(names.backend_name(f"{PRIVATE}-00001"))
        host = names.service_host(PRIVATE, DOMAIN)
        own = (Split(backend=revs[-1], percent=100),)
        routes.append(Route(host=host, splits=own, service=PRIVATE, private=True))
        key = KeyStore(run_dir / "keys").ensure()
        policy = JwtPolicy(issuer=issuer(port), keys=((key.kid, key.public_path),))
    plane = DataPlane(
        routes=tuple(routes),
        backends=tuple(Backend(name=r, servers=(server,)) for r in revs),
        jwt=policy,
        invokers=((PRIVATE, names.user_subject(INVOKER)),) if private else (),
    )
    return SlipwayIngress(plane=plane, site=site)


def issuer(port: int) -> str:
    return f"http://{DOMAIN}:{port}"


def token(ingress: SlipwayIngress) -> str:
    """An identity token the private service accepts: minted as Slipway mints them."""
    key = KeyStore(ingress.site.run_dir / "keys").ensure()
    port = int(ingress.site.bind.rsplit(":", 1)[1])
    identity = tokens.user_identity(INVOKER, domain=DOMAIN)
    audience = f"http://{names.service_host(PRIVATE, DOMAIN)}:{port}"
    claims = tokens.claims(identity, issuer=issuer(port), audience=audience, now=int(time.time()))
    return tokens.mint(claims, kid=key.kid, private_pem=key.private_pem())


# What each ablation takes out of Slipway's rendered config, by the start of the line.
ABLATIONS: dict[str, tuple[str, ...]] = {
    "request log": ("log uxst@", "log-format ", "option dontlognull"),
    "forwarded headers": ("option forwardfor", "http-request set-header X-Forwarded-Proto"),
    # HAProxy keeps a copy of every request's buffer (16 KiB) in case it must be sent again;
    # with it go the rule choosing which requests may be resent and the body buffering.
    "L7 retries": ("retry-on ", "http-request disable-l7-retry", "option http-buffer-request"),
    # The server's name (the activator's names the revision), sent once the server is chosen.
    "activator header": ("http-send-name-header",),
}


def slipway_conf(ingress: SlipwayIngress, *, without: Sequence[str] = ()) -> str:
    """Slipway's haproxy.cfg with one thread, less the lines of the named `ABLATIONS`."""
    text = render(ingress.plane, site=ingress.site)
    text = text.replace("global\n", "global\n    nbthread 1\n", 1)
    drop = tuple(prefix for name in without for prefix in ABLATIONS[name])
    lines = text.splitlines(keepends=True)
    return "".join(line for line in lines if not (drop and line.strip().startswith(drop)))


def write_slipway_files(ingress: SlipwayIngress, *, text: str) -> Path:
    """The config and the maps (routes, invokers) where HAProxy reads them, as the manager
    writes them."""
    site = ingress.site
    site.run_dir.mkdir(parents=True, exist_ok=True)
    write_maps(ingress.plane, site=site)
    site.config_file.write_text(text)
    return site.config_file


# Go proxies ---------------------------------------------------------------------------------------
GO_ONE_THREAD = {"GOMAXPROCS": "1"}


def traefik_argv(traefik: str, *, port: int, dynamic: Path) -> list[str]:
    return [traefik, f"--entryPoints.web.address=127.0.0.1:{port}",
            f"--providers.file.filename={dynamic}", "--log.level=ERROR",
            "--global.checkNewVersion=false", "--global.sendAnonymousUsage=false"]  # fmt: skip


def traefik_dynamic(*, host: str, upstream_port: int) -> str:
    return (
        "http:\n  routers:\n    bench:\n"
        f'      rule: "Host(`{host}`)"\n      service: bench\n      entryPoints: [web]\n'
        "  services:\n    bench:\n      loadBalancer:\n        servers:\n"
        f'          - url: "http://127.0.0.1:{upstream_port}"\n'
    )


def queue_proxy_env(*, port: int, user_port: int, tls_port: int) -> dict[str, str]:
    """What a Knative revision's pod gives its queue-proxy (knative.dev/serving's
    pkg/queue/sharedmain: the `required` fields of its config), request log off (the default)."""
    return {
        **GO_ONE_THREAD,
        "SERVING_NAMESPACE": "default", "SERVING_SERVICE": PUBLIC,
        "SERVING_CONFIGURATION": PUBLIC, "SERVING_REVISION": f"{PUBLIC}-00001",
        "SERVING_POD": f"{PUBLIC}-00001-deployment-0", "SERVING_POD_IP": "127.0.0.1",
        "QUEUE_SERVING_PORT": str(port), "QUEUE_SERVING_TLS_PORT": str(tls_port),
        "USER_PORT": str(user_port), "REVISION_TIMEOUT_SECONDS": "300",
        "CONTAINER_CONCURRENCY": "0", "SERVING_LOGGING_CONFIG": "",
        "SERVING_LOGGING_LEVEL": "error",
    }  # fmt: skip
