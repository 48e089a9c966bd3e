"""Data-plane overhead: wrk direct to one instance vs. through Slipway's HAProxy, side by side.

Needs a running Slipway (`./scripts/up`) and wrk. One run of each case, printed as a table:

  1. direct to one instance (wrk to the container's bridge address);
  2. through Slipway's HAProxy (the service URL, one instance);
  3. a standalone HAProxy with Slipway's rendered config (`HAProxyManager`, same renderer) in
     front of 1 and then 3 instances the bench starts itself from the same image: the embedded
     engine runs one instance per revision until autoscaling lands, and extra containers with
     Slipway's labels would be removed by its reconciler;
  4. through Slipway with a 90/10 split between two revisions (set through the API).

The app is nginx (Debian's nginx-light, one worker) serving a small static file with keep-alive:
a server that forks or closes per request (busybox httpd) would measure itself, not the proxy.

    .venv/bin/python -m bench.serving [--seconds 10] [--connections 16] [--threads 2] [--json]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import httpx
import yaml

from bench import common
from bench.common import (
    Case,
    Column,
    Load,
    bench_arguments,
    delete_service,
    emit,
    free_port,
    progress,
    require,
    running_settings,
    wait_tcp,
    wrk,
)
from pipeline.cli.client import Client, ClientError, default_token, default_url
from pipeline.core import names
from pipeline.core.settings import Settings
from pipeline.dataplane.model import Backend, DataPlane, Route, Server, Site, Split
from pipeline.dataplane.process import HAProxyManager

SERVICE = "bench-serving"
BENCH_LABEL = "dev.slipway.bench"
DOCKERFILE = """FROM slipway/debian:bookworm
RUN apt-get update && apt-get install -y --no-install-recommends nginx-light \\
    && rm -rf /var/lib/apt/lists/*
COPY nginx.conf.in /etc/nginx/port.in
COPY index.html /www/index.html
CMD ["sh", "-c", "sed s/@PORT@/$PORT/ /etc/nginx/port.in >/tmp/n.conf && exec nginx -c /tmp/n.conf"]
"""
NGINX_CONF = """worker_processes 1;
daemon off;
pid /tmp/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    server {
        listen @PORT@;
        root /www;
    }
}
"""


# the platform -------------------------------------------------------------------------------------
def deploy(app: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "deploy", SERVICE, "--source", str(app)],
        check=True,
        capture_output=True,
    )


def set_split(client: Client, *, old: str, new: str, image: str) -> str:
    """90/10 between two revisions: the traffic API if this Slipway has it, else a replace."""
    try:
        client.request(
            "POST",
            f"/v1/services/{SERVICE}/traffic",
            json={"to_revisions": {old: 90, new: 10}},
        )
        return "POST /v1/services/{name}/traffic"
    except ClientError as e:
        if e.status not in (404, 405):
            raise
    document = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": SERVICE},
        "spec": {
            "template": {"spec": {"containers": [{"image": image}]}},
            "traffic": [
                {"revisionName": old, "percent": 90},
                {"latestRevision": True, "percent": 10},
            ],
        },
    }
    for event in client.stream(
        "PUT",
        f"/v1/services/{SERVICE}",
        content=yaml.safe_dump(document).encode(),
        headers={"Content-Type": "application/yaml"},
    ):
        if event.get("event") == "error":
            raise SystemExit(f"replace failed: {event.get('message')}")
    return "PUT /v1/services/{name} (replace with a traffic block)"


def wait_for_bodies(
    ingress: str, host: str, want: set[str], *, timeout_s: float = 60
) -> Counter[str]:
    """Until every body in `want` answers; then the split as 1000 keep-alive requests saw it."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=ingress, headers={"Host": host}, timeout=5) as http:
        while True:
            seen = Counter(http.get("/").text for _ in range(50))
            if want <= set(seen):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the split did not serve {want} within {timeout_s}s: {seen}")
            time.sleep(0.5)
        return Counter(http.get("/").text for _ in range(1000))


def instance_address(client: docker.DockerClient, settings: Settings, revision: str) -> str:
    containers = client.containers.list(
        filters={
            "label": [
                f"{names.LABEL_PLATFORM}={settings.platform_id}",
                f"{names.LABEL_REVISION}={revision}",
            ]
        }
    )
    assert containers, f"no running instance of {revision}"
    return common.instance_address(client, containers[0], settings.network)


# a standalone HAProxy with Slipway's config, in front of instances the bench starts ---------------
def start_instances(
    client: docker.DockerClient, *, image: str, network: str, count: int
) -> list[Any]:
    started = []
    for i in range(count):
        started.append(
            client.containers.run(
                image,
                detach=True,
                network=network,
                environment={"PORT": "8080", "K_SERVICE": SERVICE},
                labels={BENCH_LABEL: "serving"},
                name=f"slipway-bench-serving-{i}",
            )
        )
    for c in started:
        c.reload()
        wait_tcp(_address(c, network), 8080)
    return started


def standalone(run_dir: Path, addresses: list[str]) -> tuple[HAProxyManager, str]:
    port = free_port()
    site = Site(
        bind=f"127.0.0.1:{port}", domain="localhost", api_server="127.0.0.1:9", run_dir=run_dir
    )
    backend = names.backend_name(f"{SERVICE}-00001")
    plane = DataPlane(
        routes=(Route(host=f"{SERVICE}.localhost", splits=(Split(backend=backend, percent=100),)),),
        backends=(
            Backend(
                name=backend,
                servers=tuple(
                    Server(name=names.server_name(f"b{i}"), address=a, port=8080)
                    for i, a in enumerate(addresses)
                ),
            ),
        ),
    )
    manager = HAProxyManager(site=site)
    manager.apply(plane)
    return manager, f"http://127.0.0.1:{port}"


def _address(container: Any, network: str) -> str:
    return str(container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"])


def _remove_bench_containers(client: docker.DockerClient) -> None:
    for c in client.containers.list(all=True, filters={"label": f"{BENCH_LABEL}=serving"}):
        c.remove(force=True)


# main ---------------------------------------------------------------------------------------------
Stats = dict[str, float]


@dataclass
class Figures:
    results: list[tuple[str, str, Stats]]  # (case, instances, stats); the first is the baseline
    latency: list[tuple[str, Stats]]  # one connection: direct, then through Slipway
    how: str  # which API set the split
    split: Counter[str]  # the bodies 1000 requests saw under the split


def main() -> int:
    parser = bench_arguments(__doc__, seconds=10, connections=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the bench service afterwards")
    args = parser.parse_args()
    require("wrk")
    settings = running_settings()
    ingress = default_url(settings).replace("://localhost", "://127.0.0.1")
    host = f"{names.service_host(SERVICE, settings.domain)}:{settings.ingress_port}"
    api = Client(url=default_url(settings), token=default_token(settings))
    docker_client = docker.from_env(timeout=120)
    load = Load(seconds=args.seconds, connections=args.connections, threads=args.threads)

    print(
        f"building and deploying {SERVICE} (nginx-light, two revisions) ...",
        file=sys.stderr,
        flush=True,
    )
    old, new = deploy_two_revisions(api)
    wait_for_bodies(ingress, host, {"v2\n"})
    try:
        figures = measure(
            api, docker_client, settings, ingress=ingress, host=host, load=load, old=old, new=new
        )
    finally:
        _remove_bench_containers(docker_client)
        if not args.keep:
            delete_service(SERVICE)
    report(figures, args=args, old=old["name"], new=new["name"])
    return 0


def deploy_two_revisions(api: Client) -> tuple[dict[str, Any], dict[str, Any]]:
    """The nginx app deployed as v1, then as v2; the two revisions, older first."""
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp)
        (app / "Dockerfile").write_text(DOCKERFILE)
        (app / "nginx.conf.in").write_text(NGINX_CONF)
        (app / "index.html").write_text("v1\n")
        deploy(app)
        (app / "index.html").write_text("v2\n")
        deploy(app)
    revisions = api.request("GET", f"/v1/services/{SERVICE}/revisions")
    new, old = revisions[0], revisions[1]
    return old, new


def measure(
    api: Client,
    docker_client: docker.DockerClient,
    settings: Settings,
    *,
    ingress: str,
    host: str,
    load: Load,
    old: dict[str, Any],
    new: dict[str, Any],
) -> Figures:
    """Every case, one wrk run each, in the order they are printed."""
    results: list[tuple[str, str, Stats]] = []
    direct = f"http://{instance_address(docker_client, settings, new['name'])}:8080/"
    progress("wrk: direct to one instance ...")
    results.append(("direct to one instance", "1", wrk(direct, host=None, load=load)))
    progress("wrk: through Slipway's HAProxy ...")
    results.append(("through Slipway (service URL)", "1", wrk(f"{ingress}/", host=host, load=load)))

    # One connection: the latency HAProxy adds when nothing is saturated.
    probe = Load(seconds=load.seconds, connections=1, threads=1)
    progress("wrk: one connection, direct and through Slipway ...")
    latency = [
        ("direct to one instance", wrk(direct, host=None, load=probe)),
        ("through Slipway (service URL)", wrk(f"{ingress}/", host=host, load=probe)),
    ]

    results += standalone_runs(docker_client, settings, image=new["image"], load=load)

    how = set_split(api, old=old["name"], new=new["name"], image=new["image"])
    split = wait_for_bodies(ingress, host, {"v1\n", "v2\n"})
    progress("wrk: through Slipway, 90/10 split ...")
    results.append(
        ("through Slipway, 90/10 split", "1+1", wrk(f"{ingress}/", host=host, load=load))
    )
    return Figures(results=results, latency=latency, how=how, split=split)


def standalone_runs(
    docker_client: docker.DockerClient, settings: Settings, *, image: str, load: Load
) -> list[tuple[str, str, Stats]]:
    """A standalone HAProxy with Slipway's config in front of 1, then 3 bench instances."""
    results = []
    _remove_bench_containers(docker_client)
    instances = start_instances(docker_client, image=image, network=settings.network, count=3)
    addresses = [_address(c, settings.network) for c in instances]
    with tempfile.TemporaryDirectory() as run_dir:
        for count in (1, 3):
            manager, url = standalone(Path(run_dir) / f"haproxy-{count}", addresses[:count])
            try:
                print(
                    f"wrk: standalone HAProxy, {count} instance(s) ...", file=sys.stderr, flush=True
                )
                stats = wrk(f"{url}/", host=f"{SERVICE}.localhost", load=load)
                results.append(("standalone HAProxy, Slipway config", str(count), stats))
            finally:
                manager.stop()
    _remove_bench_containers(docker_client)
    return results


def cases(figures: Figures, *, connections: int) -> list[Case]:
    """One case per row: the load runs against the first, the one-connection runs against theirs."""
    rows: list[Case] = []
    runs = [(label, inst, connections, r) for label, inst, r in figures.results]
    runs += [(f"{label}, one connection", "1", 1, r) for label, r in figures.latency]
    for label, inst, conns, r in runs:
        base = figures.results[0][2] if conns == connections else figures.latency[0][1]
        rows.append({
            "name": label, "instances": sum(int(n) for n in inst.split("+")),
            "connections": conns, "rps": round(r["rps"]),
            "vs_direct_pct": round(100 * r["rps"] / base["rps"], 1),
            "p50_ms": round(r["p50_ms"], 3), "added_p50_ms": round(r["p50_ms"] - base["p50_ms"], 3),
            "p99_ms": round(r["p99_ms"], 3), "errors": int(r["errors"]),
        })  # fmt: skip
    return rows


COLUMNS = (
    Column("name", "case", "<50"), Column("instances", "inst", ">5d"),
    Column("connections", "conns", ">6d"), Column("rps", "req/s", ">9d"),
    Column("vs_direct_pct", "vs direct %", ">12.1f"), Column("p50_ms", "p50 ms", ">9.3f"),
    Column("added_p50_ms", "+p50 ms", ">9.3f"), Column("p99_ms", "p99 ms", ">9.3f"),
    Column("errors", "errors", ">8d"),
)  # fmt: skip


def report(figures: Figures, *, args: argparse.Namespace, old: str, new: str) -> None:
    split = figures.split
    total = sum(split.values())
    notes = [
        f"wrk -t{args.threads} -c{args.connections} -d{args.seconds}s and -t1 -c1, nginx static "
        "file (keep-alive), one run each",
        f"split set with {figures.how}; 1000 keep-alive requests saw "
        f"{split['v1' + chr(10)] / total:.1%} {old} / {split['v2' + chr(10)] / total:.1%} {new}",
    ]
    emit(cases(figures, connections=args.connections), COLUMNS, as_json=args.json, notes=notes)


if __name__ == "__main__":
    sys.exit(main())
