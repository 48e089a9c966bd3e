"""The activator is its own process: requests at zero are served while the control plane is dead.

- kill -9 of the control plane with a service at zero: requests through HAProxy keep getting
  200 (not one fails), the activator starting the instance alone from its desired-state cache;
  after the restart the platform converges with that very instance adopted, no orphan;
- a WebSocket opened at zero through the activator keeps exchanging messages across a kill -9
  of the control plane and its restart;
- the activator killed with -9 is started again by the control plane, and serves from zero.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import docker
import httpx
import pytest

from pipeline.core import names
from tests.chaos.converge import converged
from tests.chaos.load import body_is, steady_load
from tests.integration.conftest import Slipway, httpd_app
from tests.integration.test_scale_to_zero import WS_ECHO

pytestmark = pytest.mark.integration

# To zero (stopped, not frozen: the cold path) 6 s + the fixture's 5 s grace after the last request.
IDLE = {"autoscaling.knative.dev/window": "6s", "slipway.dev/frozen-retention-period": "0"}


def wait_for(what: str, check: Callable[[], bool], *, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def instance_ids(client: docker.DockerClient, slipway: Slipway, service: str) -> set[str]:
    return {
        c.id
        for c in slipway.containers(client)
        if c.labels.get(names.LABEL_SERVICE) == service and c.status == "running"
    }


def activator_pid(slipway: Slipway) -> int:
    return int((slipway.data_dir / "run" / "activator.pid").read_text().split()[0])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.fixture(scope="module")
def nap(slipway: Slipway, docker_client: docker.DockerClient,
        tmp_path_factory: pytest.TempPathFactory) -> str:  # fmt: skip
    app = httpd_app(tmp_path_factory.mktemp("nap"), "awake\n")
    slipway.replace_with_app(docker_client, app, "nap", annotations=IDLE)
    assert slipway.get("nap").text == "awake\n"
    return "nap"


def test_the_activator_killed_is_started_again(
    slipway: Slipway, docker_client: docker.DockerClient, nap: str
) -> None:
    wait_for("the activator", lambda: (slipway.data_dir / "run" / "activator.pid").exists())
    old = activator_pid(slipway)
    wait_for("the activator to answer", lambda: slipway_activator_answers(slipway))
    os.kill(old, signal.SIGKILL)
    renewed = lambda: activator_pid(slipway) != old and alive(activator_pid(slipway))  # noqa: E731
    wait_for("a new activator", renewed, timeout_s=30)
    wait_for("the new activator to answer", lambda: slipway_activator_answers(slipway))
    slipway.wait_for_zero(docker_client, nap)
    assert slipway.get(nap).text == "awake\n", "a request at zero goes through the new one"


def slipway_activator_answers(slipway: Slipway) -> bool:
    port = int(slipway.env["SLIPWAY_ACTIVATOR_PORT"])
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
    except httpx.HTTPError:
        return False
    return r.status_code == 400 and r.text.startswith("slipway: activator")


def test_requests_at_zero_are_served_while_the_control_plane_is_dead(
    slipway: Slipway, docker_client: docker.DockerClient, nap: str
) -> None:
    slipway.wait_for_zero(docker_client, nap)
    revisions = {r["name"] for r in slipway.api_get(f"/v1/services/{nap}").json()["revisions"]}
    slipway.kill()
    try:
        with steady_load(slipway, nap, accept=body_is("awake\n")) as load:
            wait_for("an instance started by the activator alone",
                     lambda: bool(instance_ids(docker_client, slipway, nap)))  # fmt: skip
            time.sleep(4)  # more requests through the activator while the control plane is dead
            started_alone = instance_ids(docker_client, slipway, nap)
            assert len(started_alone) == 1, "one instance for the load, not one per request"
            assert load.ok > 0, f"nothing served while the control plane was dead: {load.failures}"
            slipway.start()
            converged(slipway, docker_client, revisions=revisions)
            time.sleep(2)  # and requests straight to the adopted instance
        load.assert_no_failures()
    finally:
        if slipway.proc is None:
            slipway.start()
    assert instance_ids(docker_client, slipway, nap) == started_alone, "adopted, not replaced"


def test_a_websocket_through_the_activator_outlives_a_control_plane_restart(
    slipway: Slipway, docker_client: docker.DockerClient, python_image: str, tmp_path: Path
) -> None:
    from websockets.sync.client import connect

    app = tmp_path / "ws"
    app.mkdir()
    (app / "server.py").write_text(WS_ECHO)
    (app / "Dockerfile").write_text(
        f"FROM {python_image}\nCOPY server.py /app/server.py\nUSER 10001\n"
        'CMD ["python3", "/app/server.py"]\n'
    )
    slipway.replace_with_app(docker_client, app, "chat", annotations=IDLE)
    slipway.wait_for_zero(docker_client, "chat")

    host = f"chat.localhost:{slipway.ingress_port}"
    sock = socket.create_connection(("127.0.0.1", slipway.ingress_port))
    with connect(f"ws://{host}/chat", sock=sock, open_timeout=60) as ws:
        assert ws.recv(timeout=10) == "cookie="  # opened at zero: held, then relayed
        ws.send("before")
        assert ws.recv(timeout=10) == "echo:before"
        slipway.kill()
        for n in range(5):  # the control plane is dead: the session does not notice
            ws.send(f"dead-{n}")
            assert ws.recv(timeout=10) == f"echo:dead-{n}"
            time.sleep(0.5)
        slipway.start()
        revisions = {r["name"] for r in slipway.api_get("/v1/services/chat").json()["revisions"]}
        converged(slipway, docker_client, revisions=revisions)
        for n in range(3):
            ws.send(f"after-{n}")
            assert ws.recv(timeout=10) == f"echo:after-{n}"
