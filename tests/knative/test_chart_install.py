"""Slipway's Helm chart installed into the real cluster: `scripts/image` builds the control-plane
image, the test pushes it to the cluster's registry and `helm install`s charts/slipway into a
namespace of its own; the control plane then runs in a pod with the chart's ServiceAccount and
Role (in-cluster config, no kubeconfig), and a deploy through its API makes a Knative revision
that becomes Ready and answers. A revision's pod gets its identity token from the chart's metadata
container through the metadata Service. Last, the Role loses `patch` on Knative Services and a
deploy fails with the API server's real 403, told to the user with the verb, the resource and the
fix.

One stand-in, for the network path a real cluster has from its pods to its registry: the
registry here listens on the host's loopback (127.0.0.1:5000, which containerd pulls from), where
no pod can reach it, and the control plane asks it for each image's digest. The chart's
`extraEnv` gives the control plane `HTTP_PROXY` pointing at `RegistryProxy`, a forwarder on the
pod bridge's gateway address that passes requests for that registry (and nothing else) to it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import docker
import httpx
import jwt as pyjwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from kubernetes import client as k8s

from pipeline import __version__
from tests.integration.conftest import ROOT
from tests.knative.conftest import Cluster, Kube, eventually, get_text, httpd_app, push
from tests.knative.registryproxy import RegistryProxy, bridge_address
from tests.unit.helm import CHART, helm_binary

TOOLS = ROOT / "scripts" / "tools"
# What the image is built from (scripts/image, the Dockerfile); with the venv's packages, the key
# of the image tag: a changed source is a new tag, an unchanged one is reused from the registry.
IMAGE_INPUTS = ("pyproject.toml", "README.md", "Dockerfile", ".dockerignore", "scripts/image",
                "scripts/lib.sh", "pipeline", "webhooks", "buildtemplates")  # fmt: skip
# Long enough for a loaded node to pull and start the app. A 403 fails the revision at once
# (reason Forbidden), not at this timeout (docs/kubernetes.md, "RBAC").
READINESS_TIMEOUT_S = 120
MANIFESTS = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"  # noqa: E501


# ---- the image ---------------------------------------------------------------------------------
def image_key() -> str:
    """A hash of every input of `scripts/image`: its sources and the venv's package versions."""
    digest = hashlib.sha256()
    for top in IMAGE_INPUTS:
        path = ROOT / top
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            if "__pycache__" in f.parts or f.suffix == ".pyc" or not f.exists():
                continue
            digest.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    pip = [sys.executable, "-m", "pip", "list", "--format=freeze", "--exclude-editable"]
    freeze = subprocess.run(pip, capture_output=True, text=True, check=True)
    digest.update(freeze.stdout.encode())
    return digest.hexdigest()[:12]


def in_registry(registry: str, repository: str, tag: str) -> bool:
    url = f"http://{registry}/v2/{repository}/manifests/{tag}"
    return httpx.head(url, headers={"Accept": MANIFESTS}, timeout=10).status_code == 200


@pytest.fixture(scope="module")
def chart_image(cluster: Cluster, docker_client: docker.DockerClient) -> str:
    """`registry/slipway/slipway:<version>-<key>`, built by scripts/image and pushed, or the
    registry's copy when nothing it is built from changed."""
    repository = "slipway/slipway"
    tag = f"{__version__}-{image_key()}"
    ref = f"{cluster.registry}/{repository}:{tag}"
    if in_registry(cluster.registry, repository, tag):
        sys.stderr.write(f"\n{ref}: in the registry already, not rebuilt\n")
        return ref
    started = time.monotonic()
    # The venv running these tests builds the wheels (scripts/image would take <checkout>/.venv).
    env = {**os.environ, "SLIPWAY_VENV": sys.prefix, "SLIPWAY_IMAGE": ref}
    built = subprocess.run(["bash", str(ROOT / "scripts" / "image")], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=1500)  # fmt: skip
    assert built.returncode == 0, f"scripts/image failed:\n{built.stdout}\n{built.stderr}"
    pushed = push_tag(docker_client, ref)
    sys.stderr.write(
        f"\nscripts/image + push of {ref}: {time.monotonic() - started:.0f}s "
        f"({pushed})\n{built.stdout}{built.stderr}"
    )
    return ref


def push_tag(client: docker.DockerClient, ref: str) -> str:
    repo, tag = ref.rsplit(":", 1)
    digest = ""
    for line in client.api.push(repo, tag=tag, stream=True, decode=True):
        assert "error" not in line, line
        digest = (line.get("aux") or {}).get("Digest", digest)
    assert digest.startswith("sha256:"), f"push of {ref} gave no digest"
    return str(digest)


# ---- the release ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    fullname: str
    url: str  # the control plane's API, through its Service's ClusterIP
    token: str
    platform: str
    public_url: str
    proxy: RegistryProxy
    install_seconds: float
    kubectl: Path
    kubeconfig: Path

    def cli(self, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "SLIPWAY_URL": self.url, "SLIPWAY_TOKEN": self.token,
               "COLUMNS": "200"}  # fmt: skip
        return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip

    def kubectl_run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.kubectl), "--kubeconfig", str(self.kubeconfig), "-n",
                               self.namespace, *args], capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip

    def diagnosis(self) -> str:
        parts = [self.kubectl_run("get", "pods,events", "-o", "wide").stdout]
        for container in ("slipway", "metadata"):
            logs = self.kubectl_run("logs", f"deploy/{self.fullname}", "-c", container,
                                    "--tail", "40")  # fmt: skip
            parts.append(f"--- {container} log:\n{logs.stdout}{logs.stderr}")
        return "\n".join(parts)[-6000:]


def helm(args: list[str], *, kubeconfig: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """The pinned helm with the cluster's kubeconfig and an empty helm home."""
    with tempfile.TemporaryDirectory(prefix="slipway-helm-") as home:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home,
               "HELM_CACHE_HOME": f"{home}/cache", "HELM_CONFIG_HOME": f"{home}/config",
               "HELM_DATA_HOME": f"{home}/data", "KUBECONFIG": str(kubeconfig)}  # fmt: skip
        return subprocess.run([str(helm_binary()), *args], capture_output=True, text=True,
                              env=env, timeout=timeout)  # fmt: skip


def kubectl_binary() -> Path:
    done = subprocess.run([str(TOOLS), "--dir", "kubernetes"], capture_output=True, text=True,
                          timeout=600, check=False)  # fmt: skip
    path = Path(done.stdout.strip()) / "kubectl"
    assert done.returncode == 0 and path.is_file(), f"no kubectl: {done.stderr}"
    return path


def signing_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()  # fmt: skip


def data_volume(core: k8s.CoreV1Api, folder: Path, name: str) -> None:
    """A hostPath PersistentVolume for the chart's claim: the cluster has no provisioner. Its
    storage class name is the PV's own, so only this release's claim binds it."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chown(folder, 10001, 10001)  # the chart's runAsUser (fsGroup does not apply to hostPath)
    core.create_persistent_volume({
        "metadata": {"name": name, "labels": {"dev.slipway.test": "knative"}},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": name,
                 "hostPath": {"path": str(folder), "type": "Directory"}},
    })  # fmt: skip


@pytest.fixture(scope="module")
def release(
    cluster: Cluster,
    kube: k8s.ApiClient,
    chart_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Release]:
    ident = secrets.token_hex(3)
    name, namespace = "kc", f"slipway-kc-{ident}"
    fullname = f"{name}-slipway"
    core = k8s.CoreV1Api(kube)
    core.create_namespace({"metadata": {"name": namespace,
                                        "labels": {"dev.slipway.test": "knative"}}})  # fmt: skip
    folder = tmp_path_factory.mktemp("chart-data")
    pv = f"slipway-kc-{ident}"
    public_url = f"http://{fullname}.{namespace}.svc:8081"
    repository, tag = chart_image.rsplit(":", 1)
    with RegistryProxy(bind=bridge_address(), registry=cluster.registry) as proxy:
        values = {
            "image": {"repository": repository, "tag": tag},
            "platformId": f"kc{ident}",
            "domain": "example.localhost",
            "publicUrl": public_url,
            "registry": {"host": f"{cluster.registry}/slipway-kc", "insecure": True,
                         "dockerConfigJson": json.dumps({"auths": {}})},
            "signingKeys": {"privateKeyPem": signing_key()},
            "persistence": {"size": "1Gi", "storageClassName": pv},
            "ingress": {"enabled": False},
            "extraEnv": [{"name": "HTTP_PROXY", "value": proxy.url},
                         {"name": "SLIPWAY_READINESS_TIMEOUT", "value": str(READINESS_TIMEOUT_S)}],
        }  # fmt: skip
        values_file = folder.parent / f"values-{ident}.yaml"
        values_file.write_text(yaml.safe_dump(values))
        kubectl = kubectl_binary()
        rel = Release(name=name, namespace=namespace, fullname=fullname, url="", token="",
                      platform=f"kc{ident}", public_url=public_url, proxy=proxy,
                      install_seconds=0.0, kubectl=kubectl,
                      kubeconfig=cluster.kubeconfig)  # fmt: skip
        try:
            data_volume(core, folder / "data", pv)
            started = time.monotonic()
            installed = helm(["install", name, str(CHART), "-n", namespace, "-f",
                              str(values_file), "--wait", "--timeout", "8m"],
                             kubeconfig=cluster.kubeconfig, timeout=600)  # fmt: skip
            took = time.monotonic() - started
            assert installed.returncode == 0, (
                f"helm install failed after {took:.0f}s:\n{installed.stderr}\n{rel.diagnosis()}"
            )
            sys.stderr.write(f"\nhelm install to Ready: {took:.1f}s\n")
            ip = core.read_namespaced_service(fullname, namespace).spec.cluster_ip
            token = eventually("the admin token in the data volume", lambda: rel.kubectl_run(
                "exec", f"deploy/{fullname}", "-c", "slipway", "--", "cat",
                "/var/lib/slipway/admin-token").stdout.strip(), timeout_s=60)  # fmt: skip
            ready = replace(rel, url=f"http://{ip}:8081", token=token, install_seconds=took)
            get_text(f"{ready.url}/healthz", timeout_s=60)
            yield ready
        finally:
            helm(["uninstall", name, "-n", namespace, "--wait", "--timeout", "2m"],
                 kubeconfig=cluster.kubeconfig, timeout=180)  # fmt: skip
            core.delete_namespace(namespace, propagation_policy="Background")
            with contextlib.suppress(k8s.exceptions.ApiException):  # not made if setup failed
                core.delete_persistent_volume(pv)


# ---- the tests -----------------------------------------------------------------------------------
@pytest.mark.timeout(2400)  # a cold scripts/image (base image, wheels) and the install
def test_the_chart_runs_the_control_plane_with_its_service_account(
    release: Release, kube: k8s.ApiClient
) -> None:
    apps = k8s.AppsV1Api(kube)
    deployment = apps.read_namespaced_deployment(release.fullname, release.namespace)
    assert deployment.status.ready_replicas == 1, release.diagnosis()
    pod_spec = deployment.spec.template.spec
    assert pod_spec.service_account_name == release.fullname
    assert [c.name for c in pod_spec.containers] == ["slipway", "metadata"]
    env = {e.name: e.value for e in pod_spec.containers[0].env}
    assert "SLIPWAY_KUBECONFIG" not in env, "the control plane must use its service account"
    # The account the pod runs as may do exactly what the chart's Role grants, and no more.
    who = f"system:serviceaccount:{release.namespace}:{release.fullname}"
    for verb, resource, allowed in [("patch", "services.serving.knative.dev", "yes"),
                                    ("list", "pods", "yes"),
                                    ("delete", "pods", "no"),
                                    ("get", "configmaps", "no")]:  # fmt: skip
        said = release.kubectl_run("auth", "can-i", verb, resource, "--as", who)
        assert said.stdout.strip() == allowed, (verb, resource, said.stdout, said.stderr)


@dataclass(frozen=True)
class Deployed:
    service: str
    body: str
    output: str


@pytest.fixture(scope="module")
def hello(
    release: Release, cluster: Cluster, docker_client: docker.DockerClient, busybox: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Deployed:  # fmt: skip
    service = f"kc-hello-{secrets.token_hex(2)}"
    body = f"hello from {service} via the chart\n"
    image = push(docker_client, httpd_app(tmp_path_factory.mktemp("kc-app"), body),
                 f"{cluster.registry}/slipway-kc/{service}:1")  # fmt: skip
    started = time.monotonic()
    # min-instances 1: no ingress runs, so nothing else would start a pod behind the Service.
    done = release.cli("deploy", service, "--image", image.ref, "--min-instances", "1")
    took = time.monotonic() - started
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{release.diagnosis()}"
    sys.stderr.write(f"\ndeploy through the in-cluster control plane: {took:.1f}s\n")
    return Deployed(service=service, body=body, output=done.stdout + done.stderr)


def test_a_deploy_through_the_chart_is_ready_and_answers(
    release: Release, hello: Deployed, kube: k8s.ApiClient
) -> None:
    reader = Kube(kube, release.namespace)
    rev = f"{hello.service}-00001"
    rows = {r["name"]: r for r in httpx.get(
        f"{release.url}/v1/services/{hello.service}/revisions",
        headers={"Authorization": f"Bearer {release.token}"}, timeout=10).json()}  # fmt: skip
    assert rows[rev]["status"] == "Ready", rows
    ksvc = reader.knative("services", hello.service)
    assert ksvc is not None
    assert ksvc["metadata"]["labels"]["slipway.dev/platform"] == release.platform
    managers = {m["manager"] for m in ksvc["metadata"]["managedFields"]}
    assert "slipway" in managers, managers
    # The digest was resolved from inside the pod, through the stand-in route to the registry.
    assert any(f.startswith("HEAD /v2/slipway-kc/") for f in release.proxy.forwarded)
    ip = reader.cluster_ip(f"{rev}-private")
    assert get_text(f"http://{ip}/") == hello.body


def test_a_revisions_pod_gets_its_identity_from_the_charts_metadata_server(
    release: Release, hello: Deployed, kube: k8s.ApiClient
) -> None:
    """From inside the app's pod, as google-auth would ask: GCE_METADATA_HOST is the chart's
    metadata Service; the server knows the caller by its pod IP, through kube-proxy."""
    reader = Kube(kube, release.namespace)
    rev = f"{hello.service}-00001"
    pods = eventually(f"a running pod of {rev}", lambda: [
        p for p in reader.pods(rev) if p.status.phase == "Running"])  # fmt: skip
    pod = pods[0].metadata.name
    audience = "https://target.example.localhost"
    path = "computeMetadata/v1/instance/service-accounts/default/identity"
    script = (
        'wget -q -O- --header "Metadata-Flavor: Google" '
        f'"http://$GCE_METADATA_HOST/{path}?audience={audience}&format=full"'
    )
    asked = release.kubectl_run("exec", pod, "-c", "user-container", "--", "sh", "-c", script)
    assert asked.returncode == 0, f"{asked.stdout}\n{asked.stderr}\n{release.diagnosis()}"
    jwks = httpx.get(f"{release.url}/.well-known/jwks.json", timeout=10).json()
    key = pyjwt.PyJWKSet.from_dict(jwks).keys[0].key
    claims = pyjwt.decode(asked.stdout.strip(), key=key, algorithms=["RS256"],
                          audience=audience, issuer=release.public_url)  # fmt: skip
    assert claims["email"] == f"{hello.service}@example.localhost"
    assert claims["slipway"]["revision"] == rev
    assert claims["slipway"]["instance"] == pod


def test_a_role_lacking_a_verb_fails_the_deploy_with_the_403_named(
    release: Release, kube: k8s.ApiClient, cluster: Cluster, docker_client: docker.DockerClient,
    busybox: str, tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    """The Role loses `patch` on Knative Services (what a hand-edited or outdated Role looks
    like): the API server refuses Slipway's server-side apply, and the user is told which verb on
    which resource, for which account, and how to fix it."""
    rbac = k8s.RbacAuthorizationV1Api(kube)
    role = rbac.read_namespaced_role(release.fullname, release.namespace)
    original = [r.to_dict() for r in role.rules]
    lacking = [
        {**r, "verbs": [v for v in r["verbs"] if v != "patch"]}
        if r["api_groups"] == ["serving.knative.dev"] and r["resources"] == ["services"]
        else r
        for r in original
    ]
    rules = [{"apiGroups": r["api_groups"], "resources": r["resources"], "verbs": r["verbs"]}
             for r in lacking]  # fmt: skip
    rbac.patch_namespaced_role(release.fullname, release.namespace, {"rules": rules})
    service = f"kc-denied-{secrets.token_hex(2)}"
    image = push(docker_client, httpd_app(tmp_path_factory.mktemp("kc-denied"), "never\n"),
                 f"{cluster.registry}/slipway-kc/{service}:1")  # fmt: skip
    try:
        started = time.monotonic()
        done = release.cli("deploy", service, "--image", image.ref)
        took = time.monotonic() - started
        # Nothing was made (asked before the Role is back: the next pass would apply it then).
        made = k8s.CustomObjectsApi(kube).list_namespaced_custom_object(
            "serving.knative.dev", "v1", release.namespace, "services",
            field_selector=f"metadata.name={service}")["items"]  # fmt: skip
    finally:
        rbac.patch_namespaced_role(release.fullname, release.namespace, {"rules": [
            {"apiGroups": r["api_groups"], "resources": r["resources"], "verbs": r["verbs"]}
            for r in original]})  # fmt: skip
    sys.stderr.write(f"\nthe 403 deploy failed after {took:.1f}s\n")
    said = " ".join((done.stdout + done.stderr).split())  # the CLI may wrap long lines
    assert done.returncode != 0, f"a deploy the cluster refused was reported as done:\n{said}"
    assert "Traceback" not in said, said
    assert "(Forbidden)" in said, f"failed as RBAC's refusal, not a readiness timeout: {said}"
    who = f"system:serviceaccount:{release.namespace}:{release.fullname}"
    assert "denied Slipway 'patch and create' on services.serving.knative.dev" in said, said
    assert f"Grant the service account {who} the verb 'patch'" in said, said
    assert "helm upgrade" in said and "rbac.yaml" in said, said
    assert made == [], made
