"""Builders: turn an uploaded source archive into an image in the registry, pinned by digest.

The spine has one builder, the Dockerfile builder on the Docker Engine (docker-py's streaming
build, then push). Every line of output goes to `on_line` as it is produced, which the deployment
writes to the build log and to the client. Docker's errors are mapped here, where they enter.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import docker
import docker.errors
import requests.exceptions

from pipeline.errors import BuildFailed, InvalidSource, Unavailable
from pipeline.sources import SourceInfo

LineSink = Callable[[str], None]
_DIGEST_IN_STATUS = re.compile(r"digest: (sha256:[0-9a-f]{64})")


@dataclass(frozen=True, kw_only=True)
class BuildRequest:
    build_id: str
    source: bytes  # gzip tar
    info: SourceInfo
    repository: str  # registry/repo, without tag
    dockerfile: str = "Dockerfile"
    build_args: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, kw_only=True)
class BuildResult:
    image: str  # registry/repo@sha256:...


class Builder(Protocol):
    name: str

    def build(self, req: BuildRequest, *, on_line: LineSink) -> BuildResult: ...


def choose_builder(info: SourceInfo, *, dockerfile: str = "Dockerfile") -> str:
    """Builder choice, reported at the start of the build. Templates and pack come later."""
    if info.has(dockerfile):
        return "dockerfile"
    raise InvalidSource(
        f"no {dockerfile} in the source folder (looked for: {dockerfile}): add a Dockerfile "
        "that starts your app on $PORT; build templates for Python, Node and static sites "
        "are not available yet"
    )


class DockerfileBuilder:
    name = "dockerfile"

    def __init__(self, client: docker.DockerClient) -> None:
        self._api = client.api

    def build(self, req: BuildRequest, *, on_line: LineSink) -> BuildResult:
        tag = f"{req.repository}:build-{req.build_id}"
        on_line(f"-----> Building with {req.dockerfile} (Docker Engine)")
        image_id = self._build(req, tag=tag, on_line=on_line)
        on_line(f"-----> Built {image_id[:19]}, pushing {tag}")
        digest = self._push(req.repository, tag.rsplit(":", 1)[1], on_line=on_line)
        return BuildResult(image=f"{req.repository}@{digest}")

    def _build(self, req: BuildRequest, *, tag: str, on_line: LineSink) -> str:
        image_id = ""
        tail: list[str] = []
        try:
            stream = self._api.build(
                fileobj=io.BytesIO(req.source),
                custom_context=True,
                encoding="gzip",
                tag=tag,
                dockerfile=req.dockerfile,
                buildargs=dict(req.build_args),
                rm=True,
                forcerm=True,
                pull=False,  # base images are local (no public registry is reachable)
                decode=True,
            )
            for chunk in stream:
                if "error" in chunk:
                    message = str(chunk["error"]).strip()
                    on_line(message)
                    raise BuildFailed(
                        f"build failed: {message}", log_tail="\n".join([*tail[-20:], message])
                    )
                text = str(chunk.get("stream", "") or chunk.get("status", ""))
                for line in text.splitlines():
                    if line.strip():
                        tail.append(line)
                        on_line(line)
                aux: dict[str, Any] = chunk.get("aux") or {}
                if "ID" in aux:
                    image_id = str(aux["ID"])
        except (docker.errors.APIError, docker.errors.BuildError) as e:
            raise BuildFailed(f"build failed: {_explain(e)}", log_tail="\n".join(tail[-20:])) from e
        except requests.exceptions.ConnectionError as e:
            raise Unavailable(
                "Docker Engine went away during the build: is dockerd running?"
            ) from e
        if not image_id:
            raise BuildFailed("build produced no image", log_tail="\n".join(tail[-20:]))
        return image_id

    def _push(self, repository: str, tag: str, *, on_line: LineSink) -> str:
        digest = ""
        try:
            for chunk in self._api.push(repository, tag=tag, stream=True, decode=True):
                if "error" in chunk:
                    raise Unavailable(
                        f"pushing {repository}:{tag} failed: {chunk['error']}: is the registry "
                        "running (./scripts/up) and SLIPWAY_REGISTRY right?"
                    )
                aux = chunk.get("aux") or {}
                if "Digest" in aux:
                    digest = str(aux["Digest"])
                m = _DIGEST_IN_STATUS.search(str(chunk.get("status", "")))
                if m:
                    digest = m.group(1)
        except docker.errors.APIError as e:
            raise Unavailable(f"pushing {repository}:{tag} failed: {_explain(e)}") from e
        except requests.exceptions.ConnectionError as e:
            raise Unavailable("Docker Engine went away during the push: is dockerd running?") from e
        if not digest:
            raise Unavailable(f"the registry returned no digest for {repository}:{tag}")
        return digest


def _explain(e: Exception) -> str:
    explanation = getattr(e, "explanation", None)
    return str(explanation or e)
