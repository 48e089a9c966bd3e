"""ClusterBuilder: a `pipeline.build.builders.Builder` that builds as a Kubernetes Job.

Phases: render the Job (`builds`); create it (a retried build of the same id follows the Job
that exists instead of making a second); give a Dockerfile build's secrets to it in a Secret the
Job owns (so it goes with the Job; the pod waits for it); wait for its pod; stream the source
fetch's and then the build's log into `on_line` as the pod writes them; wait for the Job to
finish; return the pushed image pinned by the digest the build container left in its
termination message. A failure raises `BuildFailed` with what went wrong and the tail of the log.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Any

from pipeline.build import sourcetokens
from pipeline.build.builders import BuildRequest, BuildResult, LineSink
from pipeline.build.processes import BuildControl
from pipeline.core.annotations import BUILD_LABEL
from pipeline.core.errors import BuildFailed
from pipeline.knative.apply import JOBS, KubeApi
from pipeline.knative.builds import (
    BUILD_CONTAINER,
    FETCH_CONTAINER,
    BuildKind,
    ClusterBuildSettings,
    JobOutcome,
    container_started,
    job_outcome,
    push_reference,
    render_build_job,
    render_build_secret,
)

PROJECT_DESCRIPTOR = "project.toml"


class ClusterBuilder:
    name = "cluster"

    def __init__(
        self,
        api: KubeApi,
        *,
        settings: ClusterBuildSettings,
        source_base_url: str,
        token_key: bytes,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        poll_s: float = 1.0,
    ) -> None:
        self._api = api
        self._settings = settings
        self._source_base_url = source_base_url.rstrip("/")
        self._key = token_key
        self._clock = clock
        self._sleep = sleep
        self._poll_s = poll_s

    def kind_for(self, req: BuildRequest) -> BuildKind:
        """BuildKit for a Dockerfile; buildpacks otherwise (pack and template sources: in the
        cluster the CNB builder detects the language instead of Slipway's templates)."""
        return "buildkit" if req.choice.kind == "dockerfile" else "cnb"

    def build(
        self, req: BuildRequest, *, on_line: LineSink, control: BuildControl | None = None
    ) -> BuildResult:
        kind = self.kind_for(req)
        service = req.repository.rsplit("/", 1)[-1]
        secrets = dict(req.settings.secrets)
        if secrets and kind != "buildkit":
            raise BuildFailed(
                f"build {req.build_id}: build secrets reach Dockerfile builds only (BuildKit "
                "secret mounts); this source builds with buildpacks: add a Dockerfile or drop "
                "--build-secret"
            )
        job = render_build_job(
            kind=kind,
            build_id=req.build_id,
            service=service,
            destination=push_reference(f"{req.repository}:build-{req.build_id}", self._settings),
            source_url=f"{self._source_base_url}/v1/builds/{req.build_id}/source",
            source_token=sourcetokens.mint(self._key, req.build_id, now=self._clock()),
            settings=self._settings,
            dockerfile=req.choice.dockerfile,
            secret_ids=tuple(secrets),
        )
        name = job["metadata"]["name"]
        tool = (
            "BuildKit" if kind == "buildkit" else f"buildpacks ({self._settings.image('builder')})"
        )
        on_line(f"-----> Building in the cluster with {tool}: Job {name}")
        if not self._api.create(JOBS, job):
            on_line("       (the Job exists already: following it)")
        if secrets:
            self._give_secrets(req.build_id, service, name, secrets)
        tail: collections.deque[str] = collections.deque(maxlen=20)

        def sink(line: str) -> None:
            tail.append(line)
            on_line(line)

        outcome = self._follow(req.build_id, name, sink)
        if outcome.state != "succeeded":
            raise BuildFailed(
                f"build {req.build_id} failed: {outcome.message}", log_tail="\n".join(tail)
            )
        return BuildResult(image=f"{req.repository}@{outcome.digest}")

    def _give_secrets(self, build_id: str, service: str, job: str, values: dict[str, str]) -> None:
        created = self._api.get(JOBS, job) or {}
        secret = render_build_secret(
            build_id=build_id, service=service, settings=self._settings, secrets=values
        )
        secret["metadata"]["ownerReferences"] = [
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": job,
                "uid": (created.get("metadata") or {}).get("uid", ""),
            }
        ]
        self._api.create_secret(secret)

    def _follow(self, build_id: str, job_name: str, sink: LineSink) -> JobOutcome:
        deadline = self._clock() + self._settings.deadline_s + 60
        selector = f"{BUILD_LABEL}={build_id}"
        streamed: set[str] = set()
        while True:
            job = self._api.get(JOBS, job_name) or {}
            pods = self._api.list_pods(selector=selector)
            outcome = job_outcome(job, pods)
            self._stream(pods, streamed, sink)
            if outcome.state != "running":
                # The pods were read before the fetch's log was followed to its end: read them
                # again so the build's log (a failed step's own words) is not left out.
                self._stream(self._api.list_pods(selector=selector), streamed, sink)
                return outcome
            if self._clock() > deadline:
                return JobOutcome(
                    state="failed",
                    message=f"Job {job_name} did not finish within {self._settings.deadline_s}s",
                )
            self._sleep(self._poll_s)

    def _stream(self, pods: list[dict[str, Any]], streamed: set[str], sink: LineSink) -> None:
        """Follow the fetch's and then the build's log, each once, as far as the pod got."""
        pod = pods[-1] if pods else None
        for container in (FETCH_CONTAINER, BUILD_CONTAINER):
            if container in streamed:
                continue
            if pod is None or not container_started(pod, container):
                return
            for line in self._api.follow_log(_name(pod), container=container):
                sink(line)
            streamed.add(container)


def _name(pod: dict[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("name") or "")
