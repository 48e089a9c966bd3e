"""Scale to zero and back through the activator, on the real engine and HAProxy."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import docker
import httpx
import pytest

from pipeline import names
from tests.integration.conftest import BUSYBOX, Slipway, push_image

pytestmark = pytest.mark.integration

ECHO_CGI = """#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
cat
"""


def test_idle_revision_goes_to_zero_and_the_next_request_wakes_it(
    slipway: Slipway, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    app = tmp_path / "sleepy"
    (app / "www" / "cgi-bin").mkdir(parents=True)
    (app / "www" / "index.html").write_text("awake\n")
    (app / "www" / "cgi-bin" / "echo").write_text(ECHO_CGI)
    (app / "www" / "cgi-bin" / "echo").chmod(0o755)
    (app / "Dockerfile").write_text(
        f"FROM {BUSYBOX}\nCOPY www /www\nUSER app\n"
        'CMD ["sh", "-c", "exec httpd -f -p ${PORT} -h /www"]\n'
    )
    ref = f"{slipway.env['SLIPWAY_REGISTRY']}/sleepy/app"
    push_image(docker_client, str(app), f"{ref}:1")
    doc = tmp_path / "sleepy.yaml"
    doc.write_text(
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: sleepy\nspec:\n"
        "  template:\n    metadata:\n      annotations:\n"
        '        autoscaling.knative.dev/window: "6s"\n'
        f"    spec:\n      containers:\n        - image: {ref}:1\n"
    )
    slipway.cli("services", "replace", str(doc))
    assert slipway.get("sleepy").text == "awake\n"

    def running() -> int:
        return sum(
            1
            for c in slipway.containers(docker_client)
            if c.labels.get(names.LABEL_SERVICE) == "sleepy" and c.status == "running"
        )

    # Idle for the 6 s window plus the 5 s grace (the fixture's SLIPWAY_SCALE_TO_ZERO_GRACE).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and running() > 0:
        time.sleep(1)
    assert running() == 0, "the idle revision did not scale to zero"

    # The next request is held by the activator while an instance starts, body intact.
    resp = httpx.post(
        f"http://127.0.0.1:{slipway.ingress_port}/cgi-bin/echo",
        headers={"Host": f"sleepy.localhost:{slipway.ingress_port}"},
        content=b"hello from zero",
        timeout=60,
    )
    assert resp.status_code == 200 and resp.text == "hello from zero"
    assert running() == 1
    assert slipway.get("sleepy").text == "awake\n"

    # A burst of 200 concurrent requests against the revision at zero: the activator holds them
    # all while instances start, and none fails.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and running() > 0:
        time.sleep(1)
    assert running() == 0

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=120) as client:
            calls = [
                client.get(
                    f"http://127.0.0.1:{slipway.ingress_port}/",
                    headers={"Host": f"sleepy.localhost:{slipway.ingress_port}"},
                )
                for _ in range(200)
            ]
            return [r.status_code for r in await asyncio.gather(*calls)]

    statuses = asyncio.run(burst())
    assert statuses.count(200) == 200, sorted(set(statuses))
