"""In-cluster builds, decided purely: a build request becomes a Kubernetes Job, a Job's status
becomes an outcome.

Two Jobs, from the jinja2 templates in `buildtemplates/kubernetes/`:

- `buildkit-job.yaml.j2`: a Dockerfile build with BuildKit: `buildkitd` and `buildctl` (built from
  github.com/moby/buildkit by `scripts/tools buildkit`) in one container; the dockerfile frontend
  is built into buildkitd, so no frontend image is pulled.
- `cnb-job.yaml.j2`: a buildpacks build with the builder image's `/cnb/lifecycle/creator`.

Both get the source from an init container that downloads `GET <Slipway>/v1/builds/<id>/source`
with a short-lived token (`pipeline.build.sourcetokens`), push to the configured registry with the
credentials in a `kubernetes.io/dockerconfigjson` Secret (when there is one), and leave the pushed
digest in the build container's termination message, which is how Slipway learns what to pin the
revision to.

Two names for one registry: `registry` is where the nodes pull from (what revisions are pinned
to, and where the build images live), `build_registry` the same registry as build pods reach it.
They differ on a single machine, where the node pulls from 127.0.0.1:5000 but a pod's 127.0.0.1
is the pod (scripts/cluster forwards the pod network's gateway 10.244.0.1:5000 to it).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jinja2
import yaml

from pipeline.core import names
from pipeline.core.annotations import BUILD_LABEL, SERVICE_LABEL, k8s_labels
from pipeline.core.packagedata import buildtemplates_dir

FETCH_CONTAINER = "fetch-source"
BUILD_CONTAINER = "build"
BuildKind = Literal["buildkit", "cnb"]
# Slipway's build images under the registry, as scripts/cluster.d/build-images.sh pushes them.
BUILDKIT_IMAGE = "slipway/buildkit:v0.34.2"
FETCH_IMAGE = "slipway/busybox:1.35-bookworm"
CNB_BUILDER = "slipway/builder:bookworm"
CNB_RUN_IMAGE = "slipway/cnb-run:bookworm"
SECRET_ENV_PREFIX = "SLIPWAY_BUILD_SECRET_"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_REGISTRY_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]+)?$")
_SECRET_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True, kw_only=True)
class ClusterBuildSettings:
    namespace: str
    platform: str
    # host[:port][/path] the nodes pull from (SLIPWAY_REGISTRY); "" = every image named below.
    registry: str = ""
    build_registry: str = ""  # the same registry as build pods reach it; "" = `registry`
    registry_secret: str = "slipway-registry"  # optional: no Secret = anonymous pushes
    buildkit_image: str = ""  # "" = <registry>/slipway/buildkit:<version>
    fetch_image: str = ""  # "" = <registry>/slipway/busybox:1.35-bookworm
    cnb_builder: str = ""  # "" = <registry>/slipway/builder:bookworm
    cnb_run_image: str = ""  # "" = <build_registry>/slipway/cnb-run:bookworm
    cnb_user_id: int = 1000  # the builder image's CNB_USER_ID / CNB_GROUP_ID
    cnb_group_id: int = 1000
    insecure_registry: bool = False  # plain-HTTP registry (in-cluster, no TLS)
    # buildkitd under rootlesskit as uid 1000, not privileged: for clusters whose kernel lets the
    # setuid newuidmap write a user namespace's map (this sandbox's does not: docs/kubernetes.md).
    buildkit_rootless: bool = False
    deadline_s: int = 1800
    ttl_s: int = 3600  # finished Jobs (and their logs) are kept this long
    cpu: str = "500m"
    memory: str = "1Gi"
    memory_limit: str = "4Gi"
    # The folder with the Job templates: `kubernetes/` of the build templates.
    templates: Path = field(default_factory=lambda: buildtemplates_dir() / "kubernetes")

    @property
    def pods_registry(self) -> str:
        return self.build_registry or self.registry

    def image(self, which: Literal["buildkit", "fetch", "builder", "run"]) -> str:
        """The image a Job runs (or the creator builds on), named or under the registry."""
        named, default, registry = {
            "buildkit": (self.buildkit_image, BUILDKIT_IMAGE, self.registry),
            "fetch": (self.fetch_image, FETCH_IMAGE, self.registry),
            "builder": (self.cnb_builder, CNB_BUILDER, self.registry),
            "run": (self.cnb_run_image, CNB_RUN_IMAGE, self.pods_registry),
        }[which]
        if named:
            return named
        if not registry:
            raise ValueError(
                f"no {which} image for in-cluster builds: set SLIPWAY_REGISTRY (Slipway's build "
                f"images are pushed under it by scripts/cluster.d/build-images.sh) or name the "
                f"image (SLIPWAY_{_ENV_NAMES[which]})"
            )
        return f"{registry.rstrip('/')}/{default}"


_ENV_NAMES = {
    "buildkit": "BUILDKIT_IMAGE",
    "fetch": "FETCH_IMAGE",
    "builder": "CNB_BUILDER",
    "run": "CNB_RUN_IMAGE",
}


@dataclass(frozen=True, kw_only=True)
class JobOutcome:
    state: Literal["running", "succeeded", "failed"]
    message: str = ""
    digest: str = ""


def push_reference(reference: str, settings: ClusterBuildSettings) -> str:
    """`reference` (under the nodes' registry name) as build pods push it."""
    pull, push = settings.registry.rstrip("/"), settings.build_registry.rstrip("/")
    if push and pull and reference.startswith(pull + "/"):
        return push + reference[len(pull) :]
    return reference


def buildkitd_config(settings: ClusterBuildSettings) -> str:
    """buildkitd.toml: the plain-HTTP registry (pulls of FROM images; pushes say so in the
    output) and that registry as docker.io's mirror, so `FROM slipway/busybox:...` finds Slipway's
    base images there, as it does on the embedded engine (BuildKit falls back to docker.io)."""
    host = settings.pods_registry.split("/", 1)[0]
    if not host:
        return ""
    if not _REGISTRY_HOST.fullmatch(host):
        raise ValueError(f"{host!r} is not a registry host[:port]")
    lines = ['[registry."docker.io"]', f'  mirrors = ["{host}"]']
    if settings.insecure_registry:
        lines += [f'[registry."{host}"]', "  http = true", "  insecure = true"]
    return "\n".join(lines) + "\n"


def _dockerfile_parts(dockerfile: str) -> tuple[str, str]:
    """("/workspace/<dir>", "<name>") for buildctl's `--local dockerfile=` and `filename=`."""
    path = posixpath.normpath(dockerfile or "Dockerfile")
    if path.startswith(("/", "../")) or path in ("..", "."):
        raise ValueError(f"the Dockerfile path {dockerfile!r} leaves the source folder")
    folder, name = posixpath.split(path)
    return posixpath.join("/workspace", folder).rstrip("/"), name


def _environment(templates: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # YAML, not HTML; values go through `tojson`
        keep_trailing_newline=True,
    )


def render_build_job(
    *,
    kind: BuildKind,
    build_id: str,
    service: str,
    destination: str,
    source_url: str,
    source_token: str,
    settings: ClusterBuildSettings,
    dockerfile: str = "Dockerfile",
    secret_ids: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The Job manifest for one build; `destination` is `<registry>/<repo>:<tag>` as build pods
    push it. `secret_ids` are BuildKit secret ids whose values are the keys `<id>` of the Secret
    named like the Job (`render_build_secret`)."""
    registry = destination.split("/", 1)[0]
    if settings.insecure_registry and not _REGISTRY_HOST.fullmatch(registry):
        raise ValueError(f"{registry!r} is not a registry host[:port]")
    for secret in secret_ids:
        if not _SECRET_ID.fullmatch(secret):
            raise ValueError(f"build secret name {secret!r} is not a valid secret id")
    if secret_ids and kind != "buildkit":
        raise ValueError("build secrets reach Dockerfile builds only (BuildKit secret mounts)")
    context_dir, filename = _dockerfile_parts(dockerfile)
    name = names.build_job_name(build_id)
    values = {
        "name": name,
        "namespace": settings.namespace,
        "labels": k8s_labels(
            platform=settings.platform, **{SERVICE_LABEL: service, BUILD_LABEL: build_id}
        ),
        "destination": destination,
        "dockerfile_dir": context_dir,
        "dockerfile_name": filename,
        "source_url": source_url,
        "source_token": source_token,
        "insecure_registry": settings.insecure_registry,
        "rootless": settings.buildkit_rootless,
        "registry_host": registry,
        "buildkitd_toml": buildkitd_config(settings) if kind == "buildkit" else "",
        "buildkit_image": settings.image("buildkit") if kind == "buildkit" else "",
        "fetch_image": settings.image("fetch"),
        "cnb_builder": settings.image("builder") if kind == "cnb" else "",
        "cnb_run_image": settings.image("run") if kind == "cnb" else "",
        "secrets": [
            {
                "arg": f"id={s},env={SECRET_ENV_PREFIX}{i}",
                "env": f"{SECRET_ENV_PREFIX}{i}",
                "secret": name,
                "key": s,
            }
            for i, s in enumerate(secret_ids)
        ],
        **{
            key: getattr(settings, key)
            for key in (
                "registry_secret",
                "cnb_user_id",
                "cnb_group_id",
                "deadline_s",
                "ttl_s",
                "cpu",
                "memory",
                "memory_limit",
            )
        },
    }
    text = _environment(settings.templates).get_template(f"{kind}-job.yaml.j2").render(values)
    job = yaml.safe_load(text)
    if not isinstance(job, dict):  # pragma: no cover - the templates are ours
        raise ValueError(f"{kind}-job.yaml.j2 did not render a mapping")
    return job


def render_build_secret(
    *, build_id: str, service: str, settings: ClusterBuildSettings, secrets: dict[str, str]
) -> dict[str, Any]:
    """The Secret that carries a build's secrets to its Job (never the Job spec: anyone who
    reads Jobs would read them); named like the Job, deleted with it (ClusterBuilder)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": names.build_job_name(build_id),
            "namespace": settings.namespace,
            "labels": k8s_labels(
                platform=settings.platform, **{SERVICE_LABEL: service, BUILD_LABEL: build_id}
            ),
        },
        "type": "Opaque",
        "stringData": dict(secrets),
    }


def job_outcome(job: dict[str, Any], pods: list[dict[str, Any]]) -> JobOutcome:
    """Where a build Job is: running, or finished with a message (and the digest it pushed)."""
    status: dict[str, Any] = job.get("status") or {}
    conditions = {
        c.get("type"): c for c in status.get("conditions") or () if c.get("status") == "True"
    }
    pod = pods[-1] if pods else {}
    if "Complete" in conditions or status.get("succeeded"):
        digest = pushed_digest(pod)
        if not digest:
            return JobOutcome(
                state="failed",
                message="the build finished but reported no image digest (termination message "
                "of the build container); was the image pushed?",
            )
        return JobOutcome(state="succeeded", digest=digest)
    if "Failed" in conditions or status.get("failed"):
        failed = conditions.get("Failed") or {}
        reason = pod_failure(pod) or str(failed.get("message") or failed.get("reason") or "")
        return JobOutcome(state="failed", message=reason or "the build Job failed")
    stuck = pod_failure(pod, waiting_only=True)
    if stuck:
        return JobOutcome(state="failed", message=stuck)
    return JobOutcome(state="running")


def pushed_digest(pod: dict[str, Any]) -> str:
    for container in (pod.get("status") or {}).get("containerStatuses") or ():
        if container.get("name") != BUILD_CONTAINER:
            continue
        terminated = (container.get("state") or {}).get("terminated") or {}
        message = str(terminated.get("message") or "").strip()
        if _DIGEST.fullmatch(message):
            return message
    return ""


_PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName")


def pod_failure(pod: dict[str, Any], *, waiting_only: bool = False) -> str:
    """Why a build pod failed, in words; "" if it did not (yet)."""
    status: dict[str, Any] = pod.get("status") or {}
    for container in [
        *(status.get("initContainerStatuses") or ()),
        *(status.get("containerStatuses") or ()),
    ]:
        name = str(container.get("name") or "")
        state: dict[str, Any] = container.get("state") or {}
        waiting = state.get("waiting") or {}
        if waiting.get("reason") in _PULL_FAILURES:
            return (
                f"the cluster cannot pull the {name} image {container.get('image', '')!r} "
                f"({waiting['reason']}): {waiting.get('message', '')}".rstrip(": ")
            )
        terminated = state.get("terminated") or {}
        if not waiting_only and terminated and terminated.get("exitCode", 0) != 0:
            what = "fetching the source" if name == FETCH_CONTAINER else "the build"
            return f"{what} failed with exit code {terminated['exitCode']}" + (
                f" ({terminated['reason']})" if terminated.get("reason") else ""
            )
    return ""


def container_started(pod: dict[str, Any], container: str) -> bool:
    """True once the container runs or ran (its log can be read)."""
    status: dict[str, Any] = pod.get("status") or {}
    for entry in [
        *(status.get("initContainerStatuses") or ()),
        *(status.get("containerStatuses") or ()),
    ]:
        if entry.get("name") == container:
            state = entry.get("state") or {}
            return "running" in state or "terminated" in state
    return False
