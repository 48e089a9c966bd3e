"""In-cluster builds, decided purely: a build request becomes a Kubernetes Job, a Job's status
becomes an outcome.

Two Jobs, from the jinja2 templates in `buildtemplates/kubernetes/`:

- `kaniko-job.yaml.j2`: a Dockerfile build with kaniko (`gcr.io/kaniko-project/executor`).
- `cnb-job.yaml.j2`: a buildpacks build with the builder image's `/cnb/lifecycle/creator`.

Both get the source from an init container that downloads `GET <Slipway>/v1/builds/<id>/source`
with a short-lived token (`pipeline.build.sourcetokens`), push to the configured registry with the
credentials in a `kubernetes.io/dockerconfigjson` Secret, and leave the pushed digest in the build
container's termination message, which is how Slipway learns what to pin the revision to.
"""

from __future__ import annotations

import re
import shlex
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
BuildKind = Literal["kaniko", "cnb"]
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_REGISTRY_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]+)?$")


@dataclass(frozen=True, kw_only=True)
class ClusterBuildSettings:
    namespace: str
    platform: str
    registry_secret: str = "slipway-registry"
    kaniko_image: str = "gcr.io/kaniko-project/executor:v1.23.2"
    fetch_image: str = "curlimages/curl:8.11.1"
    cnb_builder: str = "paketobuildpacks/builder-jammy-base"
    cnb_user_id: int = 1000  # the builder image's CNB_USER_ID / CNB_GROUP_ID
    cnb_group_id: int = 1000
    insecure_registry: bool = False  # plain-HTTP registry (in-cluster, no TLS)
    deadline_s: int = 1800
    ttl_s: int = 3600  # finished Jobs (and their logs) are kept this long
    cpu: str = "500m"
    memory: str = "1Gi"
    memory_limit: str = "4Gi"
    # The folder with the Job templates: `kubernetes/` of the build templates.
    templates: Path = field(default_factory=lambda: buildtemplates_dir() / "kubernetes")


@dataclass(frozen=True, kw_only=True)
class JobOutcome:
    state: Literal["running", "succeeded", "failed"]
    message: str = ""
    digest: str = ""


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
) -> dict[str, Any]:
    """The Job manifest for one build; `destination` is `<registry>/<repo>:<tag>`."""
    registry = destination.split("/", 1)[0]
    insecure_flag = ""
    if settings.insecure_registry:
        if not _REGISTRY_HOST.fullmatch(registry):
            raise ValueError(f"{registry!r} is not a registry host[:port]")
        insecure_flag = shlex.quote(f"-insecure-registry={registry}") + " "
    values = {
        "name": names.build_job_name(build_id),
        "namespace": settings.namespace,
        "labels": k8s_labels(
            platform=settings.platform, **{SERVICE_LABEL: service, BUILD_LABEL: build_id}
        ),
        "destination": destination,
        "dockerfile": dockerfile,
        "source_url": source_url,
        "source_token": source_token,
        "insecure_registry": settings.insecure_registry,
        "insecure_flag": insecure_flag,
        **{
            key: getattr(settings, key)
            for key in (
                "registry_secret",
                "kaniko_image",
                "fetch_image",
                "cnb_builder",
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
