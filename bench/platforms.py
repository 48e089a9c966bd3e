"""A throwaway platform as the long-running benches drive it (`bench.scale`, `bench.soak`): the
control plane of `bench.common.throwaway_slipway`, two busybox httpd images (bodies `v1`, `v2`)
pushed to its registry, Service documents, and waits for what HAProxy serves.

Its teardown leaves nothing running: `throwaway_slipway` reaps every process the run started
(`bench.reaping`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import docker
import httpx
import yaml

from bench.common import throwaway_slipway
from pipeline.cli.client import Client
from pipeline.core import names

BODIES = ("v1", "v2")
STOP_TIMEOUT_S = 10.0
MIN_SCALE = "autoscaling.knative.dev/min-scale"


def document(
    name: str,
    image: str,
    *,
    loaded: bool,
    env: str = "",
    traffic: Any = None,
    annotations: dict[str, str] | None = None,
) -> str:
    """A Service: `loaded` keeps one instance (min-scale 1); otherwise it scales to zero after a
    6 s window. `annotations` are added to the template's."""
    annotations = {MIN_SCALE: "1" if loaded else "0", **(annotations or {})}
    if not loaded:
        annotations["autoscaling.knative.dev/window"] = "6s"
    container: dict[str, Any] = {"image": image}
    if env:
        container["env"] = [{"name": "GENERATION", "value": env}]
    spec: dict[str, Any] = {
        "template": {"metadata": {"annotations": annotations}, "spec": {"containers": [container]}}
    }
    if traffic is not None:
        spec["traffic"] = traffic
    doc = {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
           "metadata": {"name": name}, "spec": spec}  # fmt: skip
    return yaml.safe_dump(doc)


class Platform:
    """The throwaway control plane as a bench drives it: the API, HAProxy, the log."""

    def __init__(self, sw: Any, images: tuple[str, str]) -> None:
        self.sw = sw
        self.images = images
        self.api = Client(url=f"http://127.0.0.1:{sw.api_port}", token=sw.token, timeout_s=120)
        self.ingress = f"http://127.0.0.1:{sw.ingress_port}/"
        self.errors: list[str] = []  # failed deploys (each tried again once)

    def replace(self, name: str, image: str, **kwargs: Any) -> None:
        """Deploy; a deploy that fails is tried once more, and each failure is kept in `errors`
        (the engine's container listing can race a removal: see the report)."""
        text = document(name, image, **kwargs)
        for _ in range(2):
            events = self.api.stream("PUT", f"/v1/services/{name}", content=text.encode(),
                                     headers={"Content-Type": "application/yaml"})  # fmt: skip
            failed = [e for e in events if e.get("event") == "error"]
            if not failed:
                return
            self.errors.append(f"deploying {name}: {failed[0].get('message')}")
        raise SystemExit(f"deploying {name} failed twice: {self.errors[-1]}")

    def traffic(self, name: str, **body: Any) -> None:
        self.api.request("POST", f"/v1/services/{name}/traffic", json=body)

    def body(self, host: str, http: httpx.Client) -> tuple[int, str]:
        headers = {"Host": f"{names.service_host(host, 'localhost')}:{self.sw.ingress_port}"}
        resp = http.get(self.ingress, headers=headers)
        return resp.status_code, resp.text.strip()

    def metric(self, name: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.sw.api_port}/metrics", timeout=120).text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise SystemExit(f"/metrics has no {name}: is this control plane from this tree?")

    def applies(self) -> list[tuple[str, float]]:
        """(result, seconds) of every `dataplane_applied` line so far."""
        out = []
        for line in self.sw.log_path.read_text().splitlines():
            if '"dataplane_applied"' in line:
                event = json.loads(line)
                out.append((str(event["result"]), float(event.get("seconds", 0.0))))
        return out

    def running(self, service: str = "") -> int:
        """Running instances (of `service`, or of every service)."""
        client = docker.from_env()
        try:
            return sum(
                1
                for c in self.sw.containers(client)
                if c.status == "running"
                and (not service or c.labels.get(names.LABEL_SERVICE) == service)
            )
        finally:
            client.close()

    def haproxy_pid(self) -> int:
        """HAProxy's master (its workers are its children)."""
        return int((self.sw.data_dir / "haproxy" / "haproxy.pid").read_text().split()[0])


def until(check: Callable[[], bool], *, timeout_s: float, what: str, poll_s: float = 0.01) -> float:
    """Seconds until `check()` holds."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout_s:
            raise SystemExit(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(poll_s)
    return time.monotonic() - began


def answers(platform: Platform, host: str, want: str, http: httpx.Client) -> Callable[[], bool]:
    return lambda: _answers(platform, host, want, http)


def _answers(platform: Platform, host: str, want: str, http: httpx.Client) -> bool:
    with suppress(httpx.HTTPError):
        return platform.body(host, http) == (200, want)
    return False


def images(sw: Any, work: Path, *, repo: str) -> tuple[str, str]:
    """The two app images (bodies `v1`, `v2`), built and pushed to the platform's registry."""
    from tests.integration.conftest import push_image, write_app

    client = docker.from_env(timeout=120)
    try:
        refs = []
        for body in BODIES:
            ref = f"{sw.env['SLIPWAY_REGISTRY']}/{repo}/app:{body}"
            refs.append(push_image(client, write_app(work / body, body=body + "\n"), ref))
        return refs[0], refs[1]
    finally:
        client.close()


@contextmanager
def platform_up(
    *, repo: str = "bench-app", extra_env: dict[str, str] | None = None
) -> Iterator[Platform]:
    """A throwaway platform with both images pushed; the local image tags removed afterwards,
    and every process the run started gone (SystemExit naming any that is not)."""
    env = {"SLIPWAY_READINESS_TIMEOUT": "60", "SLIPWAY_GRACE_PERIOD": "2", **(extra_env or {})}
    with throwaway_slipway(extra_env=env) as sw:
        refs = images(sw, sw.data_dir, repo=repo)
        try:
            yield Platform(sw, refs)
        finally:  # the local tags this run made (each run's registry has a new port)
            client = docker.from_env()
            for ref in refs:
                with suppress(docker.errors.APIError):  # still used, or already gone
                    client.images.remove(ref)
            client.close()
