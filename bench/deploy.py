"""Deploy latency and data-plane overhead, printed side by side (never asserted in tests).

Needs a running Slipway (`./scripts/up`) and wrk (`apt-get install wrk`). Measures:
  1. `slipway deploy` of a small Dockerfile app to its first 200 through HAProxy: first build,
     then a rebuild after a one-line change (cached layers);
  2. requests/s and p50/p99 latency with wrk, through HAProxy vs. direct to the container, in
     the same run against the same instance.

    .venv/bin/python bench/deploy.py [--seconds 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
import httpx

from pipeline.cli.client import default_url
from pipeline.core import names
from pipeline.core.settings import Settings

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


def wrk(
    url: str,
    *,
    host: str | None,
    seconds: int,
    connections: int,
    headers: dict[str, str] | None = None,
) -> dict[str, float]:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if host:
        cmd[1:1] = ["-H", f"Host: {host}"]
    for name, value in (headers or {}).items():
        cmd[1:1] = ["-H", f"{name}: {value}"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)", out, re.M)
        assert m, out
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50": pct("50"),
        "p99": pct("99"),
        "non2xx": float(errors.group(1)) if errors else 0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    settings = Settings.from_env()
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
    address = next(iter(containers[0].attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]

    through = wrk(ingress + "/", host=host, seconds=args.seconds, connections=args.connections)
    direct = wrk(
        f"http://{address}:8080/", host=None, seconds=args.seconds, connections=args.connections
    )

    print(
        f"deploy to first 200 (busybox httpd, Dockerfile):  first build {first:.2f} s"
        f"   rebuild after one-line change {rebuild:.2f} s"
    )
    print(f"wrk -t2 -c{args.connections} -d{args.seconds}s, same instance:")
    print(f"  {'path':<22}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>10}")
    for label, r in (("through HAProxy", through), ("direct to container", direct)):
        print(
            f"  {label:<22}{r['rps']:>10.0f}{r['p50']:>10.2f}{r['p99']:>10.2f}{r['non2xx']:>10.0f}"
        )
    subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "services", "delete", SERVICE], capture_output=True
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
