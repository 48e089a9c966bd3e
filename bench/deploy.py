"""Deploy latency and data-plane overhead, printed side by side (never asserted in tests).

Needs a running Slipway (`./scripts/up`) and wrk (`apt-get install wrk`). Measures:
  1. `slipway deploy` of a small Dockerfile app to its first 200 through HAProxy: first build,
     then a rebuild after a one-line change (cached layers);
  2. requests/s and p50/p99 latency with wrk, through HAProxy vs. direct to the container, in
     the same run against the same instance.

    .venv/bin/python -m bench.deploy [--seconds 10] [--connections 32] [--json]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
import httpx

from bench import common
from pipeline.cli.client import default_url
from pipeline.core import names

SERVICE = "bench-hello"
DOCKERFILE = """FROM slipway/busybox:1.35-bookworm
COPY index.html /www/index.html
USER app
CMD ["sh", "-c", "exec httpd -f -p ${PORT} -h /www"]
"""


def deploy_to_first_200(app: Path, *, ingress: str, host: str, expect: str) -> float:
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "deploy", SERVICE, "--source", str(app)],
        check=True,
        capture_output=True,
    )
    while True:
        r = httpx.get(ingress, headers={"Host": host}, timeout=5)
        if r.status_code == 200 and r.text == expect:
            return time.monotonic() - started
        time.sleep(0.05)


COLUMNS = (
    common.Column("name", "case", "<54"), common.Column("took_s", "s", ">8.2f"),
    common.Column("rps", "req/s", ">9.0f"), common.Column("p50_ms", "p50 ms", ">9.2f"),
    common.Column("p99_ms", "p99 ms", ">9.2f"), common.Column("errors", "errors", ">8.0f"),
)  # fmt: skip


def main() -> int:
    args = common.bench_arguments(__doc__, seconds=10, connections=32).parse_args()
    common.require("wrk")
    settings = common.running_settings()
    ingress = default_url(settings).replace("localhost", "127.0.0.1")
    host = f"{names.service_host(SERVICE, settings.domain)}:{settings.ingress_port}"

    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp)
        (app / "Dockerfile").write_text(DOCKERFILE)
        (app / "index.html").write_text("bench v1\n")
        first = deploy_to_first_200(app, ingress=ingress, host=host, expect="bench v1\n")
        (app / "index.html").write_text("bench v2\n")
        rebuild = deploy_to_first_200(app, ingress=ingress, host=host, expect="bench v2\n")

    time.sleep(settings.grace_period_s + 2)  # let the old revision drain away
    client = docker.from_env()
    containers = client.containers.list(filters={"label": f"{names.LABEL_SERVICE}={SERVICE}"})
    address = common.instance_address(client, containers[0], settings.network)

    load = common.Load(seconds=args.seconds, connections=args.connections)
    through = common.wrk(ingress + "/", host=host, load=load)
    direct = common.wrk(f"http://{address}:8080/", load=load)
    cases: list[common.Case] = [
        {"name": "deploy to first 200: first build", "took_s": round(first, 2)},
        {"name": "deploy to first 200: rebuild after one-line change", "took_s": round(rebuild, 2)},
        *({"name": f"wrk, {label}", **common.rounded(r)} for label, r in
          (("through HAProxy", through), ("direct to container", direct))),
    ]  # fmt: skip
    notes = [f"busybox httpd, Dockerfile; wrk -t2 -c{args.connections} -d{args.seconds}s, same "
             "instance"]  # fmt: skip
    common.emit(cases, COLUMNS, as_json=args.json, notes=notes)
    common.delete_service(SERVICE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
