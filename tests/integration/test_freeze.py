"""The frozen tier on the real engine: idle instances are paused (`docker pause`), thawed by the
activator for the next request, stopped after their retention period; nothing is lost across it.

Windows are short so each test takes seconds: a 6 s stable window plus the fixture's 5 s
scale-to-zero grace before an idle revision freezes.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from pipeline.core import names
from pipeline.core.annotations import FROZEN_RETENTION_ANNOTATION
from tests.integration.conftest import Slipway, httpd_app

pytestmark = pytest.mark.integration

WINDOW = {"autoscaling.knative.dev/window": "6s"}
SLOW_CGI = """#!/bin/sh
sleep 3
printf 'Content-Type: text/plain\\r\\n\\r\\nslow done\\n'
"""
# A ticker beside httpd: a few ms of CPU a second while it runs, none at all while frozen.
TICKING = 'CMD ["sh", "-c", "while :; do sleep 0.05; done & exec httpd -f -p ${PORT} -h /www"]'


def deploy(slipway: Slipway, client: docker.DockerClient, tmp: Path, service: str,
           retention: str | None = None) -> None:  # fmt: skip
    app = httpd_app(tmp / service, f"{service}\n", {"slow": SLOW_CGI})
    dockerfile = (app / "Dockerfile").read_text().splitlines()
    (app / "Dockerfile").write_text("\n".join([*dockerfile[:-1], TICKING]) + "\n")
    annotations = {**WINDOW, **({FROZEN_RETENTION_ANNOTATION: retention} if retention else {})}
    slipway.replace_with_app(client, app, service, annotations=annotations)
    assert slipway.get(service).text == f"{service}\n"


def instances(slipway: Slipway, client: docker.DockerClient, service: str) -> list[Any]:
    return [c for c in slipway.containers(client) if c.labels.get(names.LABEL_SERVICE) == service]


def wait_frozen(slipway: Slipway, client: docker.DockerClient, service: str) -> Any:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        paused = [c for c in instances(slipway, client, service) if c.status == "paused"]
        if paused:
            return paused[0]
        time.sleep(0.5)
    raise AssertionError(f"idle {service} was not frozen: {states(slipway, client, service)}")


def states(slipway: Slipway, client: docker.DockerClient, service: str) -> list[str]:
    return [c.status for c in instances(slipway, client, service)]


def cpu_usage_ns(container_id: str) -> int:
    """The container's cgroup CPU time (v1 cpuacct, or v2 cpu.stat)."""
    v1 = Path(f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage")
    if v1.exists():
        return int(v1.read_text())
    for v2 in (Path(f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat"),
               Path(f"/sys/fs/cgroup/docker/{container_id}/cpu.stat")):  # fmt: skip
        if v2.exists():
            usage = dict(line.split() for line in v2.read_text().splitlines())
            return int(usage["usage_usec"]) * 1000
    raise AssertionError(f"no cgroup CPU accounting found for container {container_id}")


def test_idle_instance_freezes_uses_no_cpu_and_a_request_thaws_it(
    slipway: Slipway, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    deploy(slipway, docker_client, tmp_path, "icy")
    (running,) = instances(slipway, docker_client, "icy")
    before = cpu_usage_ns(running.id)
    time.sleep(1)
    assert cpu_usage_ns(running.id) > before, "the ticker burns CPU while running"

    frozen = wait_frozen(slipway, docker_client, "icy")
    assert frozen.id == running.id
    state = docker_client.api.inspect_container(frozen.id)["State"]
    assert state["Paused"] and state["Running"]
    used = cpu_usage_ns(frozen.id)
    time.sleep(2)
    assert cpu_usage_ns(frozen.id) == used, "a frozen instance used CPU"
    (rev,) = slipway.api_get("/v1/services/icy/revisions").json()
    assert rev["instances"] == {"running": 0, "frozen": 1, "total": 1}
    assert "0 (1 frozen)" in slipway.cli("revisions", "list", "icy").stdout

    reply = slipway.get("icy")  # through HAProxy to the activator, which thaws it
    assert reply.status_code == 200 and reply.text == "icy\n"
    (back,) = instances(slipway, docker_client, "icy")
    assert back.id == running.id and back.status == "running", "thawed, not a new container"
    for _ in range(20):  # once back in HAProxy, straight to it
        assert slipway.get("icy").text == "icy\n"


def around_the_freeze(slipway: Slipway, service: str, calls: Any) -> list[tuple[int, str]]:
    """From 1.5 s before the idle revision's freeze is due until 3 s after, every 0.25 s, the
    requests `calls(client)` makes; every answer (status, body)."""
    slipway.get(service)
    due = time.monotonic() + 6 + 5  # the stable window, then the scale-to-zero grace

    async def run() -> list[tuple[int, str]]:
        async with httpx.AsyncClient(timeout=60) as client:
            await asyncio.sleep(max(due - 1.5 - time.monotonic(), 0))
            tasks = []
            while time.monotonic() < due + 3:
                tasks += [asyncio.create_task(c) for c in calls(client)]
                await asyncio.sleep(0.25)
            return [(r.status_code, r.text) for r in await asyncio.gather(*tasks)]

    return asyncio.run(run())


def pauses(client: docker.DockerClient, service: str, *, since: float, until: float) -> list[float]:
    """When dockerd paused one of the service's containers (its own event log)."""
    events = client.events(
        since=int(since), until=int(until) + 1, decode=True,
        filters={"type": "container", "event": "pause",
                 "label": f"{names.LABEL_SERVICE}={service}"},
    )  # fmt: skip
    return [e["timeNano"] / 1e9 for e in events if since <= e["timeNano"] / 1e9 <= until]


def request(slipway: Slipway, client: httpx.AsyncClient, service: str, path: str) -> Any:
    return client.get(
        f"http://127.0.0.1:{slipway.ingress_port}{path}",
        headers={"Host": f"{service}.localhost:{slipway.ingress_port}"},
    )


def test_requests_in_flight_when_the_freeze_is_due_finish_first(
    slipway: Slipway, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    """Slow requests (3 s) start every 0.25 s from just before the freeze is due: one is always
    in flight, so the instance is never paused in that time, and each gets its answer. (The
    exact race, a freeze decided in the pass a request slips in, is in the unit tests.)"""
    deploy(slipway, docker_client, tmp_path, "slowpoke")
    started = time.time()
    answers = around_the_freeze(
        slipway, "slowpoke", lambda c: [request(slipway, c, "slowpoke", "/cgi-bin/slow")]
    )
    ended = time.time()
    assert answers and set(answers) == {(200, "slow done\n")}, answers
    assert pauses(docker_client, "slowpoke", since=started, until=ended) == []
    wait_frozen(slipway, docker_client, "slowpoke")  # once idle, it does freeze


def test_a_burst_at_the_moment_of_the_freeze_all_answered(
    slipway: Slipway, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    """Bursts of 10 every 0.25 s across the moment the freeze is due: the instance is frozen
    between two bursts and thawed by the next, and not one request fails."""
    deploy(slipway, docker_client, tmp_path, "racy")
    started = time.time()
    answers = around_the_freeze(
        slipway, "racy", lambda c: [request(slipway, c, "racy", "/") for _ in range(10)]
    )
    failures = [a for a in answers if a != (200, "racy\n")]
    assert len(answers) >= 100 and failures == [], failures[:5]
    frozen_at = pauses(docker_client, "racy", since=started, until=time.time())
    assert frozen_at, "the freeze did not happen during the bursts: the race was not run"


def test_killed_while_frozen_a_fresh_instance_answers(
    slipway: Slipway, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    deploy(slipway, docker_client, tmp_path, "brittle")
    frozen = wait_frozen(slipway, docker_client, "brittle")
    frozen.kill()  # SIGKILL reaches a paused container: it exits

    reply = slipway.get("brittle")
    assert reply.status_code == 200 and reply.text == "brittle\n"
    fresh = [c for c in instances(slipway, docker_client, "brittle") if c.status == "running"]
    assert [c.id for c in fresh] != [frozen.id] and len(fresh) == 1


def test_frozen_past_its_retention_period_stops_and_starts_cold(
    slipway: Slipway, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    deploy(slipway, docker_client, tmp_path, "brief", retention="3s")
    frozen = wait_frozen(slipway, docker_client, "brief")
    deadline = time.monotonic() + 30
    while instances(slipway, docker_client, "brief") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert instances(slipway, docker_client, "brief") == [], "still there after 3 s frozen"

    reply = slipway.get("brief")
    assert reply.status_code == 200 and reply.text == "brief\n"
    (cold,) = instances(slipway, docker_client, "brief")
    assert cold.id != frozen.id


def test_freezing_off_by_annotation_stops_idle_instances(
    slipway: Slipway, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    deploy(slipway, docker_client, tmp_path, "plain", retention="0")
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = states(slipway, docker_client, "plain")
        seen |= set(now)
        if not now:
            break
        time.sleep(0.3)
    assert instances(slipway, docker_client, "plain") == [] and "paused" not in seen, seen
