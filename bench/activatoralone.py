"""From zero with the control plane up and with it dead: the first request's time through the
activator, which asks the control plane for an instance when it is up and starts one itself
when it is not; and, while it is dead, warm requests (all of them pass through the activator:
only the control plane tells HAProxy of an instance), next to warm requests once it is back.

Starts a throwaway Slipway (`bench.common.throwaway_slipway`: own registry, control plane,
HAProxy) and deploys a busybox httpd app with a 6 s stable window and freezing off, so it goes
to zero (stopped) about 15 s after its last request. `--rounds` times: at zero, one timed
request (control plane up); at zero again, `kill -9` of the control plane, one timed request
(the activator alone), `--warm` sequential ones; the control plane started again, `--warm`
more (straight to the adopted instance). Medians. Prints the figures; never asserted in tests.

    .venv/bin/python -m bench.activatoralone [--rounds 3] [--warm 50] [--quick] [--json]
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import docker
import httpx

from bench.common import Case, Column, bench_arguments, emit, progress, throwaway_slipway
from pipeline.core.annotations import FROZEN_RETENTION_ANNOTATION, WINDOW_ANNOTATION
from tests.integration.conftest import Slipway, httpd_app

SERVICE = "bench-alone"
IDLE = {WINDOW_ANNOTATION: "6s", FROZEN_RETENTION_ANNOTATION: "0"}


def timed_ms(sw: Slipway, client: httpx.Client) -> float:
    began = time.perf_counter()
    reply = sw.get(SERVICE, client=client)
    took = (time.perf_counter() - began) * 1000
    if reply.status_code != 200 or reply.text != "awake\n":
        raise SystemExit(f"not the app's answer: {reply.status_code} {reply.text[:200]!r}")
    return took


def warm_ms(sw: Slipway, client: httpx.Client, n: int) -> float:
    return statistics.median(timed_ms(sw, client) for _ in range(n))


def one_round(sw: Slipway, docker_client: docker.DockerClient, *, warm: int) -> dict[str, float]:
    with httpx.Client(timeout=60) as client:
        sw.wait_for_zero(docker_client, SERVICE)
        up = timed_ms(sw, client)
        sw.wait_for_zero(docker_client, SERVICE)
        sw.kill()
        try:
            alone = timed_ms(sw, client)
            dead_warm = warm_ms(sw, client, warm)
        finally:
            sw.start()
        time.sleep(2)  # the restarted control plane has put the adopted instance into HAProxy
        back_warm = warm_ms(sw, client, warm)
    return {"up": up, "alone": alone, "dead_warm": dead_warm, "back_warm": back_warm}


def main() -> None:
    parser = bench_arguments(__doc__ or "")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warm", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="one round, 20 warm requests")
    args = parser.parse_args()
    rounds, warm = (1, 20) if args.quick else (args.rounds, args.warm)
    docker_client = docker.from_env(timeout=120)
    with throwaway_slipway() as sw:
        app = httpd_app(Path(tempfile.mkdtemp(prefix="bench-alone-")), "awake\n")
        sw.replace_with_app(docker_client, app, SERVICE, annotations=IDLE)
        results = []
        for n in range(rounds):
            progress(f"round {n + 1} of {rounds}")
            results.append(one_round(sw, docker_client, warm=warm))
    median = {k: round(statistics.median(r[k] for r in results), 1) for k in results[0]}
    cases: list[Case] = [
        {"name": "first request from zero, control plane up", "latency_ms": median["up"]},
        {"name": "first request from zero, control plane dead", "latency_ms": median["alone"]},
        {"name": "warm, control plane dead (via the activator)", "latency_ms": median["dead_warm"]},
        {"name": "warm, control plane back (direct)", "latency_ms": median["back_warm"]},
    ]
    emit(
        cases,
        [Column("name", "case", "<48"), Column("latency_ms", "median ms", ">10.1f")],
        as_json=args.json,
        notes=[f"{rounds} round(s), {warm} warm requests each; busybox httpd, stopped at zero"],
    )


if __name__ == "__main__":
    main()
