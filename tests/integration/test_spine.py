"""The spine, end to end: a folder becomes a live URL through real Docker, registry and HAProxy.

Every request here goes to HAProxy on a loopback port (with the service's Host header), exactly
as `curl http://hello.localhost:PORT/` would send it.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import docker
import httpx
import pytest

from pipeline.core import names
from tests.integration.conftest import BUSYBOX, Slipway, push_image, write_app

pytestmark = pytest.mark.integration


def test_deploy_from_folder_serves_url(slipway: Slipway, tmp_path: Path) -> None:
    app = write_app(tmp_path / "hello", body="hello v1\n")
    (app / ".dockerignore").write_text("secret.txt\n")
    (app / "secret.txt").write_text("not for the image")

    result = slipway.cli("deploy", "hello", "--source", str(app))

    url = f"http://hello.localhost:{slipway.ingress_port}"
    assert "-----> hello-00001 ready" in result.stdout
    assert result.stdout.count(url) == 1 and f"{url}  (100%)" in result.stdout  # said once
    assert "Step 1/" in result.stdout  # build output reached the user
    resp = slipway.get("hello")
    assert resp.status_code == 200
    assert resp.text == "hello v1\n"
    # .dockerignore was honoured: the file never reached the build context.
    assert slipway.get("hello", "/secret.txt").status_code == 404

    listing = slipway.cli("revisions", "list", "hello").stdout
    assert "hello-00001" in listing and "Ready" in listing
    described = slipway.api_get("/v1/services/hello").json()
    assert described["latest_ready_revision"] == "hello-00001"
    assert described["traffic"] == [{"revision": "hello-00001", "percent": 100}]
    image = described["revisions"][0]["image"]
    assert image.startswith(f"{slipway.env['SLIPWAY_REGISTRY']}/hello@sha256:")


def test_redeploy_moves_traffic_with_zero_failed_requests(
    slipway: Slipway, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    app = write_app(tmp_path / "hello", body="hello v1\n")
    slipway.cli("deploy", "hello", "--source", str(app))
    first = {c.id for c in slipway.containers(docker_client)}

    failures: list[str] = []
    bodies: list[str] = []
    stop = threading.Event()

    def hammer(keepalive: bool) -> None:
        client = httpx.Client(timeout=10) if keepalive else None
        headers = {"Host": f"hello.localhost:{slipway.ingress_port}"}
        url = f"http://127.0.0.1:{slipway.ingress_port}/"
        try:
            while not stop.is_set():
                try:
                    r = (
                        client.get(url, headers=headers)
                        if client
                        else httpx.get(url, headers=headers)
                    )
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text.strip()}")
                    else:
                        bodies.append(r.text)
                except httpx.HTTPError as e:
                    failures.append(repr(e))
                time.sleep(0.005)
        finally:
            if client:
                client.close()

    workers = [threading.Thread(target=hammer, args=(k,)) for k in (True, False)]
    for w in workers:
        w.start()
    try:
        write_app(app, body="hello v2\n")
        out = slipway.cli("deploy", "hello", "--source", str(app)).stdout
        # keep the load on while the old revision drains and stops
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if first.isdisjoint(c.id for c in slipway.containers(docker_client)):
                break
            time.sleep(0.5)
        time.sleep(1)
    finally:
        stop.set()
        for w in workers:
            w.join()

    assert "hello-00002 ready" in out
    assert failures == []
    assert "hello v1\n" in bodies and bodies[-1] == "hello v2\n"
    assert first.isdisjoint(c.id for c in slipway.containers(docker_client)), "old instance left"


def test_failed_build_is_rejected_and_old_revision_keeps_serving(
    slipway: Slipway, tmp_path: Path
) -> None:
    app = write_app(tmp_path / "ok", body="still here\n")
    slipway.cli("deploy", "keeper", "--source", str(app))
    broken = write_app(
        tmp_path / "broken",
        body="never\n",
        dockerfile=f"FROM {BUSYBOX}\nRUN echo compiling && exit 3\n",
    )

    result = slipway.cli("deploy", "keeper", "--source", str(broken), check=False)

    assert result.returncode == 1
    assert "build failed" in result.stderr
    assert "returned a non-zero code: 3" in result.stderr
    assert "compiling" in result.stdout  # the failing step's output reached the user
    assert slipway.get("keeper").text == "still here\n"
    revisions = slipway.api_get("/v1/services/keeper/revisions").json()
    assert [r["name"] for r in revisions] == ["keeper-00001"]


@pytest.mark.parametrize(
    ("cmd", "reason", "words"),
    [
        pytest.param('["sh", "-c", "echo booting; exit 3"]', "ExitCode", "code 3", id="exits"),
        pytest.param('["sleep", "600"]', "ReadinessTimeout", "listen on $PORT", id="never-listens"),
    ],
)
def test_revision_that_never_becomes_ready_is_failed_and_gets_no_traffic(
    slipway: Slipway, tmp_path: Path, cmd: str, reason: str, words: str
) -> None:
    svc = f"steady-{reason.lower()}"
    app = write_app(tmp_path / "ok", body="stable\n")
    slipway.cli("deploy", svc, "--source", str(app))
    bad = write_app(tmp_path / "bad", body="x", dockerfile=f"FROM {BUSYBOX}\nCMD {cmd}\n")

    result = slipway.cli("deploy", svc, "--source", str(bad), check=False)

    assert result.returncode == 1
    assert reason in result.stderr and words in result.stderr
    assert f"{svc}-00001 (100%) keeps serving" in result.stderr
    assert slipway.get(svc).text == "stable\n"
    view = slipway.api_get(f"/v1/services/{svc}").json()
    failed = view["revisions"][0]
    assert failed["status"] == "Failed" and failed["reason"] == reason
    assert view["traffic"] == [{"revision": f"{svc}-00001", "percent": 100}]
    if reason == "ExitCode":
        assert "booting" in failed["message"]  # the instance's own output explains it


def test_deploy_image_without_build(
    slipway: Slipway, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    app = write_app(tmp_path / "img", body="from an image\n")
    ref = f"{slipway.env['SLIPWAY_REGISTRY']}/some/image"
    push_image(docker_client, str(app), f"{ref}:tag")

    out = slipway.cli("deploy", "web", "--image", f"{ref}:tag").stdout

    assert "web-00001 ready" in out
    assert slipway.get("web").text == "from an image\n"
    image = slipway.api_get("/v1/services/web").json()["revisions"][0]["image"]
    assert image.startswith(f"{ref}@sha256:")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["Hello_World", "--image", "127.0.0.1:1/x:1"], "invalid service name",
                     id="bad-name"),
        pytest.param(["a" * 48, "--image", "127.0.0.1:1/x:1"], "at most 47", id="name-too-long"),
        pytest.param(["ghost", "--image", "REGISTRY/nothing/here:1"], "not found in registry",
                     id="missing-image"),
        pytest.param(["ghost", "--image", "nginx:latest"], "names no registry", id="no-registry"),
        pytest.param(["ghost", "--image", "127.0.0.1:9/x:1"], "not reachable", id="registry-down"),
    ],
)  # fmt: skip
def test_bad_deploys_get_clear_errors(slipway: Slipway, args: list[str], message: str) -> None:
    args = [a.replace("REGISTRY", slipway.env["SLIPWAY_REGISTRY"]) for a in args]
    result = slipway.cli("deploy", *args, check=False)
    assert result.returncode == 1
    assert message in result.stderr
    assert slipway.api_get("/v1/services/ghost").status_code == 404


def test_folder_without_dockerfile_is_refused(slipway: Slipway, tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("print('hi')\n")
    result = slipway.cli("deploy", "nodocker", "--source", str(tmp_path / "app"), check=False)
    assert result.returncode == 1
    assert "no Dockerfile in the source folder" in result.stderr


def test_replace_with_knative_yaml(
    slipway: Slipway, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    app = write_app(tmp_path / "y", body="yaml service\n")
    ref = f"{slipway.env['SLIPWAY_REGISTRY']}/yaml/app"
    push_image(docker_client, str(app), f"{ref}:1")
    doc = tmp_path / "svc.yaml"
    doc.write_text(
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: fromyaml\n"
        "spec:\n  template:\n    spec:\n      containerConcurrency: 5\n      containers:\n"
        f"        - image: {ref}:1\n          env:\n            - {{name: GREETING, value: hi}}\n"
    )

    out = slipway.cli("services", "replace", str(doc)).stdout
    assert "fromyaml-00001 ready" in out
    assert slipway.get("fromyaml").text == "yaml service\n"
    # Same document again: the template did not change, so no new revision (Knative semantics).
    again = slipway.cli("services", "replace", str(doc)).stdout
    assert "fromyaml-00001 unchanged" in again

    doc.write_text(doc.read_text().replace("image:", "imagee:"))
    bad = slipway.cli("services", "replace", str(doc), check=False)
    assert bad.returncode == 1
    assert "spec.template.spec.containers[0].imagee" in bad.stderr

    doc.write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n")
    notsvc = slipway.cli("services", "replace", str(doc), check=False)
    assert notsvc.returncode == 1 and "Service" in notsvc.stderr


def test_unknown_host_bare_domain_and_auth(slipway: Slipway) -> None:
    unknown = slipway.get("nobody")
    assert unknown.status_code == 404
    assert "nobody.localhost" in unknown.text and len(unknown.text.strip().splitlines()) == 1

    bare = f"http://127.0.0.1:{slipway.ingress_port}"
    host = {"Host": f"localhost:{slipway.ingress_port}"}
    assert httpx.get(f"{bare}/v1/services", headers=host).status_code == 401
    wrong = {**host, "Authorization": "Bearer nope"}
    assert httpx.get(f"{bare}/v1/services", headers=wrong).status_code == 401
    good = {**host, "Authorization": f"Bearer {slipway.token}"}
    assert httpx.get(f"{bare}/v1/services", headers=good).status_code == 200
    assert httpx.get(f"{bare}/docs", headers=host).status_code == 200


def test_delete_service_removes_route_and_instances(
    slipway: Slipway, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    app = write_app(tmp_path / "gone", body="bye\n")
    slipway.cli("deploy", "gone", "--source", str(app))
    assert slipway.get("gone").status_code == 200

    slipway.cli("services", "delete", "gone")

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        owned = [c for c in slipway.containers(docker_client)
                 if c.labels.get(names.LABEL_SERVICE) == "gone"]  # fmt: skip
        if not owned and slipway.get("gone").status_code == 404:
            break
        time.sleep(0.5)
    assert slipway.get("gone").status_code == 404
    assert owned == []
    assert "gone" not in slipway.cli("services", "list").stdout


def test_revision_history_and_garbage_collection(slipway: Slipway, tmp_path: Path) -> None:
    app = tmp_path / "gc"
    for n in range(1, 6):
        write_app(app, body=f"gc v{n}\n")
        slipway.cli("deploy", "gc", "--source", str(app))

    listing = slipway.cli("revisions", "list", "gc").stdout
    revisions = slipway.api_get("/v1/services/gc/revisions").json()
    # The serving revision plus the 3 newest idle ones are kept (SLIPWAY_REVISIONS_KEPT=3).
    assert [r["name"] for r in revisions] == ["gc-00005", "gc-00004", "gc-00003", "gc-00002"]
    assert revisions[0]["traffic"] == 100 and revisions[1]["traffic"] == 0
    assert "gc-00005" in listing and "100%" in listing and "gc-00001" not in listing
    # Revision numbers only grow after collection.
    write_app(app, body="gc v6\n")
    assert "gc-00006 ready" in slipway.cli("deploy", "gc", "--source", str(app)).stdout


def test_collected_revisions_take_the_images_slipway_built_with_them(
    slipway: Slipway, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    """SLIPWAY_REVISIONS_KEPT is 3 in the fixture: beyond 3 idle revisions the oldest go, and
    with them their images in Slipway's registry, but never an image the user deployed."""
    mine = write_app(tmp_path / "ext", body="the user's own image\n")
    ref = f"{slipway.env['SLIPWAY_REGISTRY']}/users/own"
    push_image(docker_client, str(mine), f"{ref}:v1")
    slipway.cli("deploy", "pruned", "--image", f"{ref}:v1")
    for n in range(2, 7):
        app = write_app(tmp_path / f"v{n}", body=f"build {n}\n")
        slipway.cli("deploy", "pruned", "--source", str(app))
    assert slipway.get("pruned").text == "build 6\n"

    revisions = slipway.api_get("/v1/services/pruned").json()["revisions"]
    assert [r["name"] for r in revisions] == [f"pruned-0000{n}" for n in (6, 5, 4, 3)]

    def manifest(image: str) -> int:
        name, _, digest = image.rpartition("@")
        repo = name.split("/", 1)[1]
        url = f"http://{slipway.env['SLIPWAY_REGISTRY']}/v2/{repo}/manifests/{digest}"
        accept = "application/vnd.docker.distribution.manifest.v2+json"
        return httpx.head(url, headers={"Accept": accept}, timeout=10).status_code

    events = [
        json.loads(line)
        for line in slipway.log_path.read_text().splitlines()
        if line.startswith("{")
    ]
    deleted = [
        e["image"] for e in events if e.get("event") == "image_deleted" and e["service"] == "pruned"
    ]
    assert len(deleted) == 1, deleted  # revision 2's; revision 1 ran the user's image
    (gone,) = deleted
    assert gone.startswith(f"{slipway.env['SLIPWAY_REGISTRY']}/pruned@sha256:")
    assert manifest(gone) == 404
    assert all(manifest(r["image"]) == 200 for r in revisions)
    assert (
        httpx.head(
            f"http://{slipway.env['SLIPWAY_REGISTRY']}/v2/users/own/manifests/v1",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
            timeout=10,
        ).status_code
        == 200
    )
