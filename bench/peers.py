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
  service with an identity token (RS256, checked in HAProxy); the service URL while another
  service is split (a split on the listener routes every host through two variables, `render`).
  Then the same config without the request log, without the private service (its JWT rules lead
  its own backends), without the forwarded headers, without L7 retries (`retry-on`), without the
  activator's header, and without all of them: where the gap to a standalone HAProxy goes. (A
  split's number is drawn in its own rules: nothing to take out.)
- A standalone HAProxy with its own two-section config.
- nginx as Dokku runs it: `proxy_pass` to an upstream with keepalive.
- The same two doing the per-request work Slipway's ingress does that their users would also
  want: the upstream picked by host (HAProxy: a map; nginx: `server_name`), a log line per request
  and forwarded headers (`bench.proxyconfigs`, "the same work"). The plain rows above do less
  per request than Slipway; these compare like with like.
- Traefik (what Coolify uses) and kamal-proxy (what Kamal uses), built from their modules
  (`scripts/tools --dir traefik|kamal-proxy`; a cold traefik build takes ~10 min).
- Knative's queue-proxy (`scripts/tools --dir knative`), alone and behind Slipway's ingress.
  Knative puts it behind Envoy (Kourier or Istio's gateway), which no reachable registry ships,
  so here the ingress in front of it is Slipway's HAProxy: the chain a request crosses on
  Slipway's Knative engine.

    .venv/bin/python -m bench.peers [--seconds 10] [--connections 16] [--quick] [--json]
                                    [--only TEXT[,TEXT...]] [--repeat N]

--quick: 3 s per throughput run and 2 s per latency run (about two minutes in all).
--only: the cases whose name has one of the texts ("service url,own config,nginx").
--repeat N: N rounds, the cases interleaved (A B C A B C ...), each figure the median of its N
runs, with the spread of CPU per request and added latency: on a shared machine one run of each
cannot resolve 5%. `bench.proxycounts` counts instructions per request instead (repeatable).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import proxies
from bench import proxyconfigs as configs
from bench.common import (
    Case,
    Column,
    Load,
    added_per_hop,
    bench_arguments,
    cpu_s_per_10k,
    cpu_seconds,
    emit,
    progress,
    require,
    wrk,
)

HAPROXY_LIMIT = "1 core, nbthread 1"
NGINX_LIMIT = "1 core, 1 worker"
GO_LIMIT = "1 core, GOMAXPROCS=1"


@dataclass(frozen=True, kw_only=True)
class Peer:
    name: str
    limit: str
    hops: int
    launch: Callable[[Path, int], proxies.Target]  # (a fresh folder, the upstream's port) -> Target


def ours(name: str, **slipway: Any) -> Peer:
    """A case of Slipway's ingress: `slipway` says which service and what the config leaves out."""
    return Peer(name=name, limit=HAPROXY_LIMIT, hops=1, launch=proxies.slipway(**slipway))


PEERS = (
    ours("Slipway ingress: service URL"),
    ours("Slipway ingress: 90/10 split", service=configs.SPLIT),
    ours("Slipway ingress: private + token", service=configs.PRIVATE),
    ours("  while another service is split", split=True),
    ours("  without request log", without=("request log",)),
    ours("  without private route (JWT)", private=False),
    ours("  without forwarded headers", without=("forwarded headers",)),
    ours("  without L7 retries", without=("L7 retries",)),
    ours("  without the activator's header", without=("activator header",)),
    ours("  without all five", without=tuple(configs.ABLATIONS), private=False),
    Peer(name=proxies.OWN_HAPROXY, limit=HAPROXY_LIMIT, hops=1, launch=proxies.haproxy_own),
    Peer(name="nginx proxy_pass (Dokku)", limit=NGINX_LIMIT, hops=1, launch=proxies.nginx_proxy),
    Peer(name=proxies.SAME_HAPROXY, limit=HAPROXY_LIMIT, hops=1, launch=proxies.haproxy_same_work),
    Peer(name=proxies.SAME_NGINX, limit=NGINX_LIMIT, hops=1, launch=proxies.nginx_same_work),
    Peer(name="Traefik v3 (Coolify)", limit=GO_LIMIT, hops=1, launch=proxies.traefik),
    Peer(name="kamal-proxy (Kamal)", limit=GO_LIMIT, hops=1, launch=proxies.kamal_proxy),
    Peer(name="Knative queue-proxy alone", limit=GO_LIMIT, hops=1, launch=proxies.queue_proxy),
    Peer(
        name="Slipway ingress -> queue-proxy",
        limit="both on 1 core",
        hops=2,
        launch=proxies.slipway_then_queue_proxy,
    ),
)


# measuring ----------------------------------------------------------------------------------------
def measure(
    *, url: str, host: str, headers: dict[str, str] | None, pids: list[int], load: Load
) -> dict[str, float]:
    """Throughput (with the proxy's CPU seconds over it), then latency on one connection."""
    wait_for_body(url, headers={"Host": host, **(headers or {})})
    before = cpu_seconds(pids)
    busy = wrk(url, load=load, host=host, headers=headers, cpus=proxies.LOAD_CPU)
    cpu = cpu_seconds(pids) - before
    idle = wrk(url, load=load.idle, host=host, headers=headers, cpus=proxies.LOAD_CPU)
    return {**busy, "idle_p50_ms": idle["p50_ms"], "cpu_s": cpu}


def wait_for_body(url: str, *, headers: dict[str, str], timeout_s: float = 15) -> None:
    """Until the proxy serves the upstream's file: some load their routes after they listen."""
    deadline = time.monotonic() + timeout_s
    while True:
        reply = httpx.get(url, headers=headers, timeout=10)
        if reply.status_code == 200 and reply.text == proxies.BODY:
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


def chosen(only: str) -> list[Peer]:
    """The peers whose name has one of the comma-separated texts of `only` (all when empty)."""
    wanted = [o.strip().lower() for o in only.split(",") if o.strip()]
    return [p for p in PEERS if not wanted or any(w in p.name.lower() for w in wanted)]


def run(folder: Path, *, load: Load, only: str, repeat: int = 1) -> list[list[Case]]:
    """`repeat` rounds, each measuring direct then every chosen peer in turn (A B C A B C ...):
    a slow minute on the shared machine hits every case alike instead of one case's runs."""
    rounds: list[list[Case]] = []
    peers = chosen(only)
    with proxies.upstream(folder / "upstream") as port:
        url = f"http://127.0.0.1:{port}/"
        for r in range(repeat):
            progress(f"round {r + 1}/{repeat}: wrk direct to the upstream ...")
            direct = measure(url=url, host=configs.DOMAIN, headers=None, pids=[], load=load)
            base = direct["idle_p50_ms"]
            cases = [figures("direct (no proxy)", limit="-", hops=0, got=direct,
                             direct_idle_p50=base)]  # fmt: skip
            for i, peer in enumerate(peers):
                progress(f"round {r + 1}/{repeat}: wrk {peer.name.strip()} ...")
                where = folder / f"{r}-{i}"
                where.mkdir()
                target = peer.launch(where, port)
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
                                     direct_idle_p50=base))  # fmt: skip
            rounds.append(cases)
    return rounds


def medians(rounds: list[list[Case]]) -> list[Case]:
    """Each case's median over the rounds, and the spread (max - min over the median, in %) of
    the two figures that compare across rows: CPU per request and the added latency (pure)."""
    if len(rounds) == 1:
        return rounds[0]
    out: list[Case] = []
    for first in rounds[0]:
        runs = [c for r in rounds for c in r if c["name"] == first["name"]]
        case: Case = dict(first)
        for key, value in first.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                values = [float(c[key]) for c in runs]  # type: ignore[arg-type]
                mid = statistics.median(values)
                case[key] = round(mid) if isinstance(value, int) else round(mid, 3)
        for key in SPREAD_OF:
            values = [float(c[key]) for c in runs]  # type: ignore[arg-type]
            mid = statistics.median(values)
            spread = (max(values) - min(values)) / mid * 100 if mid else 0.0
            case[f"{key.removesuffix('_ms')}_spread_pct"] = round(spread, 1)
        case["runs"] = len(runs)
        out.append(case)
    return out


SPREAD_OF = ("cpu_s_per_10k", "added_p50_ms")


COLUMNS = (
    Column("name", "case", "<34"), Column("cpu", "limit", "<22"), Column("hops", "hops", ">5d"),
    Column("rps", "req/s", ">8d"), Column("p50_ms", "p50 ms", ">8.3f"),
    Column("p99_ms", "p99 ms", ">8.3f"), Column("idle_p50_ms", "1c p50", ">8.3f"),
    Column("added_p50_ms", "+p50/hop", ">9.3f"), Column("cpu_s_per_10k", "cpu s/10k", ">10.3f"),
    Column("requests_per_cpu_s", "req/cpu-s", ">10d"), Column("errors", "errors", ">7d"),
)  # fmt: skip
# With --repeat: the medians, then how far the runs of each case spread.
REPEAT_COLUMNS = (
    *COLUMNS[:-1], Column("cpu_s_per_10k_spread_pct", "cpu +-%", ">8.1f"),
    Column("added_p50_spread_pct", "+p50 +-%", ">9.1f"), Column("runs", "runs", ">5d"),
    COLUMNS[-1],
)  # fmt: skip


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
    own = by_name.get(proxies.OWN_HAPROXY)
    if own is not None:
        lines.append(
            f"vs. a standalone HAProxy with its own config: "
            f"{ratio(ours, own, 'requests_per_cpu_s'):.0%} of its requests per CPU second, "
            f"{ratio(ours, own, 'rps'):.0%} of its req/s"
        )
    same = [by_name[n] for n in (proxies.SAME_HAPROXY, proxies.SAME_NGINX) if n in by_name]
    if same:
        shares = [f"{ratio(ours, c, 'requests_per_cpu_s'):.0%} of {c['name']}'s" for c in same]
        lines.append(
            "doing the same work (host routing, request log, forwarded headers): "
            f"{', '.join(shares)} requests per CPU second"
        )
    return lines


PEER_NAMES = {proxies.OWN_HAPROXY, "nginx proxy_pass (Dokku)", "Traefik v3 (Coolify)",
              "kamal-proxy (Kamal)", "Knative queue-proxy alone"}  # fmt: skip


def ratio(a: Case, b: Case, key: str) -> float:
    bottom = float(b[key])  # type: ignore[arg-type]
    return float(a[key]) / bottom if bottom else 0.0  # type: ignore[arg-type]


def main() -> int:
    parser = bench_arguments(__doc__, seconds=10, connections=16)
    parser.add_argument("--quick", action="store_true", help="3 s runs: about two minutes")
    parser.add_argument(
        "--only", default="", help="only the cases whose name has one of these texts (a,b,...)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of every case, interleaved: medians"
    )
    args = parser.parse_args()
    require("wrk", "taskset", "haproxy", "nginx")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs two cores: one for the proxy, one for wrk and the upstream")
    os.sched_setaffinity(0, {int(proxies.LOAD_CPU)})  # this script's log reader stays off core 1
    # wrk runs on the load core, one thread: a second would only contend there.
    load = Load(seconds=3 if args.quick else args.seconds, connections=args.connections, threads=1)
    with tempfile.TemporaryDirectory(prefix="slipway-peers-") as tmp:
        os.chmod(tmp, 0o755)  # nginx's worker runs as nobody and reads the upstream's file here
        cases = medians(run(Path(tmp), load=load, only=args.only, repeat=args.repeat))
    notes = [
        f"wrk -t1 -c{load.connections} -d{load.seconds}s (req/s, p50, p99, CPU) and -c1 "
        f"-d{load.idle.seconds}s (1c p50, +p50/hop); proxies on core {proxies.PROXY_CPU}, wrk "
        f"and the upstream (nginx, one worker, 3-byte file) on core {proxies.LOAD_CPU}",
        "Slipway ingress = HAProxy with Slipway's rendered config, invokers map and request-log "
        "reader (no control plane); queue-proxy's ingress is Slipway's (Envoy is not available)",
        *verdict(cases),
    ]
    if args.repeat > 1:
        notes.insert(1, f"medians of {args.repeat} interleaved rounds; +-%: (max - min) / median")
    emit(cases, REPEAT_COLUMNS if args.repeat > 1 else COLUMNS, as_json=args.json, notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
