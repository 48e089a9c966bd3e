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

    .venv/bin/python -m bench.coldstart [--rounds 3] [--warm 50] [--json]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import docker
import httpx
import yaml

from bench.common import Case, Column, bench_arguments, delete_service, emit, progress
from bench.deploy import DOCKERFILE
from pipeline.cli.client import Client, default_url
from pipeline.core import names
from pipeline.core.annotations import FROZEN_RETENTION_ANNOTATION, WINDOW_ANNOTATION
from pipeline.core.settings import Settings

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


def deploy(app: Path, api: Client) -> str:
    """Build it; return the image the revision runs."""
    cli("deploy", SERVICE, "--source", str(app))
    return str(api.request("GET", f"/v1/services/{SERVICE}")["revisions"][0]["image"])


def replace(app: Path, image: str, *, retention: str | None) -> None:
    """A revision with a short window (idle in seconds, not minutes), freezing on or off."""
    annotations = {WINDOW_ANNOTATION: "6s"}
    if retention is not None:
        annotations[FROZEN_RETENTION_ANNOTATION] = retention
    doc = app / "service.yaml"
    doc.write_text(
        yaml.safe_dump(
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
    )
    cli("services", "replace", str(doc))


def measure(
    *, ingress: str, host: str, instances: Instances, idle: Callable[[list[str]], bool],
    rounds: int, warm: int,
) -> tuple[list[float], list[float]]:  # fmt: skip
    """`rounds` first requests, each once the revision is `idle`; `warm` requests after each."""
    first: list[float] = []
    warm_ms: list[float] = []
    with httpx.Client(timeout=120) as http:
        for _ in range(rounds):
            instances.wait(idle, "idle")
            started = time.perf_counter()
            reply = http.get(ingress, headers={"Host": host})
            first.append((time.perf_counter() - started) * 1000)
            reply.raise_for_status()
            for _ in range(warm):
                started = time.perf_counter()
                http.get(ingress, headers={"Host": host}).raise_for_status()
                warm_ms.append((time.perf_counter() - started) * 1000)
    return first, warm_ms


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
)  # fmt: skip


def case(
    label: str, *, frozen_ms: list[float], stopped_ms: list[float], warm_ms: list[float],
    floor_ms: list[float], net_ms: list[float], rounds: int,
) -> Case:  # fmt: skip
    warm = statistics.median(warm_ms)
    floor = statistics.median(floor_ms)
    return {
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


def run_app(
    label: str, dockerfile: str, *, api: Client, client: docker.DockerClient,
    instances: Instances, ingress: str, host: str, rounds: int, warm: int, network: str,
) -> Case:  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp)
        (app / "Dockerfile").write_text(dockerfile)
        (app / "index.html").write_text("cold\n")
        image = deploy(app, api)
        tiers: dict[str, tuple[list[float], list[float]]] = {}
        for tier, retention, idle in (("stopped", "0", stopped), ("frozen", None, frozen)):
            progress(f"{label}: {rounds} rounds from {tier}")
            replace(app, image, retention=retention)
            tiers[tier] = measure(ingress=ingress, host=host, instances=instances, idle=idle,
                                  rounds=rounds, warm=warm)  # fmt: skip
    progress(f"{label}: {rounds} rounds of docker run")
    floor = [docker_run_ms(client, image) for _ in range(rounds)]
    net = [docker_run_ms(client, image, network=network) for _ in range(rounds)]
    return case(
        label, frozen_ms=tiers["frozen"][0], stopped_ms=tiers["stopped"][0],
        warm_ms=tiers["stopped"][1] + tiers["frozen"][1], floor_ms=floor, net_ms=net,
        rounds=rounds,
    )  # fmt: skip


def main() -> int:
    parser = bench_arguments(__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warm", type=int, default=50)
    args = parser.parse_args()
    settings = Settings.from_env()
    ingress = default_url(settings).replace("localhost", "127.0.0.1") + "/"
    host = f"{names.service_host(SERVICE, settings.domain)}:{settings.ingress_port}"
    client = docker.from_env()
    instances = Instances(client, platform=settings.platform_id)
    api = Client.from_env()
    cases: list[Case] = []
    try:
        for label, dockerfile in APPS.items():
            cases.append(
                run_app(label, dockerfile, api=api, client=client, instances=instances,
                        ingress=ingress, host=host, rounds=args.rounds, warm=args.warm,
                        network=settings.network)
            )  # fmt: skip
    finally:
        delete_service(SERVICE)
    notes = [
        f"first request to an idle revision vs. warm, through HAProxy ({args.rounds} rounds, "
        "medians); frozen: its instance paused, stopped: freezing off, a container starts; "
        "docker run: the same image started by hand until its first 200 (the floor), on "
        "Docker's default bridge and on Slipway's isolated network"
    ]
    emit(cases, COLUMNS, as_json=args.json, notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
