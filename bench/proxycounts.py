"""What one request costs a proxy in counts, not seconds: user-space instructions (callgrind) and
system calls (perf's `raw_syscalls:sys_enter` tracepoint) per request.

Why counts: on the shared 2-core VM two wrk runs of the same config differ by more than the 5%
`bench.peers` tries to resolve (`--repeat` shows the spread), while these counts repeat to well
under 1%. Hardware counters (`perf stat -e instructions`) are not exposed on this VM, hence
callgrind, which runs the proxy about 50x slower: the figures are per request, never per second.

Per case: the proxy runs under callgrind twice, answering `--requests` and then 3x as many
sequential requests on one keep-alive connection; the difference of the two totals over the
difference in requests is the cost of a request, start-up and configuration loading cancel out.
Health checks (Slipway's servers are checked every 2 s) run in proportion to the wall time and
so leak in slightly: under 1% of a request here. Then, without valgrind, `perf stat` attached to
the proxy's processes counts the system calls the same requests make.

Callgrind counts each iteration of a `rep movsb`/`rep stosb` as an instruction, and glibc's
memcpy/memmove/memset use them for larger blocks: a 16 KiB copy counts ~18,300 instructions
(measured: python's `bytes(bytearray(16384))` under callgrind) where the CPU spends a few hundred
cycles. So the instructions inside glibc's mem* functions get a column of their own, and the
figure without them is the one to compare proxies by.

Two ratios: over the standalone HAProxy with its own two-section config ("x own"), and over a
standalone HAProxy doing the same work as Slipway's ingress ("x same": the upstream picked by
host from a map, a request log line, forwarded headers; `bench.proxyconfigs`), as a user who
puts HAProxy in front of several apps would set it up. "nginx, same work" does the same in nginx.

    .venv/bin/python -m bench.proxycounts [--requests 2000] [--only TEXT[,TEXT]] [--json]
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import proxies
from bench import proxyconfigs as configs
from bench.common import Case, Column, bench_arguments, emit, process_tree, progress, require


@dataclass(frozen=True, kw_only=True)
class Counted:
    name: str
    launch: proxies.Launch


CASES = (
    Counted(name="Slipway ingress: service URL", launch=proxies.slipway()),
    Counted(name="Slipway ingress: 90/10 split", launch=proxies.slipway(service=configs.SPLIT)),
    Counted(
        name="Slipway ingress: private + token", launch=proxies.slipway(service=configs.PRIVATE)
    ),
    Counted(name="  while another service is split", launch=proxies.slipway(split=True)),
    Counted(name="  without request log", launch=proxies.slipway(without=("request log",))),
    Counted(name="  without private route (JWT)", launch=proxies.slipway(private=False)),
    Counted(
        name="  without forwarded headers",
        launch=proxies.slipway(without=("forwarded headers",)),
    ),
    Counted(name="  without L7 retries", launch=proxies.slipway(without=("L7 retries",))),
    Counted(
        name="  without the activator's header",
        launch=proxies.slipway(without=("activator header",)),
    ),
    Counted(
        name="  without all five",
        launch=proxies.slipway(without=tuple(configs.ABLATIONS), private=False),
    ),
    Counted(name=proxies.OWN_HAPROXY, launch=proxies.haproxy_own),
    Counted(name="nginx proxy_pass (Dokku)", launch=proxies.nginx_proxy),
    Counted(name=proxies.SAME_HAPROXY, launch=proxies.haproxy_same_work),
    Counted(name=proxies.SAME_NGINX, launch=proxies.nginx_same_work),
)


def send(target: proxies.Target, *, requests: int) -> None:
    """`requests` GETs one after another on one keep-alive connection; each must be a 200."""
    conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=60)
    headers = {"Host": target.host, **(target.headers or {})}
    try:
        for _ in range(requests):
            conn.request("GET", "/", headers=headers)
            reply = conn.getresponse()
            body = reply.read()
            if reply.status != 200 or body != proxies.BODY.encode():
                raise SystemExit(f"{target.host} answered {reply.status}: {body[:200]!r}")
    finally:
        conn.close()


_TOTAL = re.compile(r"^(?:summary|totals): (\d+)", re.M)


def callgrind_total(text: str) -> int:
    """The instructions a callgrind output file counted (pure)."""
    found = _TOTAL.search(text)
    if not found:
        raise ValueError("no `summary:` or `totals:` line in callgrind's output")
    return int(found.group(1))


# One function's line in `callgrind_annotate`'s output: "1,234 (5.6%)  file:function [object]".
_FUNCTION = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(?:\S*:)?([^\s:]+)\s+\[", re.M)
_MEM = re.compile(r"^__(?:mem(?:cpy|move|set)|wmem(?:set|cpy))_")


def memory_block_total(annotated: str) -> int:
    """The instructions glibc's memcpy/memmove/memset counted, from `callgrind_annotate` (pure)."""
    return sum(int(count.replace(",", "")) for count, function in _FUNCTION.findall(annotated)
               if _MEM.match(function))  # fmt: skip


def annotate(path: Path) -> str:
    return subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--threshold=100", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def instructions(
    case: Counted, *, folder: Path, upstream: int, requests: int
) -> tuple[float, float]:
    """User-space instructions per request, and those of them in glibc's mem* functions: the
    difference of two callgrind runs."""
    totals, blocks = [], []
    for n in (requests, 3 * requests):
        out = folder / f"callgrind-{n}"
        out.mkdir(parents=True)
        out.chmod(0o777)  # nginx's worker (user nobody) writes its own file here
        (folder / f"proxy-{n}").mkdir()
        wrap = ["valgrind", "--tool=callgrind", "--trace-children=yes",
                f"--callgrind-out-file={out}/cg.%p"]  # fmt: skip
        target = case.launch(folder / f"proxy-{n}", upstream, wrap=wrap)
        try:
            send(target, requests=n)
        finally:
            target.running.stop()
        totals.append(sum(callgrind_total(f.read_text()) for f in out.glob("cg.*")))
        blocks.append(sum(memory_block_total(annotate(f)) for f in out.glob("cg.*")))
    return (totals[1] - totals[0]) / (2 * requests), (blocks[1] - blocks[0]) / (2 * requests)


def syscalls(case: Counted, *, folder: Path, upstream: int, requests: int) -> float:
    """System calls per request, counted by perf on the proxy's processes and threads."""
    (folder / "proxy-perf").mkdir()
    target = case.launch(folder / "proxy-perf", upstream)
    out = folder / "perf.csv"
    try:
        send(target, requests=100)  # connections to the upstream are open, pools warm
        pids = ",".join(str(p) for p in sorted(process_tree(target.running.pids)))
        perf = subprocess.Popen(
            ["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-p", pids, "-o", str(out)],
            stdin=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # attached
        send(target, requests=requests)
        perf.send_signal(signal.SIGINT)
        perf.wait(timeout=30)
    finally:
        target.running.stop()
    counted = [ln for ln in out.read_text().splitlines() if "raw_syscalls:sys_enter" in ln]
    if not counted:
        raise SystemExit(f"perf counted nothing:\n{out.read_text()}")
    return int(counted[0].split(",")[0]) / requests


def run(folder: Path, *, requests: int, only: Sequence[str]) -> list[Case]:
    cases: list[Case] = []
    chosen = [c for c in CASES if not only or any(o in c.name.lower() for o in only)]
    with proxies.upstream(folder / "upstream") as port:
        for i, case in enumerate(chosen):
            progress(f"callgrind and perf: {case.name.strip()} ...")
            where = folder / str(i)
            ipr, mem = instructions(case, folder=where, upstream=port, requests=requests)
            spr = syscalls(case, folder=where, upstream=port, requests=requests)
            cases.append({"name": case.name.strip(), "instructions_per_request": round(ipr),
                          "mem_block_instructions_per_request": round(mem),
                          "instructions_without_mem_per_request": round(ipr - mem),
                          "syscalls_per_request": round(spr, 2)})  # fmt: skip
    return with_ratios(cases)


# (figure, base case, the ratio's name)
RATIOS = (
    ("instructions_per_request", proxies.OWN_HAPROXY, "instructions_over_haproxy_own"),
    ("instructions_without_mem_per_request", proxies.OWN_HAPROXY, "without_mem_over_haproxy_own"),
    ("instructions_without_mem_per_request", proxies.SAME_HAPROXY, "without_mem_over_haproxy_same"),
)


def with_ratios(cases: list[Case]) -> list[Case]:
    """Each row's figures over those of the standalone HAProxy rows that were run (pure)."""
    by_name = {c["name"]: c for c in cases}
    out = []
    for row in cases:
        row = dict(row)
        for key, base_name, ratio_key in RATIOS:
            base = by_name.get(base_name)
            if base is not None:
                row[ratio_key] = round(float(row[key]) / float(base[key]), 3)  # type: ignore[arg-type]
        out.append(row)
    return out


COLUMNS = (
    Column("name", "case", "<34"),
    Column("instructions_per_request", "instr/req", ">11d"),
    Column("instructions_over_haproxy_own", "x own", ">8.3f"),
    Column("mem_block_instructions_per_request", "of it mem*", ">11d"),
    Column("instructions_without_mem_per_request", "without mem*", ">13d"),
    Column("without_mem_over_haproxy_own", "x own", ">8.3f"),
    Column("without_mem_over_haproxy_same", "x same", ">8.3f"),
    Column("syscalls_per_request", "syscalls/req", ">13.2f"),
)


def main() -> int:
    parser = bench_arguments(__doc__)
    parser.add_argument("--requests", type=int, default=2000, help="the first run's requests")
    parser.add_argument("--only", default="", help="cases whose name has one of these (a,b)")
    args = parser.parse_args()
    require("valgrind", "perf", "taskset", "haproxy", "nginx")
    os.sched_setaffinity(0, {int(proxies.LOAD_CPU)})
    only = [o.strip().lower() for o in args.only.split(",") if o.strip()]
    with tempfile.TemporaryDirectory(prefix="slipway-counts-") as tmp:
        os.chmod(tmp, 0o755)  # nginx's worker runs as nobody and reads the upstream's file here
        cases = run(Path(tmp), requests=args.requests, only=only)
    notes = [
        f"instructions: callgrind, ({3 * args.requests} - {args.requests}) sequential requests "
        "on one keep-alive connection; syscalls: perf stat -e raw_syscalls:sys_enter over "
        f"{args.requests} requests; user space only in the first, the kernel's entries in the "
        "second",
    ]
    emit(cases, COLUMNS, as_json=args.json, notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
