"""The proxies `bench/peers.py` compares, started pinned to one core with one worker/thread each.

`start` runs one process under `taskset` and hands back a `Running` with its pids, so the bench can
read their CPU time from /proc; each launcher (folder, upstream port) -> `Target` writes its
proxy's config (`bench.proxyconfigs`) and starts it. Slipway's ingress is HAProxy with Slipway's
rendered config, the invokers map it writes and its request-log reader (`RequestLogs`)
listening, as the control plane runs it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

from bench import proxyconfigs as configs
from bench.common import free_port, wait_tcp
from pipeline.core import names
from pipeline.dataplane.requestlogs import RequestLogs, socket_path

PROXY_CPU = "1"  # every proxy measured runs here, alone
LOAD_CPU = "0"  # wrk, the upstream nginx and the bench itself
BODY = "ok\n"


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
    wrap: Sequence[str] = (),
) -> Running:
    """Run `argv` on `cpu` (its output to `log`) and wait until it listens on `port`; `wrap`
    goes in front of it (`valgrind --tool=callgrind ...`, as `bench.proxycounts` runs them)."""
    running = running or Running()
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            ["taskset", "-c", cpu, *wrap, *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # a Ctrl-C of the bench reaches them through `stop`
        )
    running.procs.append(proc)
    running.logs.append(log)
    try:
        # valgrind runs HAProxy's start-up (its CA store alone) some 50 times slower
        wait_tcp("127.0.0.1", port, timeout_s=180 if wrap else 30)
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


class Launch(Protocol):
    """(a fresh folder, the upstream's port) -> the started proxy; `wrap` goes before its argv."""

    def __call__(self, folder: Path, upstream: int, *, wrap: Sequence[str] = ()) -> Target: ...


@dataclass(frozen=True, kw_only=True)
class Target:
    """A started proxy: where wrk sends requests, and what it measures."""

    running: Running
    port: int
    host: str = configs.DOMAIN
    headers: dict[str, str] | None = None


# The standalone rows other rows are compared with (`bench.peers`' verdict, `bench.proxycounts`'
# ratios): HAProxy's own two-section config, and HAProxy and nginx doing Slipway's per-request work.
OWN_HAPROXY = "HAProxy, own config"
SAME_HAPROXY, SAME_NGINX = "HAProxy, same work", "nginx, same work"


# Slipway's ingress --------------------------------------------------------------------------------
def slipway(
    *,
    service: str = configs.PUBLIC,
    without: tuple[str, ...] = (),
    private: bool = True,
    split: bool | None = None,
) -> Launch:
    """Slipway's ingress answering for `service`; a split service on the listener only when
    `split` says so (by default: when the split service is the one asked)."""
    with_split = service == configs.SPLIT if split is None else split

    def launch(folder: Path, upstream: int, *, wrap: Sequence[str] = ()) -> Target:
        port = free_port()
        ingress = configs.slipway_plane(
            run_dir=folder, port=port, upstream_port=upstream, private=private, split=with_split
        )
        config = configs.write_slipway_files(
            ingress, text=configs.slipway_conf(ingress, without=without)
        )
        logs = RequestLogs.listen(socket_path(folder))  # as the control plane reads them
        running = start(
            [binary("haproxy"), "-db", "-f", str(config)], log=folder / "log", port=port, wrap=wrap
        )
        running.on_stop.append(logs.close)
        headers = None
        if service == configs.PRIVATE:
            headers = {"Authorization": f"Bearer {configs.token(ingress)}"}
            refuse_without_token(port, host=names.service_host(service, configs.DOMAIN))
        host = f"{names.service_host(service, configs.DOMAIN)}:{port}"
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
def haproxy_own(folder: Path, upstream: int, *, wrap: Sequence[str] = ()) -> Target:
    port = free_port()
    config = folder / "haproxy.cfg"
    config.write_text(configs.haproxy_own_conf(port=port, upstream_port=upstream))
    argv = [binary("haproxy"), "-db", "-f", str(config)]
    return Target(running=start(argv, log=folder / "log", port=port, wrap=wrap), port=port)


def nginx_proxy(folder: Path, upstream: int, *, wrap: Sequence[str] = ()) -> Target:
    port = free_port()
    config = folder / "nginx.conf"
    config.write_text(configs.nginx_conf(port=port, run_dir=folder, upstream_port=upstream))
    argv = [binary("nginx"), "-e", "stderr", "-c", str(config)]
    return Target(running=start(argv, log=folder / "log", port=port, wrap=wrap), port=port)


def haproxy_same_work(folder: Path, upstream: int, *, wrap: Sequence[str] = ()) -> Target:
    """A standalone HAProxy doing Slipway's per-request work (`configs.haproxy_same_work_conf`),
    its request lines read as the control plane reads Slipway's."""
    port = free_port()
    (folder / configs.HOSTS_MAP).write_text(configs.hosts_map_text())
    config = folder / "haproxy.cfg"
    config.write_text(configs.haproxy_same_work_conf(port=port, upstream_port=upstream,
                                                     run_dir=folder))  # fmt: skip
    logs = RequestLogs.listen(socket_path(folder))
    argv = [binary("haproxy"), "-db", "-f", str(config)]
    running = start(argv, log=folder / "log", port=port, wrap=wrap)
    running.on_stop.append(logs.close)
    return Target(running=running, port=port, host=f"{configs.SAME_WORK_HOST}:{port}")


def nginx_same_work(folder: Path, upstream: int, *, wrap: Sequence[str] = ()) -> Target:
    port = free_port()
    config = folder / "nginx.conf"
    config.write_text(configs.nginx_same_work_conf(port=port, run_dir=folder,
                                                   upstream_port=upstream))  # fmt: skip
    argv = [binary("nginx"), "-e", "stderr", "-c", str(config)]
    running = start(argv, log=folder / "log", port=port, wrap=wrap)
    return Target(running=running, port=port, host=f"{configs.SAME_WORK_HOST}:{port}")


def traefik(folder: Path, upstream: int) -> Target:
    port = free_port()
    dynamic = folder / "dynamic.yml"
    dynamic.write_text(configs.traefik_dynamic(host=configs.DOMAIN, upstream_port=upstream))
    argv = configs.traefik_argv(binary("traefik", group="traefik"), port=port,
                                dynamic=dynamic)  # fmt: skip
    running = start(argv, log=folder / "log", port=port, env=configs.GO_ONE_THREAD)
    return Target(running=running, port=port)


def kamal_proxy(folder: Path, upstream: int) -> Target:
    port, kamal = free_port(), binary("kamal-proxy", group="kamal-proxy")
    env = {**configs.GO_ONE_THREAD, "HOME": str(folder), "XDG_RUNTIME_DIR": str(folder)}
    argv = [kamal, "run", f"--http-port={port}", f"--https-port={free_port()}"]
    running = start(argv, log=folder / "log", port=port, env=env)
    run_once(
        [kamal, "deploy", "bench", f"--target=127.0.0.1:{upstream}", f"--host={configs.DOMAIN}",
         "--health-check-path=/index.html"],
        env=env, running=running,
    )  # fmt: skip
    return Target(running=running, port=port)


def queue_proxy(folder: Path, upstream: int) -> Target:
    folder.mkdir(parents=True, exist_ok=True)
    check_free(configs.QUEUE_FIXED_PORTS, what="Knative's queue-proxy")
    port = free_port()
    env = configs.queue_proxy_env(port=port, user_port=upstream, tls_port=free_port())
    queue = [binary("queue", group="knative")]
    return Target(running=start(queue, log=folder / "log", port=port, env=env), port=port)


@contextmanager
def upstream(folder: Path) -> Iterator[int]:
    """Debian's nginx serving BODY, on the load core: its port."""
    (folder / "www").mkdir(parents=True)
    (folder / "www" / "index.html").write_text(BODY)
    port = free_port()
    config = folder / "nginx.conf"
    config.write_text(configs.nginx_conf(port=port, run_dir=folder, root=folder / "www"))
    argv = [binary("nginx"), "-e", "stderr", "-c", str(config)]
    running = start(argv, log=folder / "log", port=port, cpu=LOAD_CPU)
    try:
        yield port
    finally:
        running.stop()
