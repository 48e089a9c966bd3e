"""The proxies `bench/peers.py` compares, each started pinned to one core with one worker/thread.

Configs are built purely (text from values); `start` runs one process with `taskset` and hands
back a `Running` with its pids, so the bench can read their CPU time from /proc. Slipway's
ingress is HAProxy with the config Slipway renders (`pipeline.dataplane.render`), the invokers
map it writes and its request-log reader (`RequestLogs`) listening, as the control plane runs
it; only `nbthread 1` is added, as every peer gets one thread.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import wait_tcp
from pipeline.core import names
from pipeline.dataplane import jwt
from pipeline.dataplane.model import Backend, DataPlane, JwtPolicy, Route, Server, Site, Split
from pipeline.dataplane.render import render
from pipeline.identity import tokens
from pipeline.identity.keys import KeyStore

PROXY_CPU = "1"  # every proxy measured runs here, alone
LOAD_CPU = "0"  # wrk, the upstream nginx and this script
# Knative's queue-proxy always listens on these (networking.QueueAdminPort, its metrics server).
QUEUE_FIXED_PORTS = (8022, 9090)

PUBLIC, SPLIT, PRIVATE = "bench-peers", "bench-peers-split", "bench-peers-private"
DOMAIN = "localhost"
INVOKER = "bench"


@dataclass
class Running:
    """A started proxy (or chain of them): where to send requests, and what to measure."""

    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    on_stop: list[Callable[[], None]] = field(default_factory=list)  # after the processes end

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for done in self.on_stop:
            done()


def start(
    argv: Sequence[str],
    *,
    log: Path,
    port: int,
    env: dict[str, str] | None = None,
    running: Running | None = None,
    cpu: str = PROXY_CPU,
) -> Running:
    """Run `argv` on `cpu` (its output to `log`) and wait until it listens on `port`."""
    running = running or Running()
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            ["taskset", "-c", cpu, *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # a Ctrl-C of the bench reaches them through `stop`
        )
    running.procs.append(proc)
    running.logs.append(log)
    try:
        wait_tcp("127.0.0.1", port, timeout_s=30)
    except SystemExit as e:
        running.stop()
        raise SystemExit(f"{argv[0]} did not start: {e}\n{log.read_text()[-2000:]}") from e
    return running


def run_once(argv: Sequence[str], *, env: dict[str, str], running: Running) -> None:
    """A command a proxy needs once started (kamal-proxy's `deploy`); stops it on failure."""
    done = subprocess.run(
        list(argv), env={**os.environ, **env}, capture_output=True, text=True, check=False,
        timeout=60,
    )  # fmt: skip
    if done.returncode != 0:
        running.stop()
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}")


def check_free(ports: Iterable[int], *, what: str) -> None:
    for port in ports:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                raise SystemExit(
                    f"port {port} is taken, and {what} always listens on it: stop what holds it "
                    f"(ss -ltnp 'sport = :{port}') and run again"
                )


def binary(name: str, *, group: str | None = None) -> str:
    """A program on PATH, or one `scripts/tools` builds (a cold traefik build takes ~10 min)."""
    if group is None:
        found = shutil.which(name)
        if not found:
            raise SystemExit(f"{name} is not installed: apt-get install {name}")
        return found
    root = Path(__file__).resolve().parents[1]
    where = subprocess.run(
        [str(root / "scripts" / "tools"), "--dir", group],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    path = Path(where.stdout.strip()) / name
    if where.returncode != 0 or not path.exists():
        raise SystemExit(f"scripts/tools --dir {group} did not give {name}:\n{where.stderr}")
    return str(path)


# nginx --------------------------------------------------------------------------------------------
def nginx_conf(
    *, port: int, run_dir: Path, upstream_port: int = 0, root: Path | None = None
) -> str:
    """One worker, no access log: a static file server (`root`), or a keep-alive reverse proxy."""
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp = " ".join(f"{kind}_temp_path {run_dir};" for kind in kinds)
    if upstream_port:
        server = (
            "location / { proxy_pass http://up; proxy_http_version 1.1; "
            'proxy_set_header Connection ""; proxy_set_header Host $host; '
            "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; }"
        )
        upstream = f"upstream up {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}"
    else:
        server, upstream = f"root {root};", ""
    return (
        "worker_processes 1;\ndaemon off;\n"
        f"pid {run_dir}/nginx.pid;\nerror_log stderr warn;\n"
        "events { worker_connections 4096; }\n"
        f"http {{ access_log off; {temp} keepalive_requests 1000000; keepalive_timeout 75s;\n"
        f"  {upstream}\n  server {{ listen 127.0.0.1:{port}; {server} }}\n}}\n"
    )


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


@dataclass(frozen=True, kw_only=True)
class SlipwayIngress:
    plane: DataPlane
    site: Site


def slipway_plane(
    *, run_dir: Path, port: int, upstream_port: int, private: bool = True
) -> SlipwayIngress:
    """Slipway's data plane for three services on one upstream: public (one revision), a 90/10
    split between two revisions, and (`private`) a private one with one invoker."""
    site = Site(bind=f"127.0.0.1:{port}", domain=DOMAIN, api_server="127.0.0.1:9", run_dir=run_dir)
    revs = [names.backend_name(f"{PUBLIC}-0000{i}") for i in (1, 2)]
    server = Server(name=names.server_name("i0"), address="127.0.0.1", port=upstream_port)
    whole = (Split(backend=revs[0], percent=100),)
    split = (Split(backend=revs[0], percent=90), Split(backend=revs[1], percent=10))
    routes = [
        Route(host=names.service_host(PUBLIC, DOMAIN), splits=whole, service=PUBLIC),
        Route(host=names.service_host(SPLIT, DOMAIN), splits=split, service=SPLIT),
    ]
    policy = None
    if private:
        host = names.service_host(PRIVATE, DOMAIN)
        routes.append(Route(host=host, splits=whole, service=PRIVATE, private=True))
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
    "rand(100)": ("http-request set-var(txn.pick) rand(100)",),
    "forwarded headers": ("option forwardfor", "http-request set-header X-Forwarded-Proto"),
}


def slipway_conf(ingress: SlipwayIngress, *, without: Sequence[str] = ()) -> str:
    """Slipway's haproxy.cfg with one thread, less the lines of the named `ABLATIONS`."""
    text = render(ingress.plane, site=ingress.site)
    text = text.replace("global\n", "global\n    nbthread 1\n", 1)
    drop = tuple(prefix for name in without for prefix in ABLATIONS[name])
    lines = text.splitlines(keepends=True)
    return "".join(line for line in lines if not (drop and line.strip().startswith(drop)))


def write_slipway_files(ingress: SlipwayIngress, *, text: str) -> Path:
    """The config and the invokers map where HAProxy reads them (as the manager writes them)."""
    site = ingress.site
    site.run_dir.mkdir(parents=True, exist_ok=True)
    site.invokers_map.write_text(jwt.map_text(jwt.invokers_map(ingress.plane.invokers)))
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
