"""What the benches share: wrk and its parsing, a process tree's CPU time, ports, the output, and
a throwaway control plane.

Every bench prints a table and, with `--json`, one object with the same figures:
`{"cases": [{"name": ..., <figure>: <number>, ...}, ...]}`, one case per table row. A figure's
name carries its unit (`rps`, `p50_ms`, `cpu_s_per_10k`, ...): `check_figures` refuses a number
whose name says none, so a bench cannot print a figure nobody can read.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the platform is imported where it is used: most benches run without it
    from pipeline.core.settings import Settings

Figures = dict[str, float]
Case = dict[str, object]  # "name" and other labels are strings; figures are numbers

# A number's name ends with its unit, is a ratio (`<a>_over_<b>`), or is one of these counts.
UNIT_SUFFIXES = ("_ms", "_s", "_pct", "_per_10k", "_per_cpu_s", "_mb", "_fds")  # fds: open files
COUNTS = frozenset(
    {"rps", "errors", "failed", "requests", "instances", "connections", "hops", "runs", "rounds",
     "wakes",
     # bench.proxycounts: counts of things per request, whose name is their unit
     "instructions_per_request", "syscalls_per_request", "mem_block_instructions_per_request",
     "instructions_without_mem_per_request"}
)  # fmt: skip


# wrk ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Load:
    """One wrk run's shape."""

    seconds: int
    connections: int
    threads: int = 2

    @property
    def idle(self) -> Load:
        """One connection for two thirds of the time: latency without queueing."""
        return Load(seconds=max(1, round(self.seconds * 2 / 3)), connections=1, threads=1)


def wrk(
    url: str,
    *,
    load: Load,
    host: str | None = None,
    headers: dict[str, str] | None = None,
    cpus: str | None = None,
) -> Figures:
    """One wrk run: rps, p50_ms, p99_ms, requests, errors (non-2xx/3xx plus socket errors).

    `cpus` pins wrk (`taskset -c`), so it never shares a core with the proxy measured."""
    cmd = [
        "wrk",
        f"-t{min(load.threads, load.connections)}",
        f"-c{load.connections}",
        f"-d{load.seconds}s",
        "--latency",
    ]
    for name, value in {**({"Host": host} if host else {}), **(headers or {})}.items():
        cmd += ["-H", f"{name}: {value}"]
    cmd.append(url)
    if cpus is not None:
        cmd[:0] = ["taskset", "-c", cpus]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"wrk failed ({' '.join(cmd)}):\n{done.stdout}{done.stderr}")
    return parse_wrk(done.stdout)


def parse_wrk(out: str) -> Figures:
    """wrk --latency's report as figures (pure)."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"^\s*(\d+) requests in", out, re.M)
    if not rps or not total:
        raise ValueError(f"not a wrk report:\n{out}")

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\b", out, re.M)
        if not m:
            raise ValueError(f"no {p}th percentile in wrk's report (run with --latency):\n{out}")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    errors = (int(bad.group(1)) if bad else 0) + (
        sum(int(n) for n in re.findall(r"\d+", sock.group(1))) if sock else 0
    )
    return {
        "rps": float(rps.group(1)),
        "p50_ms": pct("50"),
        "p99_ms": pct("99"),
        "requests": float(total.group(1)),
        "errors": float(errors),
    }


# arithmetic ---------------------------------------------------------------------------------------
def added_per_hop(p50_ms: float, *, direct_p50_ms: float, hops: int) -> float:
    """The latency one proxy adds: what the chain adds over direct, shared among its hops."""
    if hops <= 0:
        return 0.0
    return (p50_ms - direct_p50_ms) / hops


def cpu_s_per_10k(cpu_s: float, *, requests: float) -> float:
    return cpu_s / requests * 10_000 if requests > 0 else 0.0


# processes ----------------------------------------------------------------------------------------
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Iterable[int]) -> float:
    """utime + stime of these processes and all their descendants (every thread included)."""
    total = 0.0
    for pid in with_descendants(set(pids)):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue  # gone: it no longer counts
        total += proc_stat_cpu_s(stat)
    return total


def proc_stat_cpu_s(stat: str) -> float:
    """utime + stime from a /proc/<pid>/stat line (pure). The command name may hold spaces and
    parentheses, so the fields are counted from the last ')'."""
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of the line


def _proc_mb(pids: Iterable[int], *, file: str, field: str) -> float:
    """The sum of one `field:` line (in kB) of /proc/PID/`file` over these processes."""
    kb = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/{file}").read_text()
        except OSError:
            continue  # gone
        kb += sum(int(line.split()[1]) for line in text.splitlines() if line.startswith(field))
    return kb / 1024


def rss_mb(pids: Iterable[int], *, descendants: bool = False) -> float:
    """Resident memory (VmRSS) of these processes (and with `descendants`, of their children)."""
    chosen = with_descendants(set(pids)) if descendants else pids
    return _proc_mb(chosen, file="status", field="VmRSS:")


def pss_mb(pids: Iterable[int]) -> float:
    """Proportional memory (Pss) of these processes: shared pages split between their users, so
    hundreds of containerd shims are not each charged the whole of their common binary."""
    return _proc_mb(pids, file="smaps_rollup", field="Pss:")


def process_tree(pids: Iterable[int]) -> set[int]:
    """These processes and all their descendants."""
    return with_descendants(set(pids))


def with_descendants(pids: set[int]) -> set[int]:
    """These processes and every process below them, from /proc now."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    found, grew = set(pids), True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in found} - found
        found |= more
        grew = bool(more)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_tcp(address: str, port: int, *, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{address}:{port} did not accept connections within {timeout_s}s")


def median_ms(fn: Callable[[], object], *, times: int) -> float:
    """The median of `times` calls of `fn`, in milliseconds (in-process benches)."""
    took = []
    for _ in range(times):
        began = time.perf_counter()
        fn()
        took.append(time.perf_counter() - began)
    return 1000 * statistics.median(took)


def progress(message: str) -> None:
    """A line about what runs now: on stderr, so `--json` keeps stdout to the JSON object."""
    print(message, file=sys.stderr, flush=True)


def bench_arguments(
    doc: str, *, seconds: int | None = None, connections: int | None = None
) -> argparse.ArgumentParser:
    """The flags benches share: --json, and for wrk benches --seconds and --connections."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    if seconds is not None:
        parser.add_argument("--seconds", type=int, default=seconds, help="per wrk run")
    if connections is not None:
        parser.add_argument("--connections", type=int, default=connections)
    parser.add_argument("--json", action="store_true", help='print only {"cases": [...]}')
    return parser


def size_list(text: str) -> tuple[int, ...]:
    """`--sizes 10,100,500` (an argparse type): whole numbers above 0, comma-separated."""
    try:
        sizes = tuple(int(s) for s in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: sizes are whole numbers above 0, e.g. 10,100")
    return sizes


def running_settings() -> Settings:
    """The settings of the platform `./scripts/up` runs, once its plain listener is known to
    serve: the benches that drive it send plain HTTP to 127.0.0.1 with a Host header, which a
    listener that redirects everything to HTTPS (`scripts/up`'s default) answers with 308s."""
    import httpx

    from pipeline.core.settings import Settings

    settings: Settings = Settings.from_env()
    host = f"{settings.domain}:{settings.ingress_port}"
    try:
        reply = httpx.get(f"http://127.0.0.1:{settings.ingress_port}/v1/", headers={"Host": host})
    except httpx.HTTPError as e:
        raise SystemExit(f"no Slipway answers on port {settings.ingress_port} ({e}): "
                         "start it with ./scripts/up") from e  # fmt: skip
    if reply.is_redirect and reply.headers.get("location", "").startswith("https:"):
        raise SystemExit(
            "this bench measures the plain HTTP listener, and the running Slipway redirects it "
            "to HTTPS: start it with `SLIPWAY_HTTPS_PORT=0 ./scripts/up` for the bench"
        )
    return settings


def delete_service(name: str) -> None:
    """Remove a bench's service (best effort: a bench that failed half way may have none)."""
    subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "services", "delete", name],
        capture_output=True, check=False,
    )  # fmt: skip


# The Debian package of each command a bench needs, where the names differ.
PACKAGES = {"nginx": "nginx-light", "perf": "linux-perf", "taskset": "util-linux"}


def missing_packages(tools: Iterable[str], which: Any = shutil.which) -> list[str]:
    """The Debian packages to install for the `tools` not on PATH (each package once)."""
    wanted: list[str] = []
    for tool in tools:
        package = PACKAGES.get(tool, tool)
        if not which(tool) and package not in wanted:
            wanted.append(package)
    return wanted


def require(*tools: str) -> None:
    """Install the missing commands from Debian's archive when run as root, as ./scripts/up does
    for the platform (the benches' own tools, such as nginx for the peers, are in no script);
    otherwise stop with the apt-get line to run."""
    packages = missing_packages(tools)
    if not packages:
        return
    command = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    if os.geteuid() != 0:
        raise SystemExit(f"not installed: {', '.join(packages)}; run: sudo {' '.join(command)}")
    print(f"installing {', '.join(packages)} (apt-get)", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL, env=env)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
    still = missing_packages(tools)
    if still:
        raise SystemExit(f"installed, yet not on PATH: {', '.join(still)}")


# output -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    key: str  # the case's key
    head: str  # the table's header
    fmt: str = ">10.0f"  # the format of the value (strings: `<`-aligned to the header's width)


def check_figures(cases: Sequence[Case]) -> None:
    """Every case has a name; every number's name says its unit."""
    for case in cases:
        if not isinstance(case.get("name"), str):
            raise ValueError(f"a case without a name: {case}")
        for key, value in case.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if not (key in COUNTS or key.endswith(UNIT_SUFFIXES) or "_over_" in key):
                raise ValueError(f"figure {key!r} of case {case['name']!r} names no unit")


def table(cases: Sequence[Case], columns: Sequence[Column]) -> str:
    def cell(column: Column, value: object) -> str:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return format(value, column.fmt)
        return format("" if value is None else str(value), _text_format(column.fmt))

    head = "".join(format(c.head, _text_format(c.fmt)) for c in columns)
    rows = ["".join(cell(c, case.get(c.key)) for c in columns) for case in cases]
    return "\n".join([head.rstrip(), *(r.rstrip() for r in rows)])


def _text_format(fmt: str) -> str:
    """A number's format as the same alignment and width for text (headers, labels)."""
    width = re.search(r"\d+", fmt)
    return f"{fmt[0] if fmt[0] in '<>^' else '>'}{width.group(0) if width else ''}"


def emit(
    cases: Sequence[Case], columns: Sequence[Column], *, as_json: bool, notes: Sequence[str] = ()
) -> None:
    """The table (and the notes under it), or with `as_json` only `{"cases": [...]}`."""
    check_figures(cases)
    if as_json:
        print(json.dumps({"cases": list(cases)}, indent=2))
        return
    print(table(cases, columns))
    for note in notes:
        print(note)


def rounded(figures: Figures, *, digits: int = 3) -> dict[str, object]:
    return {k: round(v, digits) for k, v in figures.items()}


# a throwaway control plane ------------------------------------------------------------------------
class _TempDirs:
    """What `running_slipway` takes from pytest's tmp_path_factory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def mktemp(self, name: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.root))
        return path


@contextlib.contextmanager
def throwaway_slipway(*, extra_env: dict[str, str] | None = None) -> Iterator[Any]:
    """A registry and a control plane of their own on free ports, under a data dir in /tmp, as
    the integration tests start them (tests.integration.conftest, imported, not copied); every
    container, network and process they made is removed on the way out. Yields the tests'
    `Slipway` (its `cli`, `get`, `api_get`, `proc`, `data_dir`, `env`). Every process the run
    started is gone afterwards (`bench.reaping`): SystemExit names any that is not."""
    import docker

    from bench import reaping  # it imports this module
    from tests.integration import conftest

    client = docker.from_env(timeout=120)
    root = Path(tempfile.mkdtemp(prefix="slipway-bench-"))
    dirs = _TempDirs(root)
    started: set[reaping.Proc] = set()
    try:
        conftest.baseimages.ensure_base_images(client, references=[conftest.BUSYBOX])
        registry = conftest.Registry(dirs.mktemp("registry"))
        registry.start()
        try:
            with conftest.running_slipway(
                dirs,  # type: ignore[arg-type]
                client,
                registry.address,
                extra_env=extra_env,
            ) as sw:
                try:
                    yield sw
                finally:  # the shutdown comes next: all of them, as they were before it
                    started = reaping.started_under(root)
        finally:
            registry.stop()
    finally:
        client.close()
        # And what was started since (the control plane restarting HAProxy as it stopped).
        left = reaping.reap(started | reaping.started_under(root))
        shutil.rmtree(root, ignore_errors=True)
    if left:
        raise SystemExit(f"still running after the bench's teardown: {left}")


def instance_address(client: Any, container: Any, network: str) -> str:
    """An instance container's address on `network`: its network sandbox's when it runs in one
    (pipeline.engines.sandboxes), else its own."""
    from pipeline.engines.sandboxes import LABEL_SANDBOX

    sandbox = (container.labels or {}).get(LABEL_SANDBOX)
    attrs = client.api.inspect_container(sandbox) if sandbox else container.attrs
    return str(attrs["NetworkSettings"]["Networks"][network]["IPAddress"])
