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

import contextlib
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


@contextlib.contextmanager
def own_namespace(kube: k8s.ApiClient, prefix: str) -> Iterator[str]:
    """A namespace `<prefix>-<hex>` of the caller's own; deleted (without waiting) at the end."""
    name = f"{prefix}-{secrets.token_hex(3)}"
    core = k8s.CoreV1Api(kube)
    core.create_namespace({"metadata": {"name": name, "labels": {"dev.slipway.test": "knative"}}})
    try:
        yield name
    finally:
        core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="session")
def namespace(kube: k8s.ApiClient) -> Iterator[str]:
    """The session's namespace."""
    with own_namespace(kube, "slipway-kt") as name:
        yield name


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


def knative_slipway(
    tmp_path_factory: pytest.TempPathFactory,
    cluster: Cluster,
    namespace: str,
    *,
    platform_id: str,
    extra_env: Callable[[int], dict[str, str]] = lambda _api: {},
) -> KnativeSlipway:
    """`slipway server` (not started) with SLIPWAY_ENGINE=knative in `namespace`, its own data
    dir and free ports; `extra_env(api_port)` adds or overrides settings."""
    data_dir = tmp_path_factory.mktemp(f"slipway-{platform_id}")
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
        "SLIPWAY_PLATFORM_ID": platform_id,
        # Knative reports most failures well within this; what it never reports on (its
        # progress deadline is 600 s) Slipway fails as ReadinessTimeout.
        "SLIPWAY_READINESS_TIMEOUT": "240",
        **extra_env(api),
    }
    env.pop("SLIPWAY_URL", None)
    env.pop("SLIPWAY_TOKEN", None)
    return KnativeSlipway(
        data_dir=data_dir, env=env, ingress_port=int(env["SLIPWAY_PORT"]), api_port=api,
        platform_id=platform_id, network="",
    )  # fmt: skip


@pytest.fixture(scope="session")
def slipway(
    tmp_path_factory: pytest.TempPathFactory, cluster: Cluster, namespace: str
) -> Iterator[KnativeSlipway]:
    sw = knative_slipway(
        tmp_path_factory, cluster, namespace, platform_id=f"t{secrets.token_hex(3)}"
    )
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
POD_GATEWAY = os.environ.get("SLIPWAY_CLUSTER_POD_GATEWAY", "10.244.0.1")


@pytest.fixture(scope="session")
def build_slipway(
    tmp_path_factory: pytest.TempPathFactory, cluster: Cluster, namespace: str
) -> Iterator[KnativeSlipway]:
    """A control plane of its own for in-cluster builds: its API listens where build pods reach
    it (the source download), and Jobs push to the registry as pods reach it while revisions pin
    the name the node pulls (SLIPWAY_BUILD_REGISTRY vs SLIPWAY_REGISTRY)."""
    port = cluster.registry.rsplit(":", 1)[-1]
    sw = knative_slipway(
        tmp_path_factory, cluster, namespace, platform_id=f"b{secrets.token_hex(3)}",
        extra_env=lambda api: {
            # Every address: the pods' gateway is one of them (a test machine; the API wants
            # the admin token or a build's source token all the same).
            "SLIPWAY_API_HOST": "0.0.0.0",
            "SLIPWAY_SOURCE_URL": f"http://{POD_GATEWAY}:{api}",
            "SLIPWAY_BUILD_REGISTRY": f"{POD_GATEWAY}:{port}",
            "SLIPWAY_REGISTRY_INSECURE": "true",
        },
    )  # fmt: skip
    try:
        sw.start()
        yield sw
    finally:
        sw.stop()


# ---- identity: the metadata server on the cluster, and a pod asking it for tokens ---------
# Added for tests/knative/test_metadata.py and test_private.py (issue 14's identity items).
METADATA_SERVICE = "slipway-metadata"
# The metadata server the test runs on the host listens on POD_GATEWAY (above): the one host
# address pods reach.
PYTHON_BASE = "slipway/python:3.11-bookworm"
DOMAIN = "localhost"

TOKEN_APP = '''
import os, signal, sys, urllib.error, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import google.auth.transport.requests
from google.oauth2 import id_token


class Tokens(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        status = 200
        try:
            if url.path == "/token":
                # What code on Cloud Run does, unchanged: google-auth finds the metadata server
                # through GCE_METADATA_HOST / GCE_METADATA_IP and asks it for an ID token.
                body = id_token.fetch_id_token(google.auth.transport.requests.Request(), q["aud"])
            elif url.path == "/metadata":  # the raw protocol, for format=full
                request = urllib.request.Request(
                    "http://" + os.environ["GCE_METADATA_HOST"] + q["path"],
                    headers={"Metadata-Flavor": "Google"},
                )
                try:
                    with urllib.request.urlopen(request, timeout=10) as r:
                        body = r.read().decode()
                except urllib.error.HTTPError as e:
                    status, body = e.code, e.read().decode()
            else:
                body = "ok"
        except Exception as e:
            status, body = 500, f"{type(e).__name__}: {e}"
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # PID 1 ignores SIGTERM otherwise
ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Tokens).serve_forever()
'''


@dataclass(frozen=True)
class Identity:
    """A control plane whose revisions get `GCE_METADATA_HOST`, and its metadata server."""

    slipway: KnativeSlipway
    issuer: str  # SLIPWAY_PUBLIC_URL: the tokens' `iss`, the Istio policies' issuer
    metadata_host: str  # what revisions get: the metadata Service's cluster DNS name
    metadata_direct: str  # where the host reaches the server itself (POD_GATEWAY:port)

    def jwks(self) -> dict[str, Any]:
        resp = httpx.get(f"{self.issuer}/.well-known/jwks.json", timeout=10)
        assert resp.status_code == 200, resp.text
        return dict(resp.json())


def _metadata_service(kube: k8s.ApiClient, namespace: str, port: int) -> None:
    """The Service the chart makes (`<release>-slipway-metadata`, port 80), here without a
    selector: its endpoint is the host's pod-network address, where the test's server runs (the
    chart's selects the control-plane pod; the hop pod -> ClusterIP -> endpoint is the same)."""
    k8s.CoreV1Api(kube).create_namespaced_service(
        namespace,
        {
            "metadata": {"name": METADATA_SERVICE},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": port}]},
        },
    )
    k8s.DiscoveryV1Api(kube).create_namespaced_endpoint_slice(
        namespace,
        {
            "metadata": {
                "name": f"{METADATA_SERVICE}-host",
                "labels": {
                    "kubernetes.io/service-name": METADATA_SERVICE,
                    "endpointslice.kubernetes.io/managed-by": "slipway-tests",
                },
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [POD_GATEWAY]}],
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        },
    )


@pytest.fixture(scope="session")
def identity(
    tmp_path_factory: pytest.TempPathFactory, cluster: Cluster, kube: k8s.ApiClient, namespace: str
) -> Iterator[Identity]:
    """A second `slipway server` in the session's namespace (its own platform id, so neither
    touches the other's services) with SLIPWAY_METADATA_HOST set, as the chart sets it, and
    `slipway metadata --engine=knative` with the options the chart's metadata container gets."""
    platform_id = f"i{secrets.token_hex(3)}"
    metadata_host = f"{METADATA_SERVICE}.{namespace}.svc"
    sw = knative_slipway(
        tmp_path_factory, cluster, namespace, platform_id=platform_id,
        extra_env=lambda _api: {"SLIPWAY_DOMAIN": DOMAIN, "SLIPWAY_METADATA_HOST": metadata_host},
    )  # fmt: skip
    issuer = sw.env["SLIPWAY_PUBLIC_URL"]
    data_dir, env = sw.data_dir, sw.env
    port = free_port()
    metadata: subprocess.Popen[bytes] | None = None
    try:
        sw.start()
        assert httpx.get(f"{issuer}/.well-known/jwks.json", timeout=10).json()["keys"]
        with (data_dir / "metadata.log").open("ab") as log:
            metadata = subprocess.Popen(
                [
                    sys.executable, "-m", "pipeline.cli", "metadata", "--engine=knative",
                    f"--namespace={namespace}", f"--bind={POD_GATEWAY}", f"--port={port}",
                    f"--keys-dir={data_dir / 'keys'}", f"--platform={platform_id}",
                    f"--issuer={issuer}", f"--domain={DOMAIN}",
                    f"--kubeconfig={cluster.kubeconfig}",
                ],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            )  # fmt: skip
        direct = f"{POD_GATEWAY}:{port}"

        def answers() -> int:
            try:
                return httpx.get(f"http://{direct}/", timeout=2).status_code
            except httpx.HTTPError:
                return 0

        # The host is no pod of this Slipway: 403 is the server answering.
        eventually(f"the metadata server answering on {direct}", answers, timeout_s=30)
        _metadata_service(kube, namespace, port)
        yield Identity(
            slipway=sw, issuer=issuer, metadata_host=metadata_host, metadata_direct=direct
        )
    finally:
        if metadata is not None:
            metadata.terminate()
            metadata.wait(timeout=10)
        sw.stop()


@dataclass(frozen=True)
class TokenCaller:
    """A Slipway service whose pod asks the metadata server for tokens (google-auth)."""

    service: str
    revision: str
    address: str  # the revision's private ClusterIP, reached from the host

    def get(self, path: str, *, timeout_s: float = 90) -> httpx.Response:
        """The app's answer, retried while kube-proxy or the queue-proxy cannot yet forward
        (the pod may still be starting); the app's own errors come back as they are."""
        url = f"http://{self.address}{path}"

        def probe() -> httpx.Response | None:
            try:
                resp = httpx.get(url, timeout=30)
            except httpx.HTTPError:
                return None
            return None if resp.status_code in (502, 503) else resp

        return eventually(f"{url} answering", probe, timeout_s=timeout_s)  # type: ignore[no-any-return]

    def token(self, audience: str) -> str:
        from urllib.parse import urlencode

        resp = self.get("/token?" + urlencode({"aud": audience}))
        assert resp.status_code == 200, f"google-auth in the pod failed: {resp.text}"
        return resp.text


def token_app(folder: Path) -> Path:
    """TOKEN_APP on Debian's python3 with google-auth from PyPI: Debian's own python3-google-auth
    (1.5.1 in bookworm) predates `id_token.fetch_id_token` and GCE_METADATA_HOST."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_text(TOKEN_APP)
    (folder / "Dockerfile").write_text(
        f"FROM {PYTHON_BASE}\n"
        "RUN pip install --break-system-packages --no-cache-dir google-auth requests\n"
        'COPY app.py /app.py\nUSER 65532:65532\nCMD ["python3", "/app.py"]\n'
    )
    return folder


@pytest.fixture(scope="session")
def token_caller(
    identity: Identity,
    docker_client: docker.DockerClient,
    tmp_path_factory: pytest.TempPathFactory,
    cluster: Cluster,
    kube_reader: Kube,
) -> TokenCaller:
    from pipeline.build import baseimages

    baseimages.ensure_base_images(docker_client, references=[PYTHON_BASE])
    service = f"kt-caller-{secrets.token_hex(2)}"
    image = push(
        docker_client,
        token_app(tmp_path_factory.mktemp("caller")),
        f"{cluster.registry}/slipway-kt/{service}:1",
    )
    # min-instances 1: nothing routes requests here (no ingress), and the test calls the pod.
    identity.slipway.cli("deploy", service, "--image", image.ref, "--min-instances", "1")
    revision = f"{service}-00001"
    return TokenCaller(
        service=service,
        revision=revision,
        address=kube_reader.cluster_ip(f"{revision}-private"),
    )
