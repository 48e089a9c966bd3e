"""In-cluster builds, the pure parts: request in -> BuildKit / CNB Job out (validated with
kubernetes-validate), registry names and images, Job status -> outcome, source tokens and the
source route. ClusterBuilder itself runs against the real cluster: tests/knative/test_builds.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from pipeline.api import sources_route
from pipeline.build import sourcetokens
from pipeline.knative.builds import (
    BUILDKIT_IMAGE,
    CNB_BUILDER,
    CNB_RUN_IMAGE,
    FETCH_IMAGE,
    ClusterBuildSettings,
    buildkitd_config,
    job_outcome,
    push_reference,
    render_build_job,
    render_build_secret,
)
from tests.unit.kubeschemas import validate_core

SETTINGS = ClusterBuildSettings(namespace="apps", platform="prod", registry="registry.example.com")
LOCAL = ClusterBuildSettings(
    namespace="apps", platform="prod", registry="127.0.0.1:5000", build_registry="10.244.0.1:5000",
    insecure_registry=True,
)  # fmt: skip
DIGEST = "sha256:" + "c0" * 32


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
        pytest.param("buildkit", {}, id="buildkit"),
        pytest.param("buildkit", {"dockerfile": "deploy/Dockerfile.prod", "settings": LOCAL,
                                  "destination": "10.244.0.1:5000/hello:build-3f9a61c2d0e4"},
                     id="buildkit-insecure-other-dockerfile"),
        pytest.param("buildkit", {"secret_ids": ("npmrc", "PIP_TOKEN")}, id="buildkit-secrets"),
        pytest.param("cnb", {}, id="cnb"),
        pytest.param("cnb", {"settings": LOCAL,
                             "destination": "10.244.0.1:5000/hello:build-3f9a61c2d0e4"},
                     id="cnb-insecure"),
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
    settings = overrides.get("settings", SETTINGS)
    destination = overrides.get("destination", "registry.example.com/hello:build-3f9a61c2d0e4")
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in build.get("env", ())}
    assert env["DESTINATION"] == destination
    registry = settings.registry
    if kind == "buildkit":
        assert build["image"] == f"{registry}/slipway/buildkit:v0.34.2"
        assert build["securityContext"] == {"privileged": True, "runAsUser": 0, "runAsGroup": 0}
        script = build["args"][0]
        assert "--frontend dockerfile.v0" in script
        assert "--metadata-file /tmp/metadata.json" in script
        assert "/dev/termination-log" in script
        folder, _, name = overrides.get("dockerfile", "Dockerfile").rpartition("/")
        assert env["DOCKERFILE_DIR"] == ("/workspace/" + folder).rstrip("/")
        assert env["DOCKERFILE_NAME"] == name
        assert env["INSECURE"] == (",registry.insecure=true" if settings.insecure_registry else "")
        host = (settings.build_registry or registry).split("/")[0]
        assert f'mirrors = ["{host}"]' in env["BUILDKITD_TOML"]
        assert (f'[registry."{host}"]' in env["BUILDKITD_TOML"]) is settings.insecure_registry
        secret_ids = overrides.get("secret_ids", ())
        assert env["BUILD_SECRETS"] == " ".join(
            f"id={s},env=SLIPWAY_BUILD_SECRET_{i}" for i, s in enumerate(secret_ids)
        )
        for i, secret_id in enumerate(secret_ids):  # values come from the Secret, never the spec
            assert env[f"SLIPWAY_BUILD_SECRET_{i}"] == {
                "secretKeyRef": {"name": "slipway-build-3f9a61c2d0e4", "key": secret_id}
            }
    else:
        assert build["image"] == f"{registry}/slipway/builder:bookworm"
        assert build["args"][0].startswith("/cnb/lifecycle/creator -no-color -app=/workspace")
        pods_registry = settings.build_registry or registry
        assert env["CNB_RUN_IMAGE"] == f"{pods_registry}/slipway/cnb-run:bookworm"
        assert env.get("CNB_INSECURE_REGISTRIES") == (
            "10.244.0.1:5000" if settings.insecure_registry else None
        )
        assert spec["template"]["spec"]["securityContext"]["fsGroup"] == 1000
    assert fetch["image"] == f"{registry}/slipway/busybox:1.35-bookworm"
    assert secret[0]["secret"]["optional"] is True


def test_a_rootless_buildkit_job_is_unprivileged_under_rootlesskit() -> None:
    """The option for clusters whose kernel lets newuidmap map a user namespace (this sandbox's
    does not, so the tier runs the privileged default): upstream's job.rootless.yaml settings."""
    rootless = dataclasses.replace(SETTINGS, buildkit_rootless=True)
    manifest = job("buildkit", settings=rootless)
    validate_core(manifest)
    build = containers(manifest)["build"]
    assert build["securityContext"] == {
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "seccompProfile": {"type": "Unconfined"},
        "appArmorProfile": {"type": "Unconfined"},
    }
    script = build["args"][0]
    assert "rootlesskit buildkitd --oci-worker-no-process-sandbox" in script
    env = {e["name"]: e.get("value") for e in build["env"]}
    assert env["BUILDKIT_HOST"] == "unix:///run/user/1000/buildkit/buildkitd.sock"
    state = [m for m in build["volumeMounts"] if m["name"] == "buildkit"]
    assert state[0]["mountPath"] == "/home/user/.local/share/buildkit"  # the image's user owns it


@pytest.mark.parametrize(
    ("settings", "reference", "expected"),
    [
        pytest.param(LOCAL, "127.0.0.1:5000/tabc/hello:build-1",
                     "10.244.0.1:5000/tabc/hello:build-1",
                     id="pods-reach-the-registry-elsewhere"),
        pytest.param(SETTINGS, "registry.example.com/hello:build-1",
                     "registry.example.com/hello:build-1", id="one-name"),
        pytest.param(LOCAL, "127.0.0.1:50001/hello:build-1", "127.0.0.1:50001/hello:build-1",
                     id="another-registry-is-left-alone"),
    ],
)  # fmt: skip
def test_push_reference(settings: ClusterBuildSettings, reference: str, expected: str) -> None:
    assert push_reference(reference, settings) == expected


def test_named_images_win_and_no_registry_is_a_clear_error() -> None:
    named = ClusterBuildSettings(
        namespace="a", platform="p", buildkit_image="ops/bk:1", fetch_image="ops/f:1",
        cnb_builder="ops/b:1", cnb_run_image="ops/r:1",
    )  # fmt: skip
    assert [named.image(w) for w in ("buildkit", "fetch", "builder", "run")] == [
        "ops/bk:1", "ops/f:1", "ops/b:1", "ops/r:1",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="set SLIPWAY_REGISTRY .* or name the image "
                                         r"\(SLIPWAY_BUILDKIT_IMAGE\)"):  # fmt: skip
        ClusterBuildSettings(namespace="a", platform="p").image("buildkit")


@pytest.mark.parametrize(
    "dockerfile",
    ["../Dockerfile", "/etc/passwd", "a/../../Dockerfile", "."],
)
def test_dockerfile_outside_the_source_is_refused(dockerfile: str) -> None:
    with pytest.raises(ValueError, match="leaves the source folder"):
        job("buildkit", dockerfile=dockerfile)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param({"secret_ids": ("a b",)}, "not a valid secret id", id="secret-id"),
        pytest.param({"secret_ids": ("x",), "kind": "cnb"}, "Dockerfile builds only",
                     id="secrets-with-buildpacks"),
        pytest.param({"settings": LOCAL, "destination": "evil host/x:1"},
                     "not a registry host", id="registry-host"),
    ],
)  # fmt: skip
def test_bad_build_input(overrides: dict[str, Any], message: str) -> None:
    kind = overrides.pop("kind", "buildkit")
    with pytest.raises(ValueError, match=message):
        job(kind, **overrides)


def test_buildkitd_config_refuses_a_host_that_is_not_one() -> None:
    with pytest.raises(ValueError, match="not a registry host"):
        buildkitd_config(ClusterBuildSettings(namespace="a", platform="p", registry='x"]\n[y'))


def test_build_secret_carries_the_values_only_there() -> None:
    secret = render_build_secret(
        build_id="3f9a61c2d0e4", service="hello", settings=SETTINGS, secrets={"npmrc": "s3cr3t"}
    )
    validate_core(secret)
    assert secret["metadata"]["name"] == "slipway-build-3f9a61c2d0e4"
    assert secret["stringData"] == {"npmrc": "s3cr3t"}
    assert "s3cr3t" not in str(job("buildkit", secret_ids=("npmrc",)))


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
        pytest.param({}, [_pod({"name": "build", "image": "127.0.0.1:5000/slipway/buildkit:v1",
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


def test_default_images_are_the_ones_the_cluster_script_pushes() -> None:
    """builds.py and scripts/cluster.d/build-images.sh name the same images (and the BuildKit
    tag is the version tools/buildkit pins)."""
    root = Path(__file__).resolve().parents[2]
    script = (root / "scripts" / "cluster.d" / "build-images.sh").read_text()
    for image in (FETCH_IMAGE, CNB_BUILDER, CNB_RUN_IMAGE):
        assert f"push_local_image {image}" in script or f" {image} " in script, image
    go_mod = (root / "tools" / "buildkit" / "go.mod").read_text()
    assert f"github.com/moby/buildkit {BUILDKIT_IMAGE.rsplit(':', 1)[1]}" in go_mod
    assert 'ref="slipway/buildkit:$ver"' in script
