"""Wake-from-zero latency: the first request to an idle revision, frozen (the activator thaws its
paused instance) and stopped (it starts a container), next to warm requests and next to the
floor: `docker run` of the same image to its first response, measured here in the same run.

Needs a running Slipway (`./scripts/up`). Deploys `bench-cold` as a busybox httpd app and as a
Python `http.server` app (the python base image), each with a 6 s stable window so it goes idle
quickly. Per app: with freezing off (`slipway.dev/frozen-retention-period: "0"`), `--rounds`
times: wait until the revision is at zero (the window plus SLIPWAY_SCALE_TO_ZERO_GRACE, 30 s by
default), time one request through HAProxy, then `--warm` sequential ones; the same with
freezing on, waiting until its instance is paused instead; then `--rounds` times `docker run`
of the image, timed until it first answers HTTP 200 (on Docker's default bridge: the floor; and
on Slipway's isolated network, where instances run). Prints the figures; never asserted in tests.

`--quick`: the busybox app only, 10 warm requests, on a throwaway control plane and registry of
its own (`bench.common.throwaway_slipway`: no `./scripts/up` needed; the image is built with
the Docker Engine and pushed, not built by Slipway). There the control plane's log is read for
where a wake from stopped goes: `handover` (the activator's `instance_for`, request to address),
of which `engine` (the Docker start: create, start, inspect) and `probe` (start returned to the
first probe that passed); the rest is waking the loop, its pass and planning. And for a wake
from frozen, `thaw` (the `docker unpause` the activator's request waits for); the rest of it is
HAProxy to the activator, its question to the control plane, and the forward.

    .venv/bin/python -m bench.coldstart [--quick] [--rounds 3] [--warm 50] [--json]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import httpx
import yaml

from bench.common import (
    Case,
    Column,
    bench_arguments,
    delete_service,
    emit,
    progress,
    running_settings,
    throwaway_slipway,
)
from bench.deploy import DOCKERFILE
from pipeline.cli.client import Client, default_url
from pipeline.core import names
from pipeline.core.annotations import FROZEN_RETENTION_ANNOTATION, WINDOW_ANNOTATION

SERVICE = "bench-cold"
PYTHON_DOCKERFILE = """FROM slipway/python:3.11-bookworm
COPY index.html /www/index.html
USER 10001
CMD ["sh", "-c", "exec python3 -m http.server ${PORT} -d /www"]
"""
APPS = {"busybox httpd": DOCKERFILE, "python http.server": PYTHON_DOCKERFILE}
PORT = 8080


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pipeline.cli", *args], check=True, capture_output=True)


class Instances:
    """The bench service's containers on this platform, by Docker status."""

    def __init__(self, client: docker.DockerClient, *, platform: str) -> None:
        self._client = client
        self._labels = [f"{names.LABEL_SERVICE}={SERVICE}", f"{names.LABEL_PLATFORM}={platform}"]

    def states(self) -> list[str]:
        for _ in range(10):
            try:
                found = self._client.containers.list(all=True, filters={"label": self._labels})
                return [str(c.status) for c in found]
            except docker.errors.NotFound:  # removed while being listed: list again
                time.sleep(0.1)
        raise SystemExit("the bench's containers kept vanishing while being listed")

    def wait(self, done: Callable[[list[str]], bool], what: str) -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if done(self.states()):
                return
            time.sleep(0.5)
        raise SystemExit(f"the revision never got {what}: {self.states()}")


def stopped(states: list[str]) -> bool:
    return not states


def frozen(states: list[str]) -> bool:
    return "paused" in states and "running" not in states


@dataclass(frozen=True, kw_only=True)
class Target:
    """The platform the bench drives: the running one (`./scripts/up`) or a throwaway one."""

    api: Client
    ingress: str  # http://127.0.0.1:<port>/
    host: str  # the service's Host header
    instances: Instances
    network: str  # Slipway's isolated network (the second floor)
    put: Callable[[str], None]  # a Service document -> deployed
    image: Callable[[Path], str]  # an app folder -> the image a revision runs
    log: Path | None = None  # the control plane's log, when the bench started it


def deploy(app: Path, api: Client) -> str:
    """Build it; return the image the revision runs."""
    cli("deploy", SERVICE, "--source", str(app))
    return str(api.request("GET", f"/v1/services/{SERVICE}")["revisions"][0]["image"])


def document(image: str, *, retention: str | None) -> str:
    """A revision with a short window (idle in seconds, not minutes), freezing on or off."""
    annotations = {WINDOW_ANNOTATION: "6s"}
    if retention is not None:
        annotations[FROZEN_RETENTION_ANNOTATION] = retention
    return yaml.safe_dump(
        {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": {"name": SERVICE},
            "spec": {
                "template": {
                    "metadata": {"annotations": annotations},
                    "spec": {"containers": [{"image": image}]},
                }
            },
        }
    )


def cli_put(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        doc = Path(tmp) / "service.yaml"
        doc.write_text(text)
        cli("services", "replace", str(doc))


def api_put(api: Client) -> Callable[[str], None]:
    def put(text: str) -> None:
        events = api.stream("PUT", f"/v1/services/{SERVICE}", content=text.encode(),
                            headers={"Content-Type": "application/yaml"})  # fmt: skip
        failed = [e for e in events if e.get("event") == "error"]
        if failed:
            raise SystemExit(f"deploying {SERVICE} failed: {failed[0].get('message')}")

    return put


def log_events(path: Path | None, *, after: int) -> list[dict[str, Any]]:
    """The control plane's JSON log lines from line `after` on."""
    if path is None:
        return []
    out = []
    for line in path.read_text().splitlines()[after:]:
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def log_length(path: Path | None) -> int:
    return len(path.read_text().splitlines()) if path is not None else 0


def breakdown(events: list[dict[str, Any]]) -> dict[str, float]:
    """One wake, from the control plane's log: ms per part (see the docstring)."""

    def seconds(name: str) -> float | None:
        found = [e for e in events if e.get("event") == name and "seconds" in e]
        # The first: requests that reach the activator before HAProxy has the instance are
        # handed the same one at once (0 s), and only the first wake started it.
        return float(found[0]["seconds"]) if found else None

    parts = {"handover_ms": seconds("instance_handed_over"),
             "engine_ms": seconds("instance_started"),
             "probe_ms": seconds("instance_first_probe"),
             "thaw_ms": seconds("instance_thawed")}  # fmt: skip
    return {k: 1000 * v for k, v in parts.items() if v is not None}


def measure(
    target: Target, *, idle: Callable[[list[str]], bool], rounds: int, warm: int
) -> tuple[list[float], list[float], list[dict[str, float]]]:
    """`rounds` first requests, each once the revision is `idle`; `warm` requests after each;
    per round, where the wake's time went (from the control plane's log, when there is one)."""
    first: list[float] = []
    warm_ms: list[float] = []
    parts: list[dict[str, float]] = []
    with httpx.Client(timeout=120) as http:
        for _ in range(rounds):
            target.instances.wait(idle, "idle")
            mark = log_length(target.log)
            started = time.perf_counter()
            reply = http.get(target.ingress, headers={"Host": target.host})
            first.append((time.perf_counter() - started) * 1000)
            reply.raise_for_status()
            for _ in range(warm):
                started = time.perf_counter()
                http.get(target.ingress, headers={"Host": target.host}).raise_for_status()
                warm_ms.append((time.perf_counter() - started) * 1000)
            time.sleep(0.5)  # the log lines of the wake are written by then
            parts.append(breakdown(log_events(target.log, after=mark)))
    return first, warm_ms, parts


def docker_run_ms(client: docker.DockerClient, image: str, *, network: str = "bridge") -> float:
    """`docker run` of the image until it first answers 200: the floor for a start from zero
    (on Docker's default bridge, or on `network`: Slipway's own, isolated one)."""
    started = time.perf_counter()
    container = client.containers.run(
        image, detach=True, init=True, environment={"PORT": str(PORT)}, network=network,
        labels={"slipway.bench": "coldstart-floor"},
    )  # fmt: skip
    try:
        container.reload()
        address = container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
        with httpx.Client(timeout=1) as http:
            while time.perf_counter() - started < 60:
                try:
                    if http.get(f"http://{address}:{PORT}/").status_code == 200:
                        return (time.perf_counter() - started) * 1000
                except httpx.HTTPError:
                    time.sleep(0.002)
        raise SystemExit(f"{image} did not answer within 60 s of docker run")
    finally:
        container.remove(force=True)


COLUMNS = (
    Column("name", "app", "<20"), Column("warm_p50_ms", "warm p50 ms", ">12.1f"),
    Column("frozen_median_ms", "frozen ms", ">11.1f"),
    Column("frozen_added_ms", "+ over warm", ">12.1f"),
    Column("stopped_median_ms", "stopped ms", ">11.0f"),
    Column("docker_run_median_ms", "docker run ms", ">14.0f"),
    Column("stopped_added_ms", "+ over run", ">11.0f"),
    Column("docker_run_net_median_ms", "run, our net ms", ">16.0f"),
    Column("handover_ms", "handover ms", ">12.0f"), Column("engine_ms", "engine ms", ">10.0f"),
    Column("probe_ms", "probe ms", ">9.0f"), Column("thaw_ms", "thaw ms", ">8.1f"),
)  # fmt: skip


def case(
    label: str, *, frozen_ms: list[float], stopped_ms: list[float], warm_ms: list[float],
    floor_ms: list[float], net_ms: list[float], rounds: int, parts: list[dict[str, float]],
) -> Case:  # fmt: skip
    warm = statistics.median(warm_ms)
    floor = statistics.median(floor_ms)
    result: Case = {
        "name": label,
        "warm_p50_ms": round(warm, 1),
        "frozen_min_ms": round(min(frozen_ms), 1),
        "frozen_median_ms": round(statistics.median(frozen_ms), 1),
        "frozen_max_ms": round(max(frozen_ms), 1),
        "frozen_added_ms": round(statistics.median(frozen_ms) - warm, 1),
        "stopped_min_ms": round(min(stopped_ms)),
        "stopped_median_ms": round(statistics.median(stopped_ms)),
        "stopped_max_ms": round(max(stopped_ms)),
        "docker_run_median_ms": round(floor),
        "stopped_added_ms": round(statistics.median(stopped_ms) - floor),
        "docker_run_net_median_ms": round(statistics.median(net_ms)),
        "rounds": rounds,
    }
    for key in ("handover_ms", "engine_ms", "probe_ms", "thaw_ms"):  # medians of those that have it
        values = [p[key] for p in parts if key in p]
        if values:
            result[key] = round(statistics.median(values), 1 if key == "thaw_ms" else None)
    return result


def run_app(
    label: str, dockerfile: str, *, target: Target, client: docker.DockerClient, rounds: int,
    warm: int,
) -> Case:  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp)
        (app / "Dockerfile").write_text(dockerfile)
        (app / "index.html").write_text("cold\n")
        image = target.image(app)
        tiers: dict[str, tuple[list[float], list[float], list[dict[str, float]]]] = {}
        for tier, retention, idle in (("stopped", "0", stopped), ("frozen", None, frozen)):
            progress(f"{label}: {rounds} rounds from {tier}")
            target.put(document(image, retention=retention))
            tiers[tier] = measure(target, idle=idle, rounds=rounds, warm=warm)
    progress(f"{label}: {rounds} rounds of docker run")
    floor = [docker_run_ms(client, image) for _ in range(rounds)]
    net = [docker_run_ms(client, image, network=target.network) for _ in range(rounds)]
    return case(
        label, frozen_ms=tiers["frozen"][0], stopped_ms=tiers["stopped"][0],
        warm_ms=tiers["stopped"][1] + tiers["frozen"][1], floor_ms=floor, net_ms=net,
        rounds=rounds, parts=tiers["stopped"][2] + tiers["frozen"][2],
    )  # fmt: skip


@contextmanager
def running(client: docker.DockerClient) -> Iterator[Target]:
    """The platform `./scripts/up` runs (its settings from the environment)."""
    settings = running_settings()
    api = Client.from_env()
    try:
        yield Target(
            api=api,
            ingress=default_url(settings).replace("localhost", "127.0.0.1") + "/",
            host=f"{names.service_host(SERVICE, settings.domain)}:{settings.ingress_port}",
            instances=Instances(client, platform=settings.platform_id),
            network=settings.network,
            put=cli_put,
            image=lambda app: deploy(app, api),
        )
    finally:
        delete_service(SERVICE)


@contextmanager
def throwaway(client: docker.DockerClient) -> Iterator[Target]:
    """A control plane and registry of the bench's own; the image pushed by the bench."""
    from tests.integration.conftest import push_image

    with throwaway_slipway() as sw:
        api = Client(url=f"http://127.0.0.1:{sw.api_port}", token=sw.token, timeout_s=120)
        ref = f"{sw.env['SLIPWAY_REGISTRY']}/bench-cold/app:1"
        yield Target(
            api=api,
            ingress=f"http://127.0.0.1:{sw.ingress_port}/",
            host=f"{names.service_host(SERVICE, 'localhost')}:{sw.ingress_port}",
            instances=Instances(client, platform=sw.platform_id),
            network=sw.network,
            put=api_put(api),
            image=lambda app: push_image(client, app, ref),
            log=sw.log_path,
        )


def main() -> int:
    parser = bench_arguments(__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warm", type=int, default=50)
    parser.add_argument(
        "--quick", action="store_true", help="busybox, 10 warm requests, a throwaway platform"
    )
    args = parser.parse_args()
    apps = {k: v for k, v in APPS.items() if not args.quick or k == "busybox httpd"}
    warm = 10 if args.quick else args.warm
    client = docker.from_env()
    cases: list[Case] = []
    with (throwaway if args.quick else running)(client) as target:
        for label, dockerfile in apps.items():
            cases.append(run_app(label, dockerfile, target=target, client=client,
                                 rounds=args.rounds, warm=warm))  # fmt: skip
    notes = [
        f"first request to an idle revision vs. warm, through HAProxy ({args.rounds} rounds, "
        "medians); frozen: its instance paused, stopped: freezing off, a container starts; "
        "docker run: the same image started by hand until its first 200 (the floor), on "
        "Docker's default bridge and on Slipway's isolated network; handover/engine/probe: "
        "a wake from stopped from the control plane's log, thaw: the docker unpause of a wake "
        "from frozen (--quick only)"
    ]
    emit(cases, COLUMNS, as_json=args.json, notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
