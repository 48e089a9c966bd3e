"""Fixtures that start the real thing: a registry, a Slipway control plane (which starts its own
HAProxy), on free loopback ports, next to whatever else runs on this machine.

Each test platform has its own platform id, Docker network and data dir, so it never adopts or
removes containers of another Slipway (including one started by ./scripts/up).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import httpx
import pytest
import yaml

from pipeline.app import daemons
from pipeline.build import baseimages
from pipeline.core import names
from pipeline.core.errors import Unavailable
from pipeline.engines.sandboxes import LABEL_SANDBOX, is_sandbox

ROOT = Path(__file__).resolve().parents[2]
BUSYBOX = "slipway/busybox:1.35-bookworm"
PYTHON = "slipway/python:3.11-bookworm"
WEBHOOK_SECRET = "It's a Secret to Everybody"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, *, timeout_s: float = 30.0, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, headers=headers, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout_s}s")


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as e:
        raise Unavailable(
            "integration tests need a running Docker Engine: run them through ./scripts/test, "
            "which starts dockerd"
        ) from e
    return client


class Registry:
    """A real distribution registry (Debian's docker-registry) on a free loopback port, stopped
    and started at will over the same storage: the session's `registry`, and a case's own where
    the case takes it down."""

    def __init__(self, root: Path, *, host: str = "127.0.0.1") -> None:
        self.address = f"{host}:{free_port()}"
        self.storage = root / "data"
        self.config = root / "config.yml"
        self.config.write_text(
            "version: 0.1\nlog: {level: warn}\n"
            f"storage: {{filesystem: {{rootdirectory: {self.storage}}}, "
            "delete: {enabled: true}}\n"
            f"http: {{addr: {self.address}}}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("docker-registry")
        assert binary, "docker-registry is not installed: ./scripts/test installs it"
        self.proc = subprocess.Popen(
            [binary, "serve", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        wait_http(f"http://{self.address}/v2/")

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM, or with `kill` SIGKILL: a registry that dies, not one that shuts down."""
        if self.proc is not None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's registry: its address."""
    reg = Registry(tmp_path_factory.mktemp("registry"))
    reg.start()
    try:
        yield reg.address
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def busybox_image(docker_client: docker.DockerClient) -> str:
    baseimages.ensure_base_images(docker_client, references=[BUSYBOX])
    return BUSYBOX


@pytest.fixture(scope="session")
def python_image(docker_client: docker.DockerClient) -> str:
    """Debian's python3 (debootstrap, ~50 s the first time on a machine)."""
    baseimages.ensure_base_images(docker_client, references=[PYTHON])
    return PYTHON


@dataclass
class Slipway:
    """A running control plane as a user meets it: its CLI, its ingress, its API."""

    data_dir: Path
    env: dict[str, str]
    ingress_port: int
    api_port: int
    platform_id: str
    network: str
    proc: subprocess.Popen[bytes] | None = None
    # What runs the control plane: `slipway server`, or a test module that wraps it.
    server_args: tuple[str, ...] = ("-m", "pipeline.cli", "server")
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.data_dir / "control-plane.log"

    @property
    def token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    @property
    def url(self) -> str:
        return f"http://localhost:{self.ingress_port}"

    def start(self) -> None:
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(
                [sys.executable, *self.server_args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        try:
            wait_http(f"http://127.0.0.1:{self.api_port}/healthz", timeout_s=60)
            wait_http(f"http://127.0.0.1:{self.ingress_port}/healthz", timeout_s=30,
                      headers={"Host": f"localhost:{self.ingress_port}"})  # fmt: skip
        except AssertionError as e:
            log = self.log_path.read_text()[-3000:]
            raise AssertionError(f"control plane did not start:\n{log}") from e

    def kill(self) -> None:
        """SIGKILL: what a crash looks like."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None

    def cli(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "SLIPWAY_URL": self.url, "SLIPWAY_TOKEN": self.token, "COLUMNS": "200"}
        result = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", *args],
            env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(
                f"slipway {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def get(
        self, host: str, path: str = "/", *, client: httpx.Client | None = None
    ) -> httpx.Response:
        """A request through HAProxy for `host` (e.g. 'hello'), as a browser would send it."""
        full = host if "." in host else names.service_host(host, "localhost")
        url = f"http://127.0.0.1:{self.ingress_port}{path}"
        headers = {"Host": f"{full}:{self.ingress_port}"}
        if client is not None:
            return client.get(url, headers=headers)
        return httpx.get(url, headers=headers, timeout=10)

    def api_get(self, path: str) -> httpx.Response:
        """GET on the API, with the admin token, straight to the control plane."""
        return httpx.get(
            f"http://127.0.0.1:{self.api_port}{path}",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=60,
        )

    def containers(
        self, client: docker.DockerClient, *, sandboxes: bool = False
    ) -> list[docker.models.containers.Container]:
        """This platform's instances (with `sandboxes`, the network sandboxes they run in and
        the spares too: engines.sandboxes)."""
        label = f"{names.LABEL_PLATFORM}={self.platform_id}"
        for _ in range(10):
            try:
                listed = client.containers.list(all=True, filters={"label": [label]})
                return [c for c in listed if sandboxes or not is_sandbox(c.labels or {})]
            except docker.errors.NotFound:
                # docker-py inspects each listed container; one the reconciler removed in
                # between is gone by then. List again.
                time.sleep(0.2)
        raise AssertionError("containers kept vanishing while being listed")

    def address(self, client: docker.DockerClient, container: docker.models.containers.Container
                ) -> str:  # fmt: skip
        """An instance's address on the platform's network: its sandbox's, when it runs in one."""
        sandbox = (container.labels or {}).get(LABEL_SANDBOX)
        attrs = client.api.inspect_container(sandbox) if sandbox else container.attrs
        return str(attrs["NetworkSettings"]["Networks"][self.network]["IPAddress"])

    def running(self, client: docker.DockerClient, service: str) -> int:
        """How many of `service`'s instances are running."""
        return sum(
            1
            for c in self.containers(client)
            if c.labels.get(names.LABEL_SERVICE) == service and c.status == "running"
        )

    def wait_for_zero(self, client: docker.DockerClient, service: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.running(client, service) > 0:
            time.sleep(1)
        assert self.running(client, service) == 0, f"idle {service} did not scale to zero"

    def replace_with_app(
        self,
        client: docker.DockerClient,
        app: Path,
        service: str,
        *,
        annotations: dict[str, str],
        concurrency: int | None = None,
    ) -> None:
        """Push `app` as <registry>/<service>/app:1 and `services replace` a Service of it."""
        ref = f"{self.env['SLIPWAY_REGISTRY']}/{service}/app:1"
        push_image(client, str(app), ref)
        spec: dict[str, object] = {"containers": [{"image": ref}]}
        if concurrency is not None:
            spec["containerConcurrency"] = concurrency
        doc = app.parent / f"{service}.yaml"
        doc.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "serving.knative.dev/v1",
                    "kind": "Service",
                    "metadata": {"name": service},
                    "spec": {"template": {"metadata": {"annotations": annotations}, "spec": spec}},
                }
            )
        )
        self.cli("services", "replace", str(doc))

    def shutdown(self, client: docker.DockerClient) -> None:
        self.stop()
        pid_file = self.data_dir / "haproxy" / "haproxy.pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
        daemons.stop(self.data_dir / "run" / "dns.pid")
        daemons.stop(self.data_dir / "run" / "metadata.pid")
        daemons.stop(self.data_dir / "run" / "activator.pid")
        for c in self.containers(client, sandboxes=True):
            c.remove(force=True)
        for n in [n for n in client.networks.list(names=[self.network]) if n.name == self.network]:
            n.remove()


@pytest.fixture(scope="module")
def slipway(
    tmp_path_factory: pytest.TempPathFactory,
    docker_client: docker.DockerClient,
    registry: str,
    busybox_image: str,
) -> Iterator[Slipway]:
    with running_slipway(tmp_path_factory, docker_client, registry) as sw:
        yield sw


@contextlib.contextmanager
def running_slipway(
    tmp_path_factory: pytest.TempPathFactory,
    docker_client: docker.DockerClient,
    registry: str,
    extra_env: dict[str, str] | None = None,
    server_args: tuple[str, ...] = ("-m", "pipeline.cli", "server"),
) -> Iterator[Slipway]:
    """A control plane of its own (data dir, ports, network, platform id), removed afterwards."""
    ident = secrets.token_hex(3)
    data_dir = tmp_path_factory.mktemp("slipway")
    ingress, api = free_port(), free_port()
    env = {
        **os.environ,
        "SLIPWAY_DATA_DIR": str(data_dir),
        "SLIPWAY_PORT": str(ingress),
        "SLIPWAY_API_PORT": str(api),
        "SLIPWAY_REGISTRY": registry,
        "SLIPWAY_NETWORK": f"slipway-test-{ident}",
        "SLIPWAY_PLATFORM_ID": f"t{ident}",
        "SLIPWAY_READINESS_TIMEOUT": "10",
        "SLIPWAY_GRACE_PERIOD": "5",
        "SLIPWAY_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "SLIPWAY_REVISIONS_KEPT": "3",
        "SLIPWAY_ACTIVATOR_PORT": str(free_port()),
        "SLIPWAY_SCALE_TO_ZERO_GRACE": "5",
        # Repositories are served over plain HTTP on loopback (tests/gitserver.py stands for
        # GitHub); a real Slipway clones https only.
        "SLIPWAY_GIT_SCHEMES": "https,http",
        **(extra_env or {}),
    }
    env.pop("SLIPWAY_URL", None)
    env.pop("SLIPWAY_TOKEN", None)
    sw = Slipway(
        data_dir=data_dir, env=env, ingress_port=ingress, api_port=api,
        platform_id=f"t{ident}", network=f"slipway-test-{ident}", server_args=server_args,
    )  # fmt: skip
    try:
        # Inside: a control plane that fails to start has already started HAProxy and its
        # daemons (and a slow one keeps running), so it is shut down like one that started.
        sw.start()
        yield sw
    finally:
        sw.shutdown(docker_client)


def httpd_app(folder: Path, index: str, cgi: dict[str, str] | None = None) -> Path:
    """A busybox httpd app in `folder`: index.html, executable CGI scripts under /cgi-bin, and a
    Dockerfile serving them on $PORT as the app user. The serving tests' workhorse."""
    (folder / "www" / "cgi-bin").mkdir(parents=True, exist_ok=True)
    (folder / "www" / "index.html").write_text(index)
    for name, script in (cgi or {}).items():
        path = folder / "www" / "cgi-bin" / name
        path.write_text(script)
        path.chmod(0o755)
    (folder / "Dockerfile").write_text(
        f"FROM {BUSYBOX}\nCOPY www /www\nUSER app\n"
        'CMD ["sh", "-c", "exec httpd -f -p ${PORT} -h /www"]\n'
    )
    return folder


def push_image(client: docker.DockerClient, folder: Path | str, ref: str) -> str:
    """Build `folder` with the Docker Engine and push it as `ref` (registry/repo:tag), as a user
    would before `slipway deploy --image` or `services replace`."""
    repo, tag = ref.rsplit(":", 1)
    client.images.build(path=str(folder), tag=ref, pull=False, rm=True)
    for line in client.api.push(repo, tag=tag, stream=True, decode=True):
        assert "error" not in line, line
    return ref


def write_app(folder: Path, *, body: str, dockerfile: str | None = None) -> Path:
    """A tiny static site on busybox httpd, listening on $PORT."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.html").write_text(body)
    (folder / "Dockerfile").write_text(
        dockerfile
        or f"FROM {BUSYBOX}\nCOPY index.html /www/index.html\nUSER app\n"
        'CMD ["sh", "-c", "exec httpd -f -p ${PORT} -h /www"]\n'
    )
    return folder
