"""A throwaway platform as the long-running benches drive it (`bench.scale`, `bench.soak`): the
control plane of `bench.common.throwaway_slipway`, two busybox httpd images (bodies `v1`, `v2`)
pushed to its registry, Service documents, and waits for what HAProxy serves.

Its teardown leaves nothing running: HAProxy and the daemons run in sessions of their own (they
outlive the control plane by design), so after the usual shutdown every process group the run
started is signalled whole, SIGKILLed after a timeout, and HAProxy under the run's temp dir is
checked gone (an HAProxy left behind once kept spinning at 41% CPU).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, NamedTuple

import docker
import httpx
import yaml

from bench.common import throwaway_slipway, with_descendants
from pipeline.cli.client import Client
from pipeline.core import names

BODIES = ("v1", "v2")
STOP_TIMEOUT_S = 10.0
MIN_SCALE = "autoscaling.knative.dev/min-scale"


def document(
    name: str,
    image: str,
    *,
    loaded: bool,
    env: str = "",
    traffic: Any = None,
    annotations: dict[str, str] | None = None,
) -> str:
    """A Service: `loaded` keeps one instance (min-scale 1); otherwise it scales to zero after a
    6 s window. `annotations` are added to the template's."""
    annotations = {MIN_SCALE: "1" if loaded else "0", **(annotations or {})}
    if not loaded:
        annotations["autoscaling.knative.dev/window"] = "6s"
    container: dict[str, Any] = {"image": image}
    if env:
        container["env"] = [{"name": "GENERATION", "value": env}]
    spec: dict[str, Any] = {
        "template": {"metadata": {"annotations": annotations}, "spec": {"containers": [container]}}
    }
    if traffic is not None:
        spec["traffic"] = traffic
    doc = {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
           "metadata": {"name": name}, "spec": spec}  # fmt: skip
    return yaml.safe_dump(doc)


class Platform:
    """The throwaway control plane as a bench drives it: the API, HAProxy, the log."""

    def __init__(self, sw: Any, images: tuple[str, str]) -> None:
        self.sw = sw
        self.images = images
        self.api = Client(url=f"http://127.0.0.1:{sw.api_port}", token=sw.token, timeout_s=120)
        self.ingress = f"http://127.0.0.1:{sw.ingress_port}/"
        self.errors: list[str] = []  # failed deploys (each tried again once)

    def replace(self, name: str, image: str, **kwargs: Any) -> None:
        """Deploy; a deploy that fails is tried once more, and each failure is kept in `errors`
        (the engine's container listing can race a removal: see the report)."""
        text = document(name, image, **kwargs)
        for _ in range(2):
            events = self.api.stream("PUT", f"/v1/services/{name}", content=text.encode(),
                                     headers={"Content-Type": "application/yaml"})  # fmt: skip
            failed = [e for e in events if e.get("event") == "error"]
            if not failed:
                return
            self.errors.append(f"deploying {name}: {failed[0].get('message')}")
        raise SystemExit(f"deploying {name} failed twice: {self.errors[-1]}")

    def traffic(self, name: str, **body: Any) -> None:
        self.api.request("POST", f"/v1/services/{name}/traffic", json=body)

    def body(self, host: str, http: httpx.Client) -> tuple[int, str]:
        headers = {"Host": f"{names.service_host(host, 'localhost')}:{self.sw.ingress_port}"}
        resp = http.get(self.ingress, headers=headers)
        return resp.status_code, resp.text.strip()

    def metric(self, name: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.sw.api_port}/metrics", timeout=120).text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise SystemExit(f"/metrics has no {name}: is this control plane from this tree?")

    def applies(self) -> list[tuple[str, float]]:
        """(result, seconds) of every `dataplane_applied` line so far."""
        out = []
        for line in self.sw.log_path.read_text().splitlines():
            if '"dataplane_applied"' in line:
                event = json.loads(line)
                out.append((str(event["result"]), float(event.get("seconds", 0.0))))
        return out

    def running(self, service: str = "") -> int:
        """Running instances (of `service`, or of every service)."""
        client = docker.from_env()
        try:
            return sum(
                1
                for c in self.sw.containers(client)
                if c.status == "running"
                and (not service or c.labels.get(names.LABEL_SERVICE) == service)
            )
        finally:
            client.close()

    def haproxy_pid(self) -> int:
        """HAProxy's master (its workers are its children)."""
        return int((self.sw.data_dir / "haproxy" / "haproxy.pid").read_text().split()[0])


def until(check: Callable[[], bool], *, timeout_s: float, what: str, poll_s: float = 0.01) -> float:
    """Seconds until `check()` holds."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout_s:
            raise SystemExit(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(poll_s)
    return time.monotonic() - began


def answers(platform: Platform, host: str, want: str, http: httpx.Client) -> Callable[[], bool]:
    return lambda: _answers(platform, host, want, http)


def _answers(platform: Platform, host: str, want: str, http: httpx.Client) -> bool:
    with suppress(httpx.HTTPError):
        return platform.body(host, http) == (200, want)
    return False


def images(sw: Any, work: Path, *, repo: str) -> tuple[str, str]:
    """The two app images (bodies `v1`, `v2`), built and pushed to the platform's registry."""
    from tests.integration.conftest import push_image, write_app

    client = docker.from_env(timeout=120)
    try:
        refs = []
        for body in BODIES:
            ref = f"{sw.env['SLIPWAY_REGISTRY']}/{repo}/app:{body}"
            refs.append(push_image(client, write_app(work / body, body=body + "\n"), ref))
        return refs[0], refs[1]
    finally:
        client.close()


@contextmanager
def platform_up(
    *, repo: str = "bench-app", extra_env: dict[str, str] | None = None
) -> Iterator[Platform]:
    """A throwaway platform with both images pushed; the local image tags removed afterwards,
    and every process the run started gone (SystemExit naming any that is not)."""
    env = {"SLIPWAY_READINESS_TIMEOUT": "60", "SLIPWAY_GRACE_PERIOD": "2", **(extra_env or {})}
    started: set[Proc] = set()
    root: Path | None = None
    try:
        with throwaway_slipway(extra_env=env) as sw:
            root = sw.data_dir.parent  # the run's temp dir: registry and data dir are in it
            try:
                refs = images(sw, sw.data_dir, repo=repo)
                try:
                    yield Platform(sw, refs)
                finally:  # the local tags this run made (each run's registry has a new port)
                    client = docker.from_env()
                    for ref in refs:
                        with suppress(docker.errors.APIError):  # still used, or already gone
                            client.images.remove(ref)
                    client.close()
            finally:  # the shutdown comes next: all of them, as they were before it
                started = started_under(root)
    finally:
        # And what was started since (the control plane restarting HAProxy as it stopped).
        left = reap(started | started_under(root)) if root is not None else []
    if left:
        raise SystemExit(f"still running after the bench's teardown: {left}")


class Proc(NamedTuple):
    """A process as first seen: its start time tells it from a later one given the same pid."""

    pid: int
    start: int


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, start time) from /proc now; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses
    return fields[0], int(fields[2]), int(fields[19])  # fields 3, 5 and 22 of the line


def _names(pid: int, root: Path) -> bool:
    """Does the command line or the environment (as it was at exec) name a path under `root`?"""
    needle = f"{root}/".encode()
    try:
        return any(needle in Path(f"/proc/{pid}/{part}").read_bytes()
                   for part in ("cmdline", "environ"))  # fmt: skip
    except OSError:
        return False  # gone, or not ours to read


def started_under(root: Path) -> set[Proc]:
    """The processes of a run whose files are under `root`, and their descendants: the control
    plane and what it starts carry SLIPWAY_DATA_DIR there (HAProxy, the daemons: the resolver's
    command line names no path), the registry's command line names its config there."""
    pids = {int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()}
    procs = set()
    for pid in with_descendants({pid for pid in pids if _names(pid, root)}) - {os.getpid()}:
        stat = _stat(pid)
        if stat is not None:
            procs.add(Proc(pid, stat[2]))
    return procs


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _alive(proc: Proc) -> bool:
    stat = _stat(proc.pid)
    return stat is not None and stat[0] != "Z" and stat[2] == proc.start


def _signal(procs: set[Proc], sig: signal.Signals) -> None:
    """Each process's whole group where it leads a session of its own (HAProxy's workers, a
    daemon's children, grandchildren that outlived their parent); in the bench's own group only
    the process itself."""
    own = os.getpgrp()
    for proc in procs:
        stat = _stat(proc.pid)
        if stat is None or stat[2] != proc.start:
            continue
        with suppress(ProcessLookupError, PermissionError):
            if stat[1] != own:
                os.killpg(stat[1], sig)
            else:
                os.kill(proc.pid, sig)


def reap(procs: set[Proc], *, timeout_s: float = STOP_TIMEOUT_S) -> list[str]:
    """SIGTERM to what still runs of `procs`, SIGKILL to what outlives `timeout_s`; the command
    lines of any left even then (none, unless one is stuck in the kernel)."""
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        living = {p for p in procs if _alive(p)}
        if not living:
            return []
        _signal(living, sig)
        deadline = time.monotonic() + wait_s
        while any(_alive(p) for p in living) and time.monotonic() < deadline:
            time.sleep(0.05)
    return [_cmdline(p.pid) for p in procs if _alive(p)]
