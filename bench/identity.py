"""The cost of the JWT check: the same app as a public and as a private service, through HAProxy.

Needs a running Slipway (`./scripts/up`) and wrk. Deploys `bench-public` and `bench-private`
(`--no-allow-unauthenticated`, invoker `user:bench`) from one busybox httpd app, then runs wrk
against each with the same bearer token (ignored by the public one), alternating runs so drift
hits both alike. Prints req/s and p50/p99; never asserted in tests.

    .venv/bin/python -m bench.identity [--seconds 8] [--connections 8] [--rounds 2] [--json]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import (
    Case,
    Column,
    Load,
    bench_arguments,
    emit,
    require,
    rounded,
    running_settings,
    wrk,
)
from bench.deploy import DOCKERFILE
from pipeline.cli.client import Client, default_url
from pipeline.core import names

PUBLIC, PRIVATE = "bench-public", "bench-private"


def slipway(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pipeline.cli", *args], check=True, capture_output=True)


COLUMNS = (
    Column("name", "service", "<26"), Column("rps", "req/s", ">10.0f"),
    Column("p50_ms", "p50 ms", ">10.2f"), Column("p99_ms", "p99 ms", ">10.2f"),
    Column("errors", "errors", ">10.0f"),
)  # fmt: skip


def main() -> int:
    parser = bench_arguments(__doc__, seconds=8, connections=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    require("wrk")
    settings = running_settings()
    ingress = default_url(settings).replace("localhost", "127.0.0.1")
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp)
        (app / "Dockerfile").write_text(DOCKERFILE)
        (app / "index.html").write_text("bench\n")
        slipway("deploy", PUBLIC, "--source", str(app))
        slipway("deploy", PRIVATE, "--source", str(app), "--no-allow-unauthenticated")
    slipway("services", "add-invoker", PRIVATE, "--member", "user:bench")
    hosts = {
        svc: f"{names.service_host(svc, settings.domain)}:{settings.ingress_port}"
        for svc in (PUBLIC, PRIVATE)
    }
    token = Client.from_env().request(
        "POST", "/v1/auth/identity-token",
        json={"audience": f"http://{hosts[PRIVATE]}", "user": "bench"},
    )["token"]  # fmt: skip
    results: dict[str, list[dict[str, float]]] = {PUBLIC: [], PRIVATE: []}
    for _ in range(args.rounds):
        for svc in (PUBLIC, PRIVATE):
            results[svc].append(
                wrk(
                    ingress + "/",
                    host=hosts[svc],
                    load=Load(seconds=args.seconds, connections=args.connections),
                    headers={"Authorization": f"Bearer {token}"},
                )
            )
    cases: list[Case] = []
    for svc, label in ((PUBLIC, "public"), (PRIVATE, "private (JWT + invoker)")):
        runs = results[svc]
        mean = {k: sum(r[k] for r in runs) / len(runs) for k in runs[0]}
        cases.append({"name": label, **rounded(mean), "errors": sum(r["errors"] for r in runs)})
    notes = [f"wrk -t2 -c{args.connections} -d{args.seconds}s x{args.rounds} (means), through "
             "HAProxy"]  # fmt: skip
    emit(cases, COLUMNS, as_json=args.json, notes=notes)
    for svc in (PUBLIC, PRIVATE):
        slipway("services", "delete", svc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
