"""Scale on one host: hundreds of services on the embedded engine, 20 of them under light load.

Starts its own registry and control plane (`bench.common.throwaway_slipway`), pushes two busybox
httpd images (bodies `v1`, `v2`), creates `load-00`..`load-19` (min-scale 1; a GET every 100 ms
each through HAProxy) and idle services (min-scale 0, a 6 s window) up to 10, 100 (and 500)
services. At each size, 10 idle services get a new revision; once the idle ones are at zero:

- `route_s`: a 100% traffic move between two warm revisions of `load-00` until the other body
  answers through HAProxy; `tag_s`: a new tag until its host answers; `deploy_s`: `load-01`
  replaced with the other image until its body answers (container start, readiness, route);
- `pass_mean_ms`: the reconciler's mean pass over a quiet 10 s, from /metrics;
- `reload_ms`/`runtime_ms`: median apply that reloaded HAProxy / only sent runtime-API commands
  (the control plane's `dataplane_applied` lines);
- `cp_rss_mb`, `haproxy_rss_mb` (master and workers), `instance_mb` (a running instance's
  cgroup less page cache, plus its containerd shim's Pss, and the same of its network
  sandbox). Each idle service starts one instance to
  become Ready (as Knative does) and freezes it after its window, so at 500 services the host
  holds hundreds of frozen containers (317 froze in a 2026-12-02 run): the Docker listing a pass
  makes grows with them
  (`bench.coldstart` measures a frozen instance's memory);
- `errors`: load requests not answered 200 while the others were created, changed, deleted.

A shared 2-core machine: run under `nice -n 10`, read the figures as rough.

    .venv/bin/python -m bench.scale [--quick] [--json]      # --quick: 10 and 100 services
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import Any

import docker
import httpx

from bench.common import Case, Column, bench_arguments, emit, progress, pss_mb, rss_mb, size_list
from bench.platforms import BODIES, Platform, answers, platform_up, until
from pipeline.core import names
from pipeline.engines.sandboxes import LABEL_SANDBOX

LOADED = 20
CHANGED = 10  # idle services given a new revision at each size
PARALLEL = 6  # concurrent `services replace` while growing


class Load:
    """A GET every 100 ms to each loaded service through HAProxy; counts what was not a 200."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.stop = threading.Event()
        self.ok = 0
        self.failed: list[str] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def add(self, services: list[str]) -> None:
        for service in services:
            self._threads.append(threading.Thread(target=self._run, args=(service,)))
            self._threads[-1].start()

    def __enter__(self) -> Load:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self._threads:
            t.join()

    def _run(self, service: str) -> None:
        with httpx.Client(timeout=30) as http:
            while not self.stop.wait(0.1):
                try:
                    status, text = self.platform.body(service, http)
                    problem = "" if status == 200 else f"{service}: {status} {text[:120]}"
                except httpx.HTTPError as e:
                    problem = f"{service}: {type(e).__name__} {e}"
                with self._lock:
                    if problem:
                        self.failed.append(problem)
                    else:
                        self.ok += 1


def route_changes(platform: Platform, *, size: int, rounds: int = 3) -> dict[str, float]:
    """Median seconds: a traffic move, a new tag, a deploy — each until HAProxy serves it."""
    move, tag, deploy = [], [], []
    r1, r2 = names.revision_name("load-00", 1), names.revision_name("load-00", 2)
    with httpx.Client(timeout=10) as http:
        for k in range(rounds):
            target, body = (r2, "v2") if k % 2 == 0 else (r1, "v1")
            began = time.monotonic()
            platform.traffic("load-00", to_revisions={target: 100})
            until(answers(platform, "load-00", body, http), timeout_s=60, what=f"load-00 {body}")
            move.append(time.monotonic() - began)
            name = f"t{size}x{k}"
            began = time.monotonic()
            platform.traffic("load-00", set_tags={name: r1})
            until(answers(platform, f"{name}{names.TAG_SEPARATOR}load-00", "v1", http),
                  timeout_s=60, what=f"tag {name}")  # fmt: skip
            tag.append(time.monotonic() - began)
            platform.traffic("load-00", remove_tags=[name])
            image, body = platform.images[(k + 1) % 2], BODIES[(k + 1) % 2]
            began = time.monotonic()
            platform.replace("load-01", image, loaded=True, env=f"{size}-{k}")
            until(answers(platform, "load-01", body, http), timeout_s=120, what="load-01 deploy")
            deploy.append(time.monotonic() - began)
    return {"route_s": statistics.median(move), "tag_s": statistics.median(tag),
            "deploy_s": statistics.median(deploy)}  # fmt: skip


def pass_time(platform: Platform, *, window_s: float) -> dict[str, float]:
    """The reconciler's mean pass over a quiet window (nothing to do but serve the load)."""
    total0 = platform.metric("slipway_reconcile_pass_seconds_total")
    passes0 = platform.metric("slipway_reconcile_passes_total")
    time.sleep(window_s)
    total = platform.metric("slipway_reconcile_pass_seconds_total") - total0
    passes = platform.metric("slipway_reconcile_passes_total") - passes0
    return {"pass_mean_ms": 1000 * total / max(passes, 1)}


def container_mb(c: Any) -> float:
    """One container's memory: its cgroup's (less page cache) plus its containerd shim's share
    (Pss: until 2026-12-03 its RSS, ~13 MB of which is the shim binary shared by all of them)."""
    mem = c.stats(stream=False)["memory_stats"]
    cgroup = mem.get("usage", 0) - mem.get("stats", {}).get("inactive_file", 0)
    shims = [p.name for p in Path("/proc").iterdir() if p.name.isdigit()
             and c.id.encode() in _read(f"/proc/{p.name}/cmdline")]  # fmt: skip
    return float(cgroup / 2**20 + pss_mb([int(p) for p in shims]))


def instance_mb(sw: Any) -> float:
    """A running instance's memory (mean over the loaded services' instances)."""
    client = docker.from_env()
    try:
        sizes = []
        for c in sw.containers(client):
            if c.status != "running" or not c.labels.get(names.LABEL_SERVICE, "").startswith(
                "load"
            ):
                continue
            # With its network sandbox (pipeline.engines.sandboxes), its container and shim too.
            sandbox = c.labels.get(LABEL_SANDBOX)
            with suppress(docker.errors.NotFound):  # replaced by a deploy since it was listed
                parts = [c] + ([client.containers.get(sandbox)] if sandbox else [])
                sizes.append(sum(container_mb(part) for part in parts))
        return statistics.mean(sizes) if sizes else 0.0
    finally:
        client.close()


def _pid(sw: Any) -> int:  # HAProxy's master
    return int((sw.data_dir / "haproxy" / "haproxy.pid").read_text().split()[0])


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""  # the process is gone


# the run ------------------------------------------------------------------------------------------
def grow(platform: Platform, names_: list[str]) -> float:
    """Create these idle services, PARALLEL at a time; seconds taken."""
    began = time.monotonic()
    with ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(lambda n: platform.replace(n, platform.images[0], loaded=False), names_))
    return time.monotonic() - began


def settle(platform: Platform, *, timeout_s: float = 300) -> None:
    """Wait until the idle services are at zero: only the loaded ones (and load-00's second
    revision) keep an instance."""
    until(lambda: platform.running() <= LOADED + 1, timeout_s=timeout_s,
          what="idle services to scale to zero", poll_s=2)  # fmt: skip


def measure(platform: Platform, load: Load, *, size: int, idle: list[str]) -> Case:
    applied = len(platform.applies())
    failed = len(load.failed)
    progress(f"{size} services: changing {min(CHANGED, len(idle))} idle ones")
    with ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(lambda n: platform.replace(n, platform.images[1], loaded=False,
                                                 env=str(size)), idle[:CHANGED]))  # fmt: skip
    settle(platform)
    progress(f"{size} services: reconcile passes, memory")
    case: Case = {"name": f"{size} services"}
    case.update(pass_time(platform, window_s=10))
    progress(f"{size} services: route changes")
    case.update(route_changes(platform, size=size))
    runs = platform.applies()[applied:]
    reloads = [s for r, s in runs if r == "reloaded"]
    runtime = [s for r, s in runs if r.startswith("runtime")]
    case.update({
        "reload_ms": 1000 * statistics.median(reloads) if reloads else 0.0,
        "runtime_ms": 1000 * statistics.median(runtime) if runtime else 0.0,
        "cp_rss_mb": rss_mb([platform.sw.proc.pid]),
        "haproxy_rss_mb": rss_mb([_pid(platform.sw)], descendants=True),
        "instance_mb": instance_mb(platform.sw),
        "errors": len(load.failed) - failed,
    })  # fmt: skip
    return case


def run(sizes: tuple[int, ...]) -> tuple[list[Case], list[str]]:
    loaded = [f"load-{i:02d}" for i in range(LOADED)]
    idle = [f"idle-{i:03d}" for i in range(max(sizes) - LOADED)]
    cases: list[Case] = []
    with platform_up() as platform, Load(platform) as load:
        made = 0
        for size in sizes:
            more = loaded[len(load._threads) : size]
            progress(f"{size} services: creating {len(more)} loaded ones")
            for name in more:
                platform.replace(name, platform.images[0], loaded=True)
                if name == "load-00":  # a second warm revision, tagged: traffic moves to it
                    r1, r2 = names.revision_name(name, 1), names.revision_name(name, 2)
                    platform.replace(name, platform.images[1], loaded=True, traffic=[
                        {"revisionName": r1, "percent": 100, "tag": "a"},
                        {"revisionName": r2, "percent": 0, "tag": "b"}])  # fmt: skip
            load.add(more)
            wanted = idle[: max(size - LOADED, 0)]
            progress(f"{size} services: creating {len(wanted) - made} idle ones")
            took = grow(platform, wanted[made:])
            case = measure(platform, load, size=size, idle=wanted)
            case["create_s"] = took / max(len(wanted) - made, 1)
            made = len(wanted)
            cases.append(case)
            progress(json.dumps(case))
        progress(f"deleting {made} idle services under load")
        before = len(load.failed)
        with ThreadPoolExecutor(PARALLEL) as pool:
            list(pool.map(lambda n: platform.api.request("DELETE", f"/v1/services/{n}"),
                          idle[:made]))  # fmt: skip
        time.sleep(5)
        cases.append({"name": f"delete {made} idle", "errors": len(load.failed) - before})
    notes = [
        f"load: {load.ok} requests answered 200, {len(load.failed)} did not",
        *load.failed[:10],
        f"deploys that failed and were tried again: {len(platform.errors)}",
        *platform.errors[:5],
    ]
    return cases, notes


COLUMNS = [
    Column("name", "size", "<14"), Column("route_s", "route s", ">9.3f"),
    Column("tag_s", "tag s", ">8.3f"), Column("deploy_s", "deploy s", ">10.2f"),
    Column("pass_mean_ms", "pass ms", ">9.1f"), Column("reload_ms", "reload ms", ">11.0f"),
    Column("runtime_ms", "runtime ms", ">12.1f"), Column("cp_rss_mb", "CP MB", ">8.0f"),
    Column("haproxy_rss_mb", "HAProxy MB", ">12.0f"), Column("instance_mb", "inst MB", ">9.1f"),
    Column("errors", "failed", ">8.0f"),
]  # fmt: skip


def main() -> None:
    parser = bench_arguments(__doc__ or "")
    parser.add_argument("--quick", action="store_true", help="10 and 100 services only")
    parser.add_argument("--sizes", type=size_list, help="e.g. 10,50: sizes to run instead")
    args = parser.parse_args()
    sizes = args.sizes or ((10, 100) if args.quick else (10, 100, 500))
    cases, notes = run(sizes)
    emit(cases, COLUMNS, as_json=args.json, notes=notes)


if __name__ == "__main__":
    main()
