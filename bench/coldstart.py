"""Scale-from-zero latency: the first request to a revision at zero (held by the activator while
an instance starts) next to warm requests to the same revision, in one run.

Needs a running Slipway (`./scripts/up`). Deploys `bench-cold` twice over, as a busybox httpd app
and as a Python `http.server` app (the python base image), each with a 6 s stable window so it
goes idle quickly; then, per round, waits until the revision is at zero (the window plus
SLIPWAY_SCALE_TO_ZERO_GRACE, 30 s by default), times one request through HAProxy, and times
`--warm` sequential requests once the instance is up. Prints the figures; never asserted in tests.

    .venv/bin/python -m bench.coldstart [--rounds 3] [--warm 50] [--json]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
import httpx
import yaml

from bench.common import Case, Column, bench_arguments, delete_service, emit
from bench.deploy import DOCKERFILE
from pipeline.cli.client import Client, default_url
from pipeline.core import names
from pipeline.core.settings import Settings

SERVICE = "bench-cold"
PYTHON_DOCKERFILE = """FROM slipway/python:3.11-bookworm
COPY index.html /www/index.html
USER 10001
CMD ["sh", "-c", "exec python3 -m http.server ${PORT} -d /www"]
"""
APPS = {"busybox httpd": DOCKERFILE, "python http.server": PYTHON_DOCKERFILE}


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pipeline.cli", *args], check=True, capture_output=True)


def running(client: docker.DockerClient) -> int:
    label = f"{names.LABEL_SERVICE}={SERVICE}"
    return len(client.containers.list(filters={"label": label, "status": "running"}))


def deploy(app: Path, api: Client) -> None:
    """Build it, then give the revision a short window so it goes idle in seconds, not minutes."""
    cli("deploy", SERVICE, "--source", str(app))
    image = api.request("GET", f"/v1/services/{SERVICE}")["revisions"][0]["image"]
    doc = app / "service.yaml"
    doc.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "serving.knative.dev/v1",
                "kind": "Service",
                "metadata": {"name": SERVICE},
                "spec": {
                    "template": {
                        "metadata": {"annotations": {"autoscaling.knative.dev/window": "6s"}},
                        "spec": {"containers": [{"image": image}]},
                    }
                },
            }
        )
    )
    cli("services", "replace", str(doc))


def measure(
    *, ingress: str, host: str, client: docker.DockerClient, rounds: int, warm: int
) -> tuple[list[float], list[float]]:
    cold: list[float] = []
    warm_ms: list[float] = []
    with httpx.Client(timeout=120) as http:
        for _ in range(rounds):
            deadline = time.monotonic() + 300
            while running(client) and time.monotonic() < deadline:
                time.sleep(1)
            if running(client):
                raise SystemExit("the revision never went to zero: is scale to zero enabled?")
            started = time.perf_counter()
            reply = http.get(ingress, headers={"Host": host})
            cold.append((time.perf_counter() - started) * 1000)
            reply.raise_for_status()
            for _ in range(warm):
                started = time.perf_counter()
                http.get(ingress, headers={"Host": host}).raise_for_status()
                warm_ms.append((time.perf_counter() - started) * 1000)
    return cold, warm_ms


COLUMNS = (
    Column("name", "app", "<20"), Column("cold_min_ms", "cold min ms", ">12.0f"),
    Column("cold_median_ms", "cold med ms", ">12.0f"),
    Column("cold_max_ms", "cold max ms", ">12.0f"), Column("warm_p50_ms", "warm p50 ms", ">12.1f"),
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
    api = Client.from_env()
    results: dict[str, tuple[list[float], list[float]]] = {}
    try:
        for label, dockerfile in APPS.items():
            with tempfile.TemporaryDirectory() as tmp:
                app = Path(tmp)
                (app / "Dockerfile").write_text(dockerfile)
                (app / "index.html").write_text("cold\n")
                deploy(app, api)
            results[label] = measure(
                ingress=ingress, host=host, client=client, rounds=args.rounds, warm=args.warm
            )
    finally:
        delete_service(SERVICE)
    cases: list[Case] = [
        {
            "name": label,
            "cold_min_ms": round(min(cold)),
            "cold_median_ms": round(statistics.median(cold)),
            "cold_max_ms": round(max(cold)),
            "warm_p50_ms": round(statistics.median(warm), 1),
            "rounds": args.rounds,
        }
        for label, (cold, warm) in results.items()
    ]
    notes = [f"first request at zero vs. warm, through HAProxy ({args.rounds} rounds)"]
    emit(cases, COLUMNS, as_json=args.json, notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
