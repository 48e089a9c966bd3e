"""Dockerfile and template builds on the Docker Engine with BuildKit, then the push to the registry.

Where it sits: the deployer hands a `BuildRequest` to `DockerEngineBuilder.build`: the Dockerfile
is read (or a build template rendered, `templates`) and checked (`preflight`), the source unpacked
into a private context folder (`contexts`), `docker build` run with BuildKit (`buildkit` says which
CLI and why, `processes` runs it so a cancel or timeout kills it) and its plain progress turned
into log lines (`progress`); then the image is pushed with docker-py and its digest returned.

Secrets are BuildKit secret mounts, never build args: a template reads them in its install step,
a user's Dockerfile with `RUN --mount=type=secret,id=NAME` from `/run/secrets/NAME`, and a
Dockerfile that declares a secret as `ARG` is refused before the build. Mounts never reach a layer
or the history, and every output line is masked (`masking`, plain, percent and base64 forms).
What cannot leak that way can still be put there by hand (a build arg or ENV carrying the same
value), so the built image's history and config are still checked before the push, and an image
carrying a secret value is removed, not pushed.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions

from pipeline.build import basecatalog, buildkit, contexts, preflight
from pipeline.build import processes as buildprocs
from pipeline.build import templates as buildtemplates
from pipeline.build.builders import BuildRequest, BuildResult, LineSink
from pipeline.build.contexts import read_files
from pipeline.build.masking import mask
from pipeline.build.processes import BuildControl
from pipeline.build.progress import PlainProgress
from pipeline.core.errors import BuildFailed, InvalidSource, Unavailable

__all__ = ["DockerEngineBuilder", "push", "read_files"]

_DIGEST_IN_STATUS = re.compile(r"digest: (sha256:[0-9a-f]{64})")


class DockerEngineBuilder:
    """Builds a Dockerfile, or a template rendered into one, and pushes the image."""

    def __init__(
        self,
        client: docker.DockerClient,
        *,
        template_bases: dict[str, str] | None = None,
        docker_bin: str = "",
    ) -> None:
        self._client = client
        self._api = client.api
        self._bases = template_bases or {}
        self._docker = docker_bin or buildkit.docker_cli()
        self._daemon_id = ""

    def build(self, req: BuildRequest, *, on_line: LineSink, control: BuildControl) -> BuildResult:
        dockerfile = self._dockerfile(req, on_line=on_line)
        self._check(req, dockerfile)
        with tempfile.TemporaryDirectory(prefix="slipway-build-") as tmp:
            context = contexts.unpack(req.source, Path(tmp) / "context")
            path = contexts.write_dockerfile(dockerfile, folder=Path(tmp) / "dockerfile")
            self._build(req, context=context, dockerfile=path, on_line=on_line, control=control)
        self._check_image(req)
        on_line(f"-----> Pushing {req.tag}")
        digest = self._push(req.repository, req.tag.rsplit(":", 1)[1], on_line=on_line)
        return BuildResult(image=f"{req.repository}@{digest}")

    # the Dockerfile -----------------------------------------------------------------------------
    def _dockerfile(self, req: BuildRequest, *, on_line: LineSink) -> str:
        choice = req.choice
        if choice.template is None:
            text = read_files(req.source, [choice.dockerfile]).get(choice.dockerfile)
            if text is None:
                raise InvalidSource(f"{choice.dockerfile} is not a readable file in the source")
            on_line(f"-----> Building with {choice.dockerfile} (Docker Engine, BuildKit)")
            return text
        template = choice.template
        text = buildtemplates.render(
            template,
            files=req.info.files,
            contents=read_files(req.source, buildtemplates.wanted_files(req.info.files)),
            base=req.settings.base_image or self._bases.get(template.name, ""),
            args=[k for k, _ in req.settings.build_args],
            secrets=[k for k, _ in req.settings.secrets],
            cache_id=buildkit.cache_id(daemon_id=self._engine_id(), repository=req.repository),
        )
        on_line(f"-----> Building with build template {template.name} (Docker Engine, BuildKit)")
        for line in text.splitlines():
            on_line(f"       | {line}")
        return text

    def _engine_id(self) -> str:
        if not self._daemon_id:
            try:
                self._daemon_id = str(self._client.info().get("ID", ""))
            except (docker.errors.APIError, requests.exceptions.ConnectionError) as e:
                raise Unavailable(f"Docker Engine did not answer ({e}): is dockerd running?") from e
        return self._daemon_id

    def _check(self, req: BuildRequest, dockerfile: str) -> None:
        as_args = preflight.secrets_declared_as_args(
            dockerfile, secrets=[k for k, _ in req.settings.secrets]
        )
        if as_args:
            raise BuildFailed(f"build failed: {preflight.secret_arg_refusal(as_args)}")
        self._check_from(dockerfile, build_args=dict(req.settings.build_args))

    def _check_from(self, dockerfile: str, *, build_args: dict[str, str]) -> None:
        """No public registry is reachable: a missing base image fails now, naming the local
        ones, instead of after a pull that cannot succeed."""
        for ref in preflight.from_images(dockerfile, build_args=build_args):
            if preflight.has_registry_host(ref):
                continue  # a private registry may well be reachable: let the engine pull
            try:
                self._client.images.get(ref)
            except docker.errors.ImageNotFound:
                local = [r for r in basecatalog.CATALOG if self._exists(r)]
                raise BuildFailed(
                    f"FROM {ref}: no such image on this machine, and no public registry is "
                    f"reachable. Offline base images here: {', '.join(local) or 'none yet'} "
                    f"(make the others with `slipway images ensure --all`)"
                ) from None
            except (docker.errors.APIError, requests.exceptions.ConnectionError) as e:
                raise Unavailable(f"Docker Engine did not answer ({e}): is dockerd running?") from e

    def _exists(self, ref: str) -> bool:
        try:
            self._client.images.get(ref)
        except docker.errors.DockerException:
            return False
        return True

    # build --------------------------------------------------------------------------------------
    def _build(
        self,
        req: BuildRequest,
        *,
        context: Path,
        dockerfile: Path,
        on_line: LineSink,
        control: BuildControl,
    ) -> None:
        secrets = [v for _, v in req.settings.secrets]
        iidfile = dockerfile.parent.parent / "iid"  # beside, not inside, what the CLI sends
        run = buildkit.build_invocation(
            cli=self._docker, context=context, dockerfile=dockerfile, tag=req.tag,
            iidfile=iidfile, build_args=dict(req.settings.build_args),
            secrets=dict(req.settings.secrets), base_env=os.environ,
        )  # fmt: skip
        progress = PlainProgress()

        def line(text: str) -> None:
            for shown in progress.feed(mask(text, secrets)):
                on_line(shown)

        done = buildprocs.run(
            run.argv, on_line=line, control=control, env=run.env,
            missing=buildkit.INSTALL_DOCKER,
        )  # fmt: skip
        if done.returncode == 0 and iidfile.exists():
            return
        last = [mask(text, secrets) for text in done.tail]
        failed = progress.failed
        message = buildkit.failure_message(
            last, step=failed.title() if failed else "", cli=self._docker
        )
        raise BuildFailed(f"build failed: {message}", log_tail="\n".join(progress.tail()))

    def _check_image(self, req: BuildRequest) -> None:
        """The last line of defence: no secret value in the built image's history or config."""
        secrets = dict(req.settings.secrets)
        if not secrets:
            return
        try:
            history = self._api.history(req.tag)
            config = self._api.inspect_image(req.tag).get("Config") or {}
        except docker.errors.APIError as e:
            raise Unavailable(f"cannot inspect the built image: {e}") from e
        text = "\n".join(str(h.get("CreatedBy", "")) for h in history)
        text += "\n" + "\n".join(config.get("Env") or []) + "\n" + str(config.get("Labels") or "")
        leaked = [name for name, value in secrets.items() if value and value in text]
        if leaked:
            self._remove(req.tag)
            raise BuildFailed(
                f"the value of secret {', '.join(leaked)} appears in the image history or "
                "config (a build arg, ENV or LABEL carries it): pass it only as a build secret "
                f"and read it from /run/secrets/{leaked[0]} in a `RUN --mount=type=secret,"
                f"id={leaked[0]}` step; nothing was pushed"
            )

    def _remove(self, tag: str) -> None:
        with contextlib.suppress(docker.errors.APIError):
            self._api.remove_image(tag, force=True)

    # push ---------------------------------------------------------------------------------------
    def _push(self, repository: str, tag: str, *, on_line: LineSink) -> str:
        digest = ""
        try:
            for chunk in self._api.push(repository, tag=tag, stream=True, decode=True):
                if "error" in chunk:
                    raise Unavailable(
                        f"pushing {repository}:{tag} failed: {chunk['error']}: is the registry "
                        "running (./scripts/up) and SLIPWAY_REGISTRY right?"
                    )
                aux: dict[str, Any] = chunk.get("aux") or {}
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


def push(client: docker.DockerClient, repository: str, tag: str, *, on_line: LineSink) -> str:
    """Push an image that is already in the engine (pack builds it there)."""
    return DockerEngineBuilder(client, docker_bin="docker")._push(repository, tag, on_line=on_line)


def _explain(e: Exception) -> str:
    explanation = getattr(e, "explanation", None)
    return str(explanation or e)
