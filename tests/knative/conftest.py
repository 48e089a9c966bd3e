"""The Knative tier: Slipway's Knative engine against a real single-node Kubernetes with Knative
Serving (`scripts/cluster`, built from upstream modules; see scripts/cluster.d/README.md).

The session starts the cluster with `scripts/cluster up` (which builds the tools when the cache
has none: long the first time on a machine) and stops it with `down` at the end; a cluster that
cannot come up fails the tier with the script's own output, it never skips. Each session works in
a namespace of its own, with a control plane of its own (`slipway server`, SLIPWAY_ENGINE=knative,
the cluster's admin kubeconfig), on free loopback ports.

No networking layer runs (every Knative ingress forwards through Envoy, which cannot be had
here), so revisions are reached through their Kubernetes Services, as the README describes.
`SLIPWAY_CLUSTER_KEEP=1` leaves the cluster up after the session (for working on the tier).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from tests.integration.conftest import ROOT, Slipway, free_port, wait_http

CLUSTER = ROOT / "scripts" / "cluster"
STATE = Path(os.environ.get("SLIPWAY_CLUSTER_DIR", "/var/lib/slipway-cluster"))
KUBECONFIG = STATE / "kubeconfig" / "admin.conf"
# The registry the cluster's containerd pulls from over plain HTTP (scripts/cluster trusts it).
REGISTRY = os.environ.get("SLIPWAY_CLUSTER_REGISTRY", "127.0.0.1:5000")
BUSYBOX = "slipway/busybox:1.35-bookworm"
HERE = Path(__file__).resolve().parent
# `up` on a machine with no tool cache builds Kubernetes, Knative, CoreDNS, cri-tools and Istio's
# CRDs from their modules (about 40 min on 2 loaded cores, scripts/cluster.d/README.md); with
# the cache it takes about a minute. The first test of the tier carries that in its setup.
UP_TIMEOUT_S = 90 * 60
FIRST_TEST_TIMEOUT_S = UP_TIMEOUT_S + 600


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test here is `knative`; the first one also waits for `scripts/cluster up`."""
    first = True
    for item in items:
        if HERE not in Path(str(item.path)).parents:
            continue
        item.add_marker(pytest.mark.knative)
        if first:
            item.add_marker(pytest.mark.timeout(FIRST_TEST_TIMEOUT_S))
            first = False


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    registry: str
    up_seconds: float


def _cluster(command: str, log: Path, *, timeout_s: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SLIPWAY_REGISTRY": REGISTRY}
    with log.open("a") as out:
        out.write(f"\n$ scripts/cluster {command}\n")
        out.flush()
        return subprocess.run(
            [str(CLUSTER), command], stdout=out, stderr=subprocess.STDOUT, text=True, env=env,
            timeout=timeout_s, cwd=ROOT,
        )  # fmt: skip


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    log = tmp_path_factory.mktemp("cluster") / "cluster.log"
    started = time.monotonic()
    try:
        result = _cluster("up", log, timeout_s=UP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"scripts/cluster up did not finish within {UP_TIMEOUT_S}s; its output:\n"
            + log.read_text()[-4000:],
            pytrace=False,
        )
    if result.returncode != 0 or not KUBECONFIG.is_file():
        _cluster("down", log, timeout_s=300)  # whatever half started, stopped again
        pytest.fail(
            f"the Knative tier needs the local cluster and `scripts/cluster up` exited "
            f"{result.returncode} (kubeconfig {KUBECONFIG} "
            f"{'exists' if KUBECONFIG.is_file() else 'missing'}); its output:\n"
            + log.read_text()[-4000:],
            pytrace=False,
        )
    up = time.monotonic() - started
    sys.stderr.write(f"\nscripts/cluster up: {up:.0f}s\n")
    try:
        yield Cluster(kubeconfig=KUBECONFIG, registry=REGISTRY, up_seconds=up)
    finally:
        if os.environ.get("SLIPWAY_CLUSTER_KEEP") != "1":
            down = _cluster("down", log, timeout_s=600)
            assert down.returncode == 0, "scripts/cluster down failed:\n" + log.read_text()[-3000:]


@pytest.fixture(scope="session")
def kube(cluster: Cluster) -> k8s.ApiClient:
    configuration = k8s.Configuration()
    k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(cluster.kubeconfig), client_configuration=configuration
    )
    return k8s.ApiClient(configuration)


@pytest.fixture(scope="session")
def namespace(kube: k8s.ApiClient) -> Iterator[str]:
    """A namespace of this session's own; deleted (without waiting) at the end."""
    name = f"slipway-kt-{secrets.token_hex(3)}"
    core = k8s.CoreV1Api(kube)
    core.create_namespace({"metadata": {"name": name, "labels": {"dev.slipway.test": "knative"}}})
    try:
        yield name
    finally:
        core.delete_namespace(name, propagation_policy="Background")


class KnativeSlipway(Slipway):
    """`slipway server` with SLIPWAY_ENGINE=knative: no HAProxy and no Docker containers of its
    own (Knative's ingress would be the data plane), so the CLI talks to the API port."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *self.server_args],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            )  # fmt: skip
        try:
            wait_http(f"{self.url}/healthz", timeout_s=60)
        except AssertionError as e:
            raise AssertionError(f"control plane did not start:\n{self.log()}") from e

    def log(self, tail: int = 4000) -> str:
        return self.log_path.read_text()[-tail:]

    def api_json(self, path: str) -> Any:
        resp = self.api_get(path)
        assert resp.status_code == 200, f"GET {path}: {resp.status_code} {resp.text}"
        return resp.json()


@pytest.fixture(scope="session")
def slipway(
    tmp_path_factory: pytest.TempPathFactory, cluster: Cluster, namespace: str
) -> Iterator[KnativeSlipway]:
    ident = secrets.token_hex(3)
    data_dir = tmp_path_factory.mktemp("slipway-knative")
    api = free_port()
    env = {
        **os.environ,
        "SLIPWAY_ENGINE": "knative",
        "SLIPWAY_KUBECONFIG": str(cluster.kubeconfig),
        "SLIPWAY_NAMESPACE": namespace,
        "SLIPWAY_DATA_DIR": str(data_dir),
        "SLIPWAY_API_PORT": str(api),
        "SLIPWAY_PORT": str(free_port()),
        "SLIPWAY_PUBLIC_URL": f"http://127.0.0.1:{api}",
        "SLIPWAY_REGISTRY": cluster.registry,
        "SLIPWAY_PLATFORM_ID": f"t{ident}",
        # Knative reports most failures well within this; what it never reports on (its
        # progress deadline is 600 s) Slipway fails as ReadinessTimeout.
        "SLIPWAY_READINESS_TIMEOUT": "240",
    }
    env.pop("SLIPWAY_URL", None)
    env.pop("SLIPWAY_TOKEN", None)
    sw = KnativeSlipway(
        data_dir=data_dir, env=env, ingress_port=int(env["SLIPWAY_PORT"]), api_port=api,
        platform_id=f"t{ident}", network="",
    )  # fmt: skip
    try:
        sw.start()
        yield sw
    finally:
        sw.stop()


# ---- apps: images pushed to the cluster's registry ----------------------------------------
@dataclass(frozen=True)
class PushedImage:
    ref: str  # registry/repo:tag as pushed
    digest: str  # sha256:...

    @property
    def pinned(self) -> str:
        return f"{self.ref.rsplit(':', 1)[0]}@{self.digest}"


def push(client: docker.DockerClient, folder: Path, ref: str) -> PushedImage:
    """Build `folder` with the Docker Engine and push it; the digest the registry gave."""
    repo, tag = ref.rsplit(":", 1)
    client.images.build(path=str(folder), tag=ref, pull=False, rm=True)
    digest = ""
    for line in client.api.push(repo, tag=tag, stream=True, decode=True):
        assert "error" not in line, line
        digest = (line.get("aux") or {}).get("Digest", digest)
    assert digest.startswith("sha256:"), f"push of {ref} gave no digest"
    return PushedImage(ref=ref, digest=digest)


def httpd_app(folder: Path, body: str) -> Path:
    """busybox httpd on $PORT serving `body`. sh stays PID 1 and exits on SIGTERM: httpd as PID 1
    ignores it, and a revision pod would then take its whole timeout (300 s) to go away."""
    (folder / "www").mkdir(parents=True, exist_ok=True)
    (folder / "www" / "index.html").write_text(body)
    (folder / "Dockerfile").write_text(
        f"FROM {BUSYBOX}\nCOPY www /www\nUSER 65532:65532\n"
        """CMD ["sh", "-c", "trap 'exit 0' TERM; httpd -f -p ${PORT} -h /www & wait"]\n"""
    )
    return folder


def exiting_app(folder: Path, code: int) -> Path:
    """An app that prints a line and exits with `code` before it ever listens."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text(
        f"FROM {BUSYBOX}\nUSER 65532:65532\n"
        f'CMD ["sh", "-c", "echo kt-exiting-app starts and gives up; exit {code}"]\n'
    )
    return folder


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    client = docker.from_env(timeout=120)
    client.ping()
    return client


@pytest.fixture(scope="session")
def busybox(docker_client: docker.DockerClient) -> str:
    from pipeline.build import baseimages

    baseimages.ensure_base_images(docker_client, references=[BUSYBOX])
    return BUSYBOX


# ---- reading the cluster ----------------------------------------------------------------
class Kube:
    """What the tests read from the cluster, through the real API server."""

    def __init__(self, api: k8s.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self.core = k8s.CoreV1Api(api)
        self.custom = k8s.CustomObjectsApi(api)

    def knative(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            obj: Any = self.custom.get_namespaced_custom_object(
                "serving.knative.dev", "v1", self.namespace, plural, name
            )
        except k8s.exceptions.ApiException as e:
            if e.status == 404:
                return None
            raise
        return dict(obj)

    def pods(self, revision: str) -> list[Any]:
        return list(
            self.core.list_namespaced_pod(
                self.namespace, label_selector=f"serving.knative.dev/revision={revision}"
            ).items
        )

    def cluster_ip(self, service: str) -> str:
        return str(self.core.read_namespaced_service(service, self.namespace).spec.cluster_ip)


@pytest.fixture(scope="session")
def kube_reader(kube: k8s.ApiClient, namespace: str) -> Kube:
    return Kube(kube, namespace)


def eventually(
    what: str, probe: Callable[[], Any], *, timeout_s: float = 120, every_s: float = 1.0
) -> Any:
    """`probe()`'s first truthy answer; fails with `what` and the last answer when time is up."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every_s)
    raise AssertionError(
        f"{what} within {timeout_s:.0f}s; last seen: {json.dumps(last, default=str)[:2000]}"
    )


def get_text(url: str, *, timeout_s: float = 60) -> str:
    """The body of a 200 from `url`, retried while kube-proxy programs a new Service."""
    seen: list[str] = []

    def probe() -> str:
        try:
            resp = httpx.get(url, timeout=5)
        except httpx.HTTPError as e:
            seen.append(type(e).__name__)
            return ""
        if resp.status_code != 200:
            seen.append(f"{resp.status_code}")
            return ""
        return resp.text

    try:
        return str(eventually(f"{url} answering 200", probe, timeout_s=timeout_s))
    except AssertionError as e:
        raise AssertionError(f"{e}; answers before: {seen[-10:]}") from None


# ---- in-cluster builds (tests/knative/test_builds.py) ------------------------------------
# Build pods reach the host at the pod network's gateway (scripts/cluster: POD_GW), never at
# 127.0.0.1 (their own): `up` forwards <gateway>:5000 to the registry on the host's loopback.
POD_GATEWAY = "10.244.0.1"


@pytest.fixture(scope="session")
def build_slipway(
    tmp_path_factory: pytest.TempPathFactory, cluster: Cluster, namespace: str
) -> Iterator[KnativeSlipway]:
    """A control plane of its own for in-cluster builds: its API listens where build pods reach
    it (the source download), and Jobs push to the registry as pods reach it while revisions pin
    the name the node pulls (SLIPWAY_BUILD_REGISTRY vs SLIPWAY_REGISTRY)."""
    ident = secrets.token_hex(3)
    data_dir = tmp_path_factory.mktemp("slipway-builds")
    api = free_port()
    port = cluster.registry.rsplit(":", 1)[-1]
    env = {
        **os.environ,
        "SLIPWAY_ENGINE": "knative",
        "SLIPWAY_KUBECONFIG": str(cluster.kubeconfig),
        "SLIPWAY_NAMESPACE": namespace,
        "SLIPWAY_DATA_DIR": str(data_dir),
        # Every address: the pods' gateway is one of them (a test machine; the API wants the
        # admin token or a build's source token all the same).
        "SLIPWAY_API_HOST": "0.0.0.0",
        "SLIPWAY_API_PORT": str(api),
        "SLIPWAY_PORT": str(free_port()),
        "SLIPWAY_PUBLIC_URL": f"http://127.0.0.1:{api}",
        "SLIPWAY_SOURCE_URL": f"http://{POD_GATEWAY}:{api}",
        "SLIPWAY_REGISTRY": cluster.registry,
        "SLIPWAY_BUILD_REGISTRY": f"{POD_GATEWAY}:{port}",
        "SLIPWAY_REGISTRY_INSECURE": "true",
        "SLIPWAY_PLATFORM_ID": f"b{ident}",
        "SLIPWAY_READINESS_TIMEOUT": "240",
    }
    env.pop("SLIPWAY_URL", None)
    env.pop("SLIPWAY_TOKEN", None)
    sw = KnativeSlipway(
        data_dir=data_dir, env=env, ingress_port=int(env["SLIPWAY_PORT"]), api_port=api,
        platform_id=f"b{ident}", network="",
    )  # fmt: skip
    try:
        sw.start()
        yield sw
    finally:
        sw.stop()
