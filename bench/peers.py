"""Slipway's ingress next to the proxies people pick instead, in one run, on the same upstream.

Each proxy runs pinned to core 1 (`taskset -c 1`) with one worker or thread (HAProxy `nbthread 1`,
nginx `worker_processes 1`, GOMAXPROCS=1 for the Go ones); wrk, the upstream and this script run
on core 0. The upstream is Debian's nginx-light (one worker) serving a 3-byte file with
keep-alive. Per case: wrk at `--connections` for the throughput, p50 and p99 and the proxy's CPU
seconds (utime+stime from /proc, the process tree), then wrk with one connection for the latency a
hop adds when nothing queues (`added_p50_ms`: over direct, divided by the hops).

- Slipway's ingress: HAProxy with the config Slipway renders, the invokers map and the
  request-log reader, as the control plane runs it (no control plane is needed, so the bench does
  not depend on ports another Slipway holds): the service URL, a 90/10 split, and a private
  service with an identity token (RS256, checked in HAProxy). Then the same config without the
  request log, without `rand(100)`, without the private route's JWT rules (which every public
  request passes through), without the forwarded headers, and without all of them: where the gap
  to a standalone HAProxy goes.
- A standalone HAProxy with its own two-section config.
- nginx as Dokku runs it: `proxy_pass` to an upstream with keepalive.
- Traefik (what Coolify uses) and kamal-proxy (what Kamal uses), built from their modules
  (`scripts/tools --dir traefik|kamal-proxy`; a cold traefik build takes ~10 min).
- Knative's queue-proxy (`scripts/tools --dir knative`), alone and behind Slipway's ingress.
  Knative puts it behind Envoy (Kourier or Istio's gateway), which no reachable registry ships,
  so here the ingress in front of it is Slipway's HAProxy: the chain a request crosses on
  Slipway's Knative engine.

    .venv/bin/python -m bench.peers [--seconds 10] [--connections 16] [--quick] [--json]

--quick: 3 s per throughput run and 2 s per latency run (about two minutes in all).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import proxies
from bench.common import (
    Case,
    Column,
    added_per_hop,
    cpu_s_per_10k,
    cpu_seconds,
    emit,
    free_port,
    wrk,
)
from pipeline.core import names
from pipeline.dataplane.requestlogs import RequestLogs, socket_path

BODY = "ok\n"
HAPROXY_LIMIT = "1 core, nbthread 1"
NGINX_LIMIT = "1 core, 1 worker"
GO_LIMIT = "1 core, GOMAXPROCS=1"


@dataclass(frozen=True, kw_only=True)
class Target:
    """A started proxy: where wrk sends requests, and what it measures."""

    running: proxies.Running
    port: int
    host: str = proxies.DOMAIN
    headers: dict[str, str] | None = None


@dataclass(frozen=True, kw_only=True)
class Peer:
    name: str
    limit: str
    hops: int
    launch: Callable[[Path, int], Target]  # (a fresh folder, the upstream's port) -> Target


# Slipway's ingress --------------------------------------------------------------------------------
def slipway(
    *, service: str = proxies.PUBLIC, without: tuple[str, ...] = (), private: bool = True
) -> Callable[[Path, int], Target]:
    def launch(folder: Path, upstream: int) -> Target:
        port = free_port()
        ingress = proxies.slipway_plane(
            run_dir=folder, port=port, upstream_port=upstream, private=private
        )
        config = proxies.write_slipway_files(
            ingress, text=proxies.slipway_conf(ingress, without=without)
        )
        logs = RequestLogs.listen(socket_path(folder))  # as the control plane reads them
        running = proxies.start(
            [proxies.binary("haproxy"), "-db", "-f", str(config)], log=folder / "log", port=port
        )
        running.on_stop.append(logs.close)
        headers = None
        if service == proxies.PRIVATE:
            headers = {"Authorization": f"Bearer {proxies.token(ingress)}"}
            refuse_without_token(port, host=names.service_host(service, proxies.DOMAIN))
        host = f"{names.service_host(service, proxies.DOMAIN)}:{port}"
        return Target(running=running, port=port, host=host, headers=headers)

    return launch


def refuse_without_token(port: int, *, host: str) -> None:
    """The private case measures the token check only if there is one: no token, no answer."""
    reply = httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": f"{host}:{port}"}, timeout=10)
    if reply.status_code != 401:
        raise SystemExit(f"the private service answered {reply.status_code} without a token")


def slipway_then_queue_proxy(folder: Path, upstream: int) -> Target:
    queue = queue_proxy(folder / "queue", upstream)
    front = slipway()(folder / "ingress", queue.port)
    front.running.procs += queue.running.procs
    front.running.on_stop += queue.running.on_stop
    return front


# the peers ----------------------------------------------------------------------------------------
def haproxy_own(folder: Path, upstream: int) -> Target:
    port = free_port()
    config = folder / "haproxy.cfg"
    config.write_text(proxies.haproxy_own_conf(port=port, upstream_port=upstream))
    argv = [proxies.binary("haproxy"), "-db", "-f", str(config)]
    return Target(running=proxies.start(argv, log=folder / "log", port=port), port=port)


def nginx_proxy(folder: Path, upstream: int) -> Target:
    port = free_port()
    config = folder / "nginx.conf"
    config.write_text(proxies.nginx_conf(port=port, run_dir=folder, upstream_port=upstream))
    argv = [proxies.binary("nginx"), "-e", "stderr", "-c", str(config)]
    return Target(running=proxies.start(argv, log=folder / "log", port=port), port=port)


def traefik(folder: Path, upstream: int) -> Target:
    port = free_port()
    dynamic = folder / "dynamic.yml"
    dynamic.write_text(proxies.traefik_dynamic(host=proxies.DOMAIN, upstream_port=upstream))
    argv = proxies.traefik_argv(proxies.binary("traefik", group="traefik"), port=port,
                                dynamic=dynamic)  # fmt: skip
    running = proxies.start(argv, log=folder / "log", port=port, env=proxies.GO_ONE_THREAD)
    return Target(running=running, port=port)


def kamal_proxy(folder: Path, upstream: int) -> Target:
    port, kamal = free_port(), proxies.binary("kamal-proxy", group="kamal-proxy")
    env = {**proxies.GO_ONE_THREAD, "HOME": str(folder), "XDG_RUNTIME_DIR": str(folder)}
    argv = [kamal, "run", f"--http-port={port}", f"--https-port={free_port()}"]
    running = proxies.start(argv, log=folder / "log", port=port, env=env)
    proxies.run_once(
        [kamal, "deploy", "bench", f"--target=127.0.0.1:{upstream}", f"--host={proxies.DOMAIN}",
         "--health-check-path=/index.html"],
        env=env, running=running,
    )  # fmt: skip
    return Target(running=running, port=port)


def queue_proxy(folder: Path, upstream: int) -> Target:
    folder.mkdir(parents=True, exist_ok=True)
    proxies.check_free(proxies.QUEUE_FIXED_PORTS, what="Knative's queue-proxy")
    port = free_port()
    env = proxies.queue_proxy_env(port=port, user_port=upstream, tls_port=free_port())
    queue = [proxies.binary("queue", group="knative")]
    return Target(running=proxies.start(queue, log=folder / "log", port=port, env=env), port=port)


PEERS = (
    Peer(name="Slipway ingress: service URL", limit=HAPROXY_LIMIT, hops=1, launch=slipway()),
    Peer(
        name="Slipway ingress: 90/10 split",
        limit=HAPROXY_LIMIT,
        hops=1,
        launch=slipway(service=proxies.SPLIT),
    ),
    Peer(
        name="Slipway ingress: private + token",
        limit=HAPROXY_LIMIT,
        hops=1,
        launch=slipway(service=proxies.PRIVATE),
    ),
    Peer(
        name="  without request log",
        limit=HAPROXY_LIMIT,
        hops=1,
        launch=slipway(without=("request log",)),
    ),
    Peer(
        name="  without rand(100)",
        limit=HAPROXY_LIMIT,
        hops=1,
        launch=slipway(without=("rand(100)",)),
    ),
    Peer(
        name="  without private route (JWT)",
        limit=HAPROXY_LIMIT,
        hops=1,
        launch=slipway(private=False),
    ),
    Peer(
        name="  without forwarded headers",
        limit=HAPROXY_LIMIT,
        hops=1,
        launch=slipway(without=("forwarded headers",)),
    ),
    Peer(
        name="  without all four",
        limit=HAPROXY_LIMIT,
        hops=1,
        launch=slipway(without=tuple(proxies.ABLATIONS), private=False),
    ),
    Peer(name="HAProxy, own config", limit=HAPROXY_LIMIT, hops=1, launch=haproxy_own),
    Peer(name="nginx proxy_pass (Dokku)", limit=NGINX_LIMIT, hops=1, launch=nginx_proxy),
    Peer(name="Traefik v3 (Coolify)", limit=GO_LIMIT, hops=1, launch=traefik),
    Peer(name="kamal-proxy (Kamal)", limit=GO_LIMIT, hops=1, launch=kamal_proxy),
    Peer(name="Knative queue-proxy alone", limit=GO_LIMIT, hops=1, launch=queue_proxy),
    Peer(
        name="Slipway ingress -> queue-proxy",
        limit="both on 1 core",
        hops=2,
        launch=slipway_then_queue_proxy,
    ),
)


# measuring ----------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Load:
    seconds: float  # per throughput run
    idle_seconds: float  # per one-connection run
    connections: int


@contextmanager
def upstream(folder: Path) -> Iterator[int]:
    """Debian's nginx serving BODY, on the load core: its port."""
    (folder / "www").mkdir(parents=True)
    (folder / "www" / "index.html").write_text(BODY)
    port = free_port()
    config = folder / "nginx.conf"
    config.write_text(proxies.nginx_conf(port=port, run_dir=folder, root=folder / "www"))
    argv = [proxies.binary("nginx"), "-e", "stderr", "-c", str(config)]
    running = proxies.start(argv, log=folder / "log", port=port, cpu=proxies.LOAD_CPU)
    try:
        yield port
    finally:
        running.stop()


def measure(
    *, url: str, host: str, headers: dict[str, str] | None, pids: list[int], load: Load
) -> dict[str, float]:
    """Throughput (with the proxy's CPU seconds over it), then latency on one connection."""
    wait_for_body(url, headers={"Host": host, **(headers or {})})
    on_load_core = {"host": host, "headers": headers, "cpus": proxies.LOAD_CPU, "threads": 1}
    before = cpu_seconds(pids)
    busy = wrk(url, seconds=load.seconds, connections=load.connections, **on_load_core)
    cpu = cpu_seconds(pids) - before
    idle = wrk(url, seconds=load.idle_seconds, connections=1, **on_load_core)
    return {**busy, "idle_p50_ms": idle["p50_ms"], "cpu_s": cpu}


def wait_for_body(url: str, *, headers: dict[str, str], timeout_s: float = 15) -> None:
    """Until the proxy serves the upstream's file: some load their routes after they listen."""
    deadline = time.monotonic() + timeout_s
    while True:
        reply = httpx.get(url, headers=headers, timeout=10)
        if reply.status_code == 200 and reply.text == BODY:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} ({headers}) answered {reply.status_code}: {reply.text[:300]}")
        time.sleep(0.2)


def figures(name: str, *, limit: str, hops: int, got: dict[str, float], direct_idle_p50: float
            ) -> Case:  # fmt: skip
    per_10k = cpu_s_per_10k(got["cpu_s"], requests=got["requests"])
    return {
        "name": name.strip(), "cpu": limit, "hops": hops,
        "rps": round(got["rps"]), "p50_ms": round(got["p50_ms"], 3),
        "p99_ms": round(got["p99_ms"], 3), "idle_p50_ms": round(got["idle_p50_ms"], 3),
        "added_p50_ms": round(added_per_hop(got["idle_p50_ms"], direct_p50_ms=direct_idle_p50,
                                            hops=hops), 3),
        "cpu_s_per_10k": round(per_10k, 3),
        "requests_per_cpu_s": round(10_000 / per_10k) if per_10k else 0,
        "errors": int(got["errors"]),
    }  # fmt: skip


def run(folder: Path, *, load: Load, only: str) -> list[Case]:
    cases: list[Case] = []
    with upstream(folder / "upstream") as port:
        url = f"http://127.0.0.1:{port}/"
        print("wrk: direct to the upstream ...", file=sys.stderr, flush=True)
        direct = measure(url=url, host=proxies.DOMAIN, headers=None, pids=[], load=load)
        cases.append(figures("direct (no proxy)", limit="-", hops=0, got=direct,
                             direct_idle_p50=direct["idle_p50_ms"]))  # fmt: skip
        for i, peer in enumerate(p for p in PEERS if only.lower() in p.name.lower()):
            print(f"wrk: {peer.name.strip()} ...", file=sys.stderr, flush=True)
            (folder / str(i)).mkdir()
            target = peer.launch(folder / str(i), port)
            try:
                got = measure(
                    url=f"http://127.0.0.1:{target.port}/",
                    host=target.host,
                    headers=target.headers,
                    pids=target.running.pids,
                    load=load,
                )
            finally:
                target.running.stop()
            cases.append(figures(peer.name, limit=peer.limit, hops=peer.hops, got=got,
                                 direct_idle_p50=direct["idle_p50_ms"]))  # fmt: skip
    return cases


COLUMNS = (
    Column("name", "case", "<34"),
    Column("cpu", "limit", "<22"),
    Column("hops", "hops", ">5d"),
    Column("rps", "req/s", ">8d"),
    Column("p50_ms", "p50 ms", ">8.3f"),
    Column("p99_ms", "p99 ms", ">8.3f"),
    Column("idle_p50_ms", "1c p50", ">8.3f"),
    Column("added_p50_ms", "+p50/hop", ">9.3f"),
    Column("cpu_s_per_10k", "cpu s/10k", ">10.3f"),
    Column("requests_per_cpu_s", "req/cpu-s", ">10d"),
    Column("errors", "errors", ">7d"),
)


def verdict(cases: list[Case]) -> list[str]:
    """Slipway's service URL against the best peer and a standalone HAProxy (pure)."""
    by_name = {str(c["name"]): c for c in cases}
    ours = by_name.get("Slipway ingress: service URL")
    peers = [c for c in cases if str(c["name"]) in PEER_NAMES]
    if ours is None or not peers:
        return []
    lines = []
    best = max(peers, key=lambda c: float(c["requests_per_cpu_s"]))  # type: ignore[arg-type]
    quickest = min(peers, key=lambda c: float(c["added_p50_ms"]))  # type: ignore[arg-type]
    lines.append(
        f"Slipway's ingress: {ratio(ours, best, 'requests_per_cpu_s'):.0%} of the best peer's "
        f"requests per CPU second ({best['name']}); adds {ours['added_p50_ms']} ms at p50 vs. "
        f"{quickest['added_p50_ms']} ms ({quickest['name']})"
    )
    own = by_name.get("HAProxy, own config")
    if own is not None:
        lines.append(
            f"vs. a standalone HAProxy with its own config: "
            f"{ratio(ours, own, 'requests_per_cpu_s'):.0%} of its requests per CPU second, "
            f"{ratio(ours, own, 'rps'):.0%} of its req/s"
        )
    return lines


PEER_NAMES = {"HAProxy, own config", "nginx proxy_pass (Dokku)", "Traefik v3 (Coolify)",
              "kamal-proxy (Kamal)", "Knative queue-proxy alone"}  # fmt: skip


def ratio(a: Case, b: Case, key: str) -> float:
    bottom = float(b[key])  # type: ignore[arg-type]
    return float(a[key]) / bottom if bottom else 0.0  # type: ignore[arg-type]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="per throughput run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="3 s runs: about two minutes")
    parser.add_argument("--only", default="", help="only the cases whose name has this text")
    parser.add_argument("--json", action="store_true", help='print {"cases": [...]}')
    args = parser.parse_args()
    for tool in ("wrk", "taskset", "haproxy", "nginx"):
        if not shutil.which(tool):
            print(f"{tool} is not installed: apt-get install {tool}", file=sys.stderr)
            return 2
    if os.cpu_count() is None or os.cpu_count() < 2:  # type: ignore[operator]
        print("needs two cores: one for the proxy, one for wrk and the upstream", file=sys.stderr)
        return 2
    os.sched_setaffinity(0, {int(proxies.LOAD_CPU)})  # this script's log reader stays off core 1
    seconds = 3.0 if args.quick else args.seconds
    load = Load(seconds=seconds, idle_seconds=max(1, round(seconds * 2 / 3)),
                connections=args.connections)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="slipway-peers-") as tmp:
        os.chmod(tmp, 0o755)  # nginx's worker runs as nobody and reads the upstream's file here
        cases = run(Path(tmp), load=load, only=args.only)
    notes = [
        f"wrk -t1 -c{load.connections} -d{load.seconds:g}s (req/s, p50, p99, CPU) and -c1 "
        f"-d{load.idle_seconds:g}s (1c p50, +p50/hop); proxies on core {proxies.PROXY_CPU}, wrk "
        f"and the upstream (nginx, one worker, 3-byte file) on core {proxies.LOAD_CPU}",
        "Slipway ingress = HAProxy with Slipway's rendered config, invokers map and request-log "
        "reader (no control plane); queue-proxy's ingress is Slipway's (Envoy is not available)",
        *verdict(cases),
    ]
    emit(cases, COLUMNS, as_json=args.json, notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
