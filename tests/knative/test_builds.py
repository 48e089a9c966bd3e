"""In-cluster builds on the real cluster: `slipway deploy --source` with SLIPWAY_ENGINE=knative runs
the build as a Kubernetes Job (ClusterBuilder), the Job pushes to the registry, and the revision
is pinned to exactly the digest the registry holds.

- a Dockerfile app builds with BuildKit (buildkitd + buildctl from `scripts/tools buildkit`, in the
  image scripts/cluster.d/build-images.sh pushes), `FROM slipway/busybox` found through the
  registry mirror, a RUN step run by runc, and answers through its revision's Service;
- a Python app (requirements.txt, no Dockerfile) builds with the lifecycle `creator` from
  Slipway's builder image and answers;
- a failing RUN step fails the build with the step's own output in the log, and the revision
  before it keeps serving;
- a build secret reaches a RUN step as a BuildKit secret mount and is nowhere in the pushed
  image: not in its config, history or layers (read back through the registry's API).

Everything is real: the API server, the Job controller, kubelet, containerd, runc, BuildKit, the
CNB lifecycle and the distribution registry. Nothing here can run without Docker's base images
and Slipway's builder pushed by `scripts/cluster up`.
"""

from __future__ import annotations

import gzip
import io
import json
import secrets
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s

from tests.knative.conftest import BUSYBOX, Cluster, KnativeSlipway, Kube, eventually, get_text

pytestmark = pytest.mark.timeout(900)
MANIFESTS = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


# ---- the registry, read through its API ----------------------------------------------------
def _registry_get(cluster: Cluster, path: str, **headers: str) -> httpx.Response:
    resp = httpx.get(f"http://{cluster.registry}/v2/{path}", headers=headers, timeout=60)
    assert resp.status_code == 200, f"GET /v2/{path}: {resp.status_code} {resp.text[:300]}"
    return resp


def registry_digest(cluster: Cluster, repo: str, tag: str) -> str:
    resp = _registry_get(cluster, f"{repo}/manifests/{tag}", Accept=MANIFESTS)
    return str(resp.headers["Docker-Content-Digest"])


def image_manifest(cluster: Cluster, repo: str, reference: str) -> dict[str, Any]:
    """The image manifest (of linux/amd64, when the reference is an index)."""
    doc: dict[str, Any] = _registry_get(
        cluster, f"{repo}/manifests/{reference}", Accept=MANIFESTS
    ).json()
    if "manifests" in doc:
        amd64 = [
            m for m in doc["manifests"] if (m.get("platform") or {}).get("architecture") == "amd64"
        ]
        assert amd64, f"no linux/amd64 image in the index: {doc}"
        return image_manifest(cluster, repo, amd64[0]["digest"])
    return doc


def blob(cluster: Cluster, repo: str, digest: str) -> bytes:
    return _registry_get(cluster, f"{repo}/blobs/{digest}").content


# ---- apps and deploys -------------------------------------------------------------------------
def httpd_dockerfile(folder: Path, body: str, *, run: str) -> Path:
    """busybox httpd on $PORT; `run` is a RUN step's shell (BuildKit runs it with runc)."""
    (folder / "www").mkdir(parents=True, exist_ok=True)
    (folder / "www" / "index.html").write_text(body)
    (folder / "Dockerfile").write_text(
        f"FROM {BUSYBOX}\nCOPY www /www\nRUN {run}\nUSER 65532:65532\n"
        """CMD ["sh", "-c", "trap 'exit 0' TERM; httpd -f -p ${PORT} -h /www & wait"]\n"""
    )
    return folder


def deploy(slipway: KnativeSlipway, service: str, source: Path, *args: str, check: bool = True,
           env: dict[str, str] | None = None) -> tuple[int, str]:  # fmt: skip
    # min-instances 1: with no ingress nothing sends a revision traffic, and a revision at zero
    # has no pod behind its private Service.
    saved = dict(slipway.env)
    slipway.env.update(env or {})
    try:
        result = slipway.cli(
            "deploy", service, "--source", str(source), "--min-instances", "1", *args,
            check=check, timeout=840,
        )  # fmt: skip
    finally:
        slipway.env.clear()
        slipway.env.update(saved)
    return result.returncode, result.stdout + result.stderr


def pinned_image(kube: Kube, revision: str) -> str:
    rev = kube.knative("revisions", revision)
    assert rev is not None, f"Knative has no revision {revision}"
    return str(rev["spec"]["containers"][0]["image"])


def split_pinned(cluster: Cluster, image: str) -> tuple[str, str]:
    """`<registry>/<repo>@sha256:...` -> (repo, digest); the registry must be the node's."""
    name, _, digest = image.partition("@")
    assert name.startswith(cluster.registry + "/"), image
    assert digest.startswith("sha256:") and len(digest) == 71, image
    return name[len(cluster.registry) + 1 :], digest


def build_tag(cluster: Cluster, repo: str) -> str:
    tags = _registry_get(cluster, f"{repo}/tags/list").json()["tags"]
    built = [t for t in tags if t.startswith("build-")]
    assert len(built) == 1, tags
    return str(built[0])


def answers(kube: Kube, revision: str) -> str:
    return get_text(f"http://{kube.cluster_ip(f'{revision}-private')}/", timeout_s=120)


# ---- the tests ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dockerfile_service(
    build_slipway: KnativeSlipway, busybox: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, str, str]:
    """A Dockerfile app deployed from source: (service, body, deploy output)."""
    service = f"kt-bk-{secrets.token_hex(2)}"
    body = f"built in the cluster: {service}\n"
    folder = httpd_dockerfile(
        tmp_path_factory.mktemp("bk"), body, run="echo ran-by-runc > /www/run.txt"
    )
    _, out = deploy(build_slipway, service, folder)
    return service, body, out


def test_dockerfile_app_builds_with_buildkit_pinned_to_the_registry_digest(
    dockerfile_service: tuple[str, str, str], kube_reader: Kube, cluster: Cluster
) -> None:
    service, body, out = dockerfile_service
    assert "Building in the cluster with BuildKit: Job slipway-build-" in out, out
    image = pinned_image(kube_reader, f"{service}-00001")
    repo, digest = split_pinned(cluster, image)
    assert registry_digest(cluster, repo, build_tag(cluster, repo)) == digest
    assert f"@{digest}" in out, out  # buildctl's metadata, echoed by the Job
    rev = f"{service}-00001"
    assert answers(kube_reader, rev) == body
    ip = kube_reader.cluster_ip(f"{rev}-private")
    assert get_text(f"http://{ip}/run.txt") == "ran-by-runc\n"


def test_failing_run_step_fails_the_build_and_the_old_revision_serves(
    dockerfile_service: tuple[str, str, str],
    build_slipway: KnativeSlipway,
    kube_reader: Kube,
    tmp_path: Path,
) -> None:
    service, body, _ = dockerfile_service
    folder = httpd_dockerfile(
        tmp_path, "never served\n", run="echo kt-step-fails-here >&2 && exit 3"
    )
    code, out = deploy(build_slipway, service, folder, check=False)
    assert code != 0, out
    assert "kt-step-fails-here" in out, out
    assert "the build failed with exit code 1" in out, out
    assert kube_reader.knative("revisions", f"{service}-00002") is None
    assert answers(kube_reader, f"{service}-00001") == body


def test_python_app_builds_with_the_cnb_creator_from_slipways_builder(
    build_slipway: KnativeSlipway, kube_reader: Kube, cluster: Cluster, tmp_path: Path
) -> None:
    service = f"kt-cnb-{secrets.token_hex(2)}"
    body = f"python via buildpacks: {service}"
    (tmp_path / "requirements.txt").write_text("# no dependencies: pods reach no index\n")
    (tmp_path / "main.py").write_text(
        "import http.server, os\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        f"        data = {body!r}.encode()\n"
        "        self.send_response(200); self.send_header('Content-Length', str(len(data)))\n"
        "        self.end_headers(); self.wfile.write(data)\n"
        "http.server.HTTPServer(('', int(os.environ['PORT'])), H).serve_forever()\n"
    )
    _, out = deploy(build_slipway, service, tmp_path)
    assert f"buildpacks ({cluster.registry}/slipway/builder:bookworm)" in out, out
    assert "slipway/python" in out, out  # the builder's own buildpack detected and built it
    repo, digest = split_pinned(cluster, pinned_image(kube_reader, f"{service}-00001"))
    assert registry_digest(cluster, repo, build_tag(cluster, repo)) == digest
    assert answers(kube_reader, f"{service}-00001") == body


def test_build_secret_reaches_the_run_step_and_not_the_image(
    build_slipway: KnativeSlipway, busybox: str, kube_reader: Kube, cluster: Cluster,
    tmp_path: Path,
) -> None:  # fmt: skip
    service = f"kt-sec-{secrets.token_hex(2)}"
    value = f"kt-secret-{secrets.token_hex(8)}"
    folder = httpd_dockerfile(
        tmp_path, "secret test\n",
        run="--mount=type=secret,id=KT_TOKEN wc -c < /run/secrets/KT_TOKEN > /www/len.txt",
    )  # fmt: skip
    _, out = deploy(
        build_slipway, service, folder, "--build-secret", "KT_TOKEN", env={"KT_TOKEN": value}
    )
    assert value not in out, "the secret reached the deploy's log"
    rev = f"{service}-00001"
    ip = kube_reader.cluster_ip(f"{rev}-private")
    eventually(f"{rev} answering", lambda: answers(kube_reader, rev))
    assert get_text(f"http://{ip}/len.txt").strip() == str(len(value))  # the mount was there
    repo, digest = split_pinned(cluster, pinned_image(kube_reader, rev))
    manifest = image_manifest(cluster, repo, digest)
    config = blob(cluster, repo, manifest["config"]["digest"])
    assert json.loads(config)["history"], "the image has a history to look in"
    assert value.encode() not in config
    for layer in manifest["layers"]:
        data = blob(cluster, repo, layer["digest"])
        if str(layer["mediaType"]).endswith("gzip"):
            data = gzip.decompress(data)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar:
                f = tar.extractfile(member) if member.isfile() else None
                assert f is None or value.encode() not in f.read(), member.name
    # (the Job's Secret carried it; the Job spec itself names only the Secret)
    jobs = k8s.BatchV1Api(kube_reader.core.api_client).list_namespaced_job(
        kube_reader.namespace, label_selector=f"slipway.dev/service={service}"
    )
    assert jobs.items and value not in json.dumps(jobs.to_dict(), default=str)
