"""In-cluster builds: request in -> kaniko / CNB Job out (validated with kubernetes-validate),
Job status -> outcome, source tokens and the source route, and ClusterBuilder driven against the
STAND-IN Kubernetes API server (tests/unit/kubestandin.py; not Kubernetes, no kaniko runs).
"""

from __future__ import annotations

import asyncio
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from pipeline.api import sources_route
from pipeline.build import sourcetokens
from pipeline.build.builders import BuilderChoice, BuildRequest, Kind
from pipeline.build.sources import SourceInfo
from pipeline.core.errors import BuildFailed, Conflict
from pipeline.knative.apply import KubeApi
from pipeline.knative.builds import ClusterBuildSettings, job_outcome, render_build_job
from pipeline.knative.jobs import ClusterBuilder
from tests.unit import kubestandin
from tests.unit.kubeschemas import validate_core
from tests.unit.kubestandin import StandIn

SETTINGS = ClusterBuildSettings(namespace="apps", platform="prod")
DIGEST = "sha256:" + "c0" * 32
JOBS = "/apis/batch/v1/namespaces/apps/jobs"
PODS = "/api/v1/namespaces/apps/pods"


def job(kind: str, **overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "kind": kind,
        "build_id": "3f9a61c2d0e4",
        "service": "hello",
        "destination": "registry.example.com/hello:build-3f9a61c2d0e4",
        "source_url": "http://slipway.slipway.svc:8081/v1/builds/3f9a61c2d0e4/source",
        "source_token": "1767225600.abc'\"$(x)",  # quoting must survive anything
        "settings": SETTINGS,
        **overrides,
    }
    return render_build_job(**args)


def containers(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = manifest["spec"]["template"]["spec"]
    return {c["name"]: c for c in [*spec["initContainers"], *spec["containers"]]}


@pytest.mark.parametrize(
    ("kind", "overrides"),
    [
        pytest.param("kaniko", {}, id="kaniko"),
        pytest.param("kaniko", {"dockerfile": "deploy/Dockerfile.prod",
                                "settings": ClusterBuildSettings(namespace="apps", platform="prod",
                                                                 insecure_registry=True)},
                     id="kaniko-insecure-other-dockerfile"),
        pytest.param("cnb", {}, id="cnb"),
        pytest.param("cnb", {"settings": ClusterBuildSettings(
            namespace="apps", platform="prod", insecure_registry=True)}, id="cnb-insecure"),
    ],
)  # fmt: skip
def test_build_job_is_a_valid_job(kind: str, overrides: dict[str, Any]) -> None:
    manifest = job(kind, **overrides)
    validate_core(manifest)
    assert manifest["metadata"]["name"] == "slipway-build-3f9a61c2d0e4"
    assert manifest["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "slipway",
        "slipway.dev/platform": "prod",
        "slipway.dev/service": "hello",
        "slipway.dev/build": "3f9a61c2d0e4",
    }
    spec = manifest["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    fetch, build = containers(manifest)["fetch-source"], containers(manifest)["build"]
    env = {e["name"]: e["value"] for e in fetch["env"]}
    assert env["SOURCE_TOKEN"] == "1767225600.abc'\"$(x)"
    assert env["SOURCE_URL"].endswith("/v1/builds/3f9a61c2d0e4/source")
    assert "$SOURCE_TOKEN" in fetch["args"][0]  # read from env by the shell, never inlined
    secret = [v for v in spec["template"]["spec"]["volumes"] if v["name"] == "registry-auth"]
    assert secret[0]["secret"]["secretName"] == "slipway-registry"
    insecure = overrides.get("settings", SETTINGS).insecure_registry
    if kind == "kaniko":
        assert build["image"].startswith("gcr.io/kaniko-project/executor")
        dockerfile = overrides.get("dockerfile", "Dockerfile")
        assert build["args"][:4] == [
            f"--dockerfile={dockerfile}",
            "--context=dir:///workspace",
            "--destination=registry.example.com/hello:build-3f9a61c2d0e4",
            "--digest-file=/dev/termination-log",
        ]
        assert ("--insecure" in build["args"]) is insecure
    else:
        assert build["image"] == "paketobuildpacks/builder-jammy-base"
        assert build["args"][0].startswith("/cnb/lifecycle/creator -app=/workspace")
        assert ("-insecure-registry=registry.example.com" in build["args"][0]) is insecure
        assert {
            "name": "DESTINATION",
            "value": "registry.example.com/hello:build-3f9a61c2d0e4",
        } in (build["env"])
        assert spec["template"]["spec"]["securityContext"]["fsGroup"] == 1000


def _pod(*statuses: dict[str, Any], init: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "slipway-build-x-abcde", "labels": {"slipway.dev/build": "x"}},
        "status": {"initContainerStatuses": init or [], "containerStatuses": list(statuses)},
    }


def _terminated(name: str, code: int, message: str = "", reason: str = "") -> dict[str, Any]:
    return {"name": name, "state": {"terminated": {"exitCode": code, "message": message,
                                                   "reason": reason}}}  # fmt: skip


@pytest.mark.parametrize(
    ("status", "pods", "expected"),
    [
        pytest.param({}, [], ("running", ""), id="no-pod-yet"),
        pytest.param({"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1},
                     [_pod(_terminated("build", 0, DIGEST + "\n"))], ("succeeded", ""),
                     id="succeeded"),
        pytest.param({"succeeded": 1}, [_pod(_terminated("build", 0, ""))],
                     ("failed", "reported no image digest"), id="succeeded-without-digest"),
        pytest.param({"conditions": [{"type": "Failed", "status": "True",
                                      "reason": "BackoffLimitExceeded"}], "failed": 1},
                     [_pod(_terminated("build", 1, "", "Error"))],
                     ("failed", "the build failed with exit code 1 (Error)"), id="build-failed"),
        pytest.param({"failed": 1}, [_pod(init=[_terminated("fetch-source", 22)])],
                     ("failed", "fetching the source failed with exit code 22"),
                     id="source-fetch-failed"),
        pytest.param({"conditions": [{"type": "Failed", "status": "True",
                                      "reason": "DeadlineExceeded",
                                      "message": "Job was active longer than specified"}]},
                     [], ("failed", "Job was active longer"), id="deadline"),
        pytest.param({}, [_pod({"name": "build", "image": "gcr.io/kaniko-project/executor:v1",
                                "state": {"waiting": {"reason": "ImagePullBackOff",
                                                      "message": "pull denied"}}})],
                     ("failed", "cannot pull the build image"), id="builder-image-not-pullable"),
    ],
)  # fmt: skip
def test_job_outcome(
    status: dict[str, Any], pods: list[dict[str, Any]], expected: tuple[str, str]
) -> None:
    got = job_outcome({"status": status}, pods)
    assert got.state == expected[0]
    assert expected[1] in got.message
    assert got.digest == (DIGEST if got.state == "succeeded" else "")


# --- source tokens and the route ------------------------------------------------------------


KEY = b"k" * 32


@pytest.mark.parametrize(
    ("build", "token_for", "now", "ok"),
    [
        pytest.param("b1", "b1", 1000, True, id="valid"),
        pytest.param("b1", "b2", 1000, False, id="other-build"),
        pytest.param("b1", "b1", 1000 + 601, False, id="expired"),
    ],
)  # fmt: skip
def test_source_tokens(build: str, token_for: str, now: float, ok: bool) -> None:
    token = sourcetokens.mint(KEY, token_for, now=1000)
    assert sourcetokens.verify(KEY, build, token, now=now) is ok
    assert not sourcetokens.verify(b"x" * 32, build, token, now=1000)
    assert not sourcetokens.verify(KEY, build, "garbage", now=1000)


def test_source_key_is_created_once(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "source-token-key"
    first = sourcetokens.ensure_key(path)
    assert sourcetokens.ensure_key(path) == first
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.fixture
def source_app(tmp_path: Path) -> FastAPI:
    (tmp_path / "abc123.tar.gz").write_bytes(b"\x1f\x8bsource")
    app = FastAPI()
    app.state.platform = SimpleNamespace(
        settings=SimpleNamespace(sources_dir=tmp_path), source_token_key=KEY, token="slw_admin"
    )
    app.dependency_overrides[sources_route.now] = lambda: 1000.0
    app.include_router(sources_route.router)
    return app


@pytest.mark.parametrize(
    ("build", "authorization", "status"),
    [
        pytest.param("abc123", "Bearer " + sourcetokens.mint(KEY, "abc123", now=1000), 200,
                     id="build-token"),
        pytest.param("abc123", "Bearer slw_admin", 200, id="admin-token"),
        pytest.param("abc123", "", 401, id="no-token"),
        pytest.param("abc123", "Bearer " + sourcetokens.mint(KEY, "abc124", now=1000), 401,
                     id="token-of-another-build"),
        pytest.param("abc123", "Bearer " + sourcetokens.mint(KEY, "abc123", now=0), 401,
                     id="expired"),
        pytest.param("abc999", "Bearer " + sourcetokens.mint(KEY, "abc999", now=1000), 404,
                     id="no-source-stored"),
        pytest.param("..%2Fx", "Bearer slw_admin", 404, id="not-a-build-id"),
    ],
)  # fmt: skip
def test_source_route(source_app: FastAPI, build: str, authorization: str, status: int) -> None:
    headers = {"Authorization": authorization} if authorization else {}

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=source_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://slipway") as client:
            return await client.get(f"/v1/builds/{build}/source", headers=headers)

    response = asyncio.run(get())
    assert response.status_code == status, response.text
    if status == 200:
        assert response.content == b"\x1f\x8bsource"
        assert response.headers["content-type"] == "application/gzip"


# --- ClusterBuilder against the stand-in ------------------------------------------------------


@pytest.fixture
def standin() -> Iterator[tuple[StandIn, KubeApi]]:
    for state, api in kubestandin.serve():
        yield state, KubeApi(api, namespace="apps", platform="prod")


def _tar(*files: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in files:
            info = tarfile.TarInfo(name)
            tar.addfile(info, io.BytesIO(b""))
    return buf.getvalue()


def _request(*files: str) -> BuildRequest:
    kind: Kind = "dockerfile" if "Dockerfile" in files else "pack"
    return BuildRequest(
        build_id="b1",
        source=_tar(*files),
        info=SourceInfo(files=files),
        repository="registry.example.com/hello",
        choice=BuilderChoice(kind=kind, reason="as chosen by choose_builder"),
    )


def _builder(api: KubeApi) -> ClusterBuilder:
    return ClusterBuilder(
        api,
        settings=SETTINGS,
        source_base_url="http://slipway.slipway.svc:8081/",
        token_key=KEY,
        clock=lambda: 1000.0,
        sleep=lambda _s: None,
    )


def _finish(state: StandIn, *, ok: bool) -> None:
    """What the Job controller and kubelet would leave behind (canned)."""

    def on_apply(obj: dict[str, Any]) -> None:
        if obj["kind"] != "Job":
            return
        condition = "Complete" if ok else "Failed"
        obj["status"] = {"conditions": [{"type": condition, "status": "True"}]}
        state.put(PODS, _pod(
            _terminated("build", 0 if ok else 1, DIGEST if ok else "", "" if ok else "Error"),
            init=[_terminated("fetch-source", 0)],
        ) | {"metadata": {"name": "slipway-build-b1-xyz",
                          "labels": {"slipway.dev/build": "b1"}}})  # fmt: skip

    state.on_apply = on_apply
    state.logs[("slipway-build-b1-xyz", "fetch-source")] = ["source: 4 KiB"]
    state.logs[("slipway-build-b1-xyz", "build")] = ["INFO[0000] Building stage", "step 2"]


def test_cluster_build_streams_logs_and_returns_the_digest(
    standin: tuple[StandIn, KubeApi],
) -> None:
    state, api = standin
    _finish(state, ok=True)
    lines: list[str] = []
    result = _builder(api).build(_request("Dockerfile", "app.py"), on_line=lines.append)
    assert result.image == f"registry.example.com/hello@{DIGEST}"
    assert lines == [
        "-----> Building in the cluster with kaniko: Job slipway-build-b1",
        "source: 4 KiB",
        "INFO[0000] Building stage",
        "step 2",
    ]
    (post,) = [r for r in state.requests if r.method == "POST"]
    assert post.path == JOBS  # created once (RBAC: create), never patched
    assert post.query["fieldManager"] == "slipway"
    token = {e["name"]: e["value"] for e in containers(post.body)["fetch-source"]["env"]}
    assert sourcetokens.verify(KEY, "b1", token["SOURCE_TOKEN"], now=1000)
    assert token["SOURCE_URL"] == "http://slipway.slipway.svc:8081/v1/builds/b1/source"
    follows = [r.query for r in state.requests if r.path.endswith("/log")]
    assert follows == [
        {"container": "fetch-source", "follow": "true"},
        {"container": "build", "follow": "true"},
    ]


def test_cluster_build_without_dockerfile_uses_buildpacks(standin: tuple[StandIn, KubeApi]) -> None:
    state, api = standin
    _finish(state, ok=True)
    lines: list[str] = []
    _builder(api).build(_request("project.toml", "main.go"), on_line=lines.append)
    assert "buildpacks (paketobuildpacks/builder-jammy-base)" in lines[0]


def test_cluster_build_failure_carries_the_log_tail(standin: tuple[StandIn, KubeApi]) -> None:
    state, api = standin
    _finish(state, ok=False)
    with pytest.raises(BuildFailed) as caught:
        _builder(api).build(_request("Dockerfile"), on_line=lambda _line: None)
    assert "the build failed with exit code 1 (Error)" in caught.value.message
    assert caught.value.log_tail.endswith("step 2")


def test_retried_build_follows_the_existing_job(standin: tuple[StandIn, KubeApi]) -> None:
    state, api = standin
    _finish(state, ok=True)
    _builder(api).build(_request("Dockerfile"), on_line=lambda _line: None)
    lines: list[str] = []
    result = _builder(api).build(_request("Dockerfile"), on_line=lines.append)
    assert result.image.endswith(DIGEST)
    assert "(the Job exists already: following it)" in lines[1]


def test_job_name_held_by_something_else(standin: tuple[StandIn, KubeApi]) -> None:
    state, api = standin
    state.put(JOBS, {"kind": "Job", "metadata": {"name": "slipway-build-b1", "labels": {}}})
    with pytest.raises(Conflict, match="not created by this Slipway"):
        _builder(api).build(_request("Dockerfile"), on_line=lambda _line: None)
