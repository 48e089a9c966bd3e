"""Soak: a few services under mixed load for a bounded time (30 minutes unless `--minutes`),
with deploys, traffic changes, scale to zero and wake-ups all along.

On a throwaway platform (`bench.platforms`, two busybox httpd images with bodies `v1`, `v2`):

- `soak-a`, `soak-b` (min-scale 1): two load threads each (a GET through HAProxy, a 20 ms
  pause); redeployed in turn with the other body;
- `soak-c` (min-scale 1): two warm revisions; its traffic moves 100/0, 50/50, 0/100, 50/50 ...;
- `soak-thaw`, `soak-cold` (min-scale 0, 6 s window): a request each time the service is back
  at zero: `soak-thaw`'s instance is frozen at zero (the activator thaws it), `soak-cold` has
  freezing off (the activator starts a container);
- every `CHURN_S` one change, in turn: deploy `soak-a`, move `soak-c`, deploy `soak-b`, move
  `soak-c`, deploy `soak-thaw` (a new revision while at zero).

Figures, one row per time window (ten windows, at least 30 s each):
- `requests`, `p50_ms`, `p99_ms`: the load requests (soak-a/b/c) answered in the window;
- `failed`: requests (load and wake-ups) not answered 200 with a `v1`/`v2` body (goal 0; each
  failure is listed under the table with its time and what came back);
- `wakes`, `wake_max_ms`: requests to a scale-to-zero service at zero, and the slowest;
- `cp_rss_mb`, `cp_fds`: the control plane (`slipway server` and its children, plus its
  daemons: resolver, metadata server, activator) at the window's end; `haproxy_rss_mb`,
  `haproxy_fds`: its master and workers (goal: flat). The `start` row is before the load starts.

A shared 2-core machine: read latencies as rough; the memory and descriptor trend is the point.

    .venv/bin/python -m bench.soak [--minutes N] [--quick] [--json]   # --quick: 3 minutes
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.common import (
    Case,
    Column,
    bench_arguments,
    emit,
    progress,
    rss_mb,
    with_descendants,
)
from bench.platforms import BODIES, Platform, platform_up, until
from pipeline.cli.client import ClientError
from pipeline.core import annotations, names

LOADED = ("soak-a", "soak-b")
SPLIT = "soak-c"
THAW, COLD = "soak-thaw", "soak-cold"
THREADS = 2  # load threads per loaded service
PAUSE_S = 0.02
CHURN_S = 20.0
WINDOWS = 10
MIN_WINDOW_S = 30.0
WAKE_TIMEOUT_S = 90.0
SPLITS = ((100, 0), (50, 50), (0, 100), (50, 50))  # soak-c's revision 1 and 2, in turn


@dataclass(frozen=True)
class Sample:
    """One request: when its answer came (seconds into the soak), how long it took, whether it
    was the service's own answer, and whether it woke a service at zero."""

    at: float
    ms: float
    ok: bool
    wake: bool = False


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (pure); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def windows(samples: Iterable[Sample], *, width_s: float, count: int) -> list[dict[str, float]]:
    """Each window's request figures (pure); an answer after the last window counts in it."""
    buckets: list[list[Sample]] = [[] for _ in range(count)]
    for s in samples:
        buckets[min(max(int(s.at // width_s), 0), count - 1)].append(s)
    out = []
    for bucket in buckets:
        load = [s.ms for s in bucket if not s.wake]
        wakes = [s.ms for s in bucket if s.wake]
        out.append({
            "requests": len(load), "failed": sum(not s.ok for s in bucket),
            "p50_ms": percentile(load, 50), "p99_ms": percentile(load, 99),
            "wakes": len(wakes), "wake_max_ms": max(wakes, default=0.0),
        })  # fmt: skip
    return out


def fds(pids: Iterable[int]) -> int:
    """Open file descriptors of these processes (one that is gone counts none)."""
    total = 0
    for pid in pids:
        try:
            total += len(list(Path(f"/proc/{pid}/fd").iterdir()))
        except OSError:
            continue
    return total


def resources(platform: Platform) -> dict[str, float]:
    """Memory and descriptors of the control plane (with its daemons) and of HAProxy, now."""
    run = platform.sw.data_dir / "run"
    daemons = [int(p.read_text().split()[0]) for p in run.glob("*.pid") if p.read_text().strip()]
    cp = with_descendants({platform.sw.proc.pid, *daemons})
    haproxy = with_descendants({platform.haproxy_pid()})
    return {"cp_rss_mb": rss_mb(cp), "cp_fds": fds(cp),
            "haproxy_rss_mb": rss_mb(haproxy), "haproxy_fds": fds(haproxy)}  # fmt: skip


class Soak:
    """The load, wake-up and churn threads, and what they saw."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.began = time.monotonic()
        self.stop = threading.Event()
        self.samples: list[Sample] = []
        self.failures: list[str] = []
        self.changes: Counter[str] = Counter()
        self.change_errors: list[str] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self.began = time.monotonic()
        targets = [(self._load, s) for s in (*LOADED, SPLIT) for _ in range(THREADS)]
        targets += [(self._wake, THAW), (self._wake, COLD), (self._churn, "")]
        for target, arg in targets:
            self._threads.append(threading.Thread(target=target, args=(arg,), daemon=True))
            self._threads[-1].start()

    def finish(self) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(timeout=120)

    def _request(self, service: str, http: httpx.Client, *, wake: bool = False) -> None:
        began = time.monotonic()
        try:
            status, text = self.platform.body(service, http)
            problem = "" if status == 200 and text in BODIES else f"{status} {text[:160]!r}"
        except httpx.HTTPError as e:
            problem = f"{type(e).__name__}: {e}"
        done = time.monotonic()
        sample = Sample(at=done - self.began, ms=1000 * (done - began), ok=not problem, wake=wake)
        with self._lock:
            self.samples.append(sample)
            if problem:
                self.failures.append(f"{sample.at:7.1f}s {service} after {sample.ms:.0f} ms: "
                                     f"{problem}")  # fmt: skip

    def _load(self, service: str) -> None:
        with httpx.Client(timeout=30) as http:
            while not self.stop.wait(PAUSE_S):
                self._request(service, http)

    def _wake(self, service: str) -> None:
        """A request each time `service` has no running instance (frozen or none)."""
        # Longer than the activator's hold (the readiness timeout, 60 s here), so a wake-up that
        # fails shows the platform's answer, not the client giving up at the same moment.
        with httpx.Client(timeout=WAKE_TIMEOUT_S) as http:
            while not self.stop.is_set():
                if self.platform.running(service) == 0:
                    self._request(service, http, wake=True)
                self.stop.wait(1.0)

    def _churn(self, _: str) -> None:
        for k in range(10**9):
            if self.stop.wait(CHURN_S):
                return
            began = time.monotonic()
            try:
                what = self._change(k)
            except (SystemExit, ClientError, httpx.HTTPError) as e:
                self.change_errors.append(f"{time.monotonic() - self.began:7.1f}s change {k}: {e}")
                continue
            self.changes[what] += 1
            progress(f"{time.monotonic() - self.began:7.1f}s {what} "
                     f"({time.monotonic() - began:.1f}s)")  # fmt: skip

    def _change(self, k: int) -> str:
        image = self.platform.images[(k // 5) % 2]
        match k % 5:
            case 0 | 2:
                service = LOADED[k % 5 // 2]
                self.platform.replace(service, image, loaded=True, env=str(k))
                return f"deploy {service}"
            case 4:
                self.platform.replace(THAW, image, loaded=False, env=str(k))
                return f"deploy {THAW}"
            case _:
                one, two = SPLITS[(k // 2) % len(SPLITS)]
                r1, r2 = names.revision_name(SPLIT, 1), names.revision_name(SPLIT, 2)
                self.platform.traffic(SPLIT, to_revisions={r1: one, r2: two})
                return f"traffic {SPLIT}"


def create(platform: Platform) -> None:
    """The services, each serving before the soak starts."""
    v1, v2 = platform.images
    for service in LOADED:
        platform.replace(service, v1, loaded=True)
    platform.replace(SPLIT, v1, loaded=True)
    r1, r2 = names.revision_name(SPLIT, 1), names.revision_name(SPLIT, 2)
    platform.replace(SPLIT, v2, loaded=True, traffic=[
        {"revisionName": r1, "percent": 100}, {"revisionName": r2, "percent": 0}])  # fmt: skip
    platform.replace(THAW, v1, loaded=False)
    platform.replace(COLD, v1, loaded=False,
                     annotations={annotations.FROZEN_RETENTION_ANNOTATION: "0"})  # fmt: skip
    for service in (THAW, COLD):
        until(lambda s=service: platform.running(s) == 0, timeout_s=120, poll_s=1,
              what=f"{service} to scale to zero")  # fmt: skip


def keep_log(platform: Platform) -> str:
    """A copy of the control plane's log, outside the data dir the platform removes: what a
    failed request is explained by."""
    fd, path = tempfile.mkstemp(prefix="soak-control-plane-", suffix=".log")
    with os.fdopen(fd, "wb") as out:
        out.write(platform.sw.log_path.read_bytes())
    return path


def run(*, minutes: float) -> tuple[list[Case], list[str]]:
    width = max(MIN_WINDOW_S, minutes * 60 / WINDOWS)
    count = max(1, round(minutes * 60 / width))
    with platform_up(repo="soak-app") as platform:
        progress("creating the services")
        create(platform)
        cases: list[Case] = [{"name": "start", **resources(platform)}]
        soak = Soak(platform)
        soak.start()
        sampled = []
        try:
            for i in range(count):
                soak.stop.wait(max(0.0, soak.began + (i + 1) * width - time.monotonic()))
                sampled.append(resources(platform))
                progress(f"window {i + 1}/{count}: {len(soak.failures)} failed so far, "
                         f"{sampled[-1]}")  # fmt: skip
        finally:
            soak.finish()
        kept = keep_log(platform) if soak.failures or soak.change_errors else ""
        rows = windows(soak.samples, width_s=width, count=count)
        for i, (row, res) in enumerate(zip(rows, sampled, strict=True)):
            label = f"{i * width / 60:g}-{(i + 1) * width / 60:g} min"
            cases.append({"name": label, **{k: round(v, 1) for k, v in {**row, **res}.items()}})
    ok = sum(s.ok for s in soak.samples)
    notes = [
        f"{len(soak.samples)} requests, {ok} answered 200 v1/v2, {len(soak.failures)} not; "
        f"changes: {dict(soak.changes)}; changes that failed: {len(soak.change_errors)}",
        *soak.failures[:30],
        *([f"the control plane's log (the throwaway data dir is removed): {kept}"] if kept else []),
        *soak.change_errors[:10],
        *(f"deploy tried again: {e}" for e in platform.errors[:10]),
    ]
    return cases, notes


COLUMNS = [
    Column("name", "window", "<12"), Column("requests", "requests", ">10.0f"),
    Column("failed", "failed", ">8.0f"), Column("p50_ms", "p50 ms", ">8.1f"),
    Column("p99_ms", "p99 ms", ">8.1f"), Column("wakes", "wakes", ">7.0f"),
    Column("wake_max_ms", "wake max ms", ">13.0f"), Column("cp_rss_mb", "CP MB", ">8.1f"),
    Column("cp_fds", "CP fds", ">8.0f"), Column("haproxy_rss_mb", "HAProxy MB", ">12.1f"),
    Column("haproxy_fds", "HAProxy fds", ">13.0f"),
]  # fmt: skip


def main() -> None:
    parser = bench_arguments(__doc__ or "")
    parser.add_argument("--minutes", type=float, default=30.0, help="how long the soak runs")
    parser.add_argument("--quick", action="store_true", help="3 minutes (under 5 with set-up)")
    args = parser.parse_args()
    cases, notes = run(minutes=3.0 if args.quick else args.minutes)
    emit(cases, COLUMNS, as_json=args.json, notes=notes)


if __name__ == "__main__":
    main()
