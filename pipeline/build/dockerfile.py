"""Dockerfile and template builds on the Docker Engine, then the push to the registry.

Builds run through the `docker` CLI (classic builder) rather than docker-py's streaming call, so
that a cancel or timeout can kill them (`buildprocs`); the engine drops a build whose client went
away. Build args and secrets reach the CLI through its environment (`--build-arg NAME` without a
value), never its argv. This engine has no BuildKit (`docker buildx` is not packaged here), so
secrets are build args kept out of the final image: templates declare them only in the `deps`
stage, and after every build the final image's history and config are checked for secret values;
a build that leaked one is refused before anything is pushed.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions

from pipeline.build import basecatalog
from pipeline.build import processes as buildprocs
from pipeline.build import templates as buildtemplates
from pipeline.build.builders import BuildRequest, BuildResult, LineSink
from pipeline.build.masking import mask
from pipeline.build.processes import BuildControl
from pipeline.core.errors import BuildFailed, InvalidSource, Unavailable

_DIGEST_IN_STATUS = re.compile(r"digest: (sha256:[0-9a-f]{64})")
_STEP = re.compile(r"^Step (\d+/\d+) : (.*)$")
_FROM = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", re.IGNORECASE)
_ARG = re.compile(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(\S*))?", re.IGNORECASE)
_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")
_LEGACY_BANNER = (
    "DEPRECATED: The legacy builder",
    "Install the buildx component",
    "https://docs.docker.com/go/buildx",
)
INSTALL_DOCKER = "the docker CLI is not installed: apt-get install docker.io"


def from_images(dockerfile: str, *, build_args: dict[str, str]) -> list[str]:
    """The images the Dockerfile builds FROM (not its own stages, not scratch), args expanded."""
    args: dict[str, str] = {}
    stages: set[str] = set()
    images: list[str] = []
    seen_from = False
    for line in dockerfile.splitlines():
        arg = _ARG.match(line)
        if arg and not seen_from:
            name, default = arg.groups()
            args[name] = build_args.get(name, default or "")
            continue
        m = _FROM.match(line)
        if not m:
            continue
        seen_from = True
        ref = _VAR.sub(lambda v: args.get(v.group(1), ""), m.group(1))
        if ref.lower() != "scratch" and ref not in stages and ref not in images:
            images.append(ref)
        if m.group(2):
            stages.add(m.group(2))
    return images


def has_registry_host(reference: str) -> bool:
    first, sep, _ = reference.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost")


def with_files(source: bytes, extra: dict[str, str]) -> bytes:
    """The gzip tar with `extra` files added (replacing same-named ones)."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(source), mode="r:*") as src,
        tarfile.open(fileobj=out, mode="w:gz", compresslevel=1) as dst,
    ):
        for member in src.getmembers():
            if _norm(member.name) in extra:
                continue
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        for name, text in extra.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            dst.addfile(info, io.BytesIO(data))
    return out.getvalue()


def read_files(source: bytes, names: Sequence[str], *, limit: int = 1024 * 1024) -> dict[str, str]:
    """Small text files from the archive (for detect rules and rendering)."""
    wanted = set(names)
    found: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(source), mode="r:*") as tar:
        for member in tar.getmembers():
            name = _norm(member.name)
            if name in wanted and member.isfile() and member.size <= limit:
                fh = tar.extractfile(member)
                if fh is not None:
                    found[name] = fh.read().decode("utf-8", errors="replace")
    return found


def _norm(name: str) -> str:
    return "/".join(p for p in name.split("/") if p not in ("", "."))


class DockerEngineBuilder:
    """Builds a Dockerfile, or a template rendered into one, and pushes the image."""

    def __init__(
        self,
        client: docker.DockerClient,
        *,
        template_bases: dict[str, str] | None = None,
        docker_bin: str = "docker",
    ) -> None:
        self._client = client
        self._api = client.api
        self._bases = template_bases or {}
        self._docker = docker_bin

    def build(self, req: BuildRequest, *, on_line: LineSink, control: BuildControl) -> BuildResult:
        context, dockerfile_path, dockerfile = self._context(req, on_line=on_line)
        build_args = dict(req.settings.build_args)
        self._check_from(dockerfile, build_args=build_args)
        self._build(req, context=context, dockerfile=dockerfile_path, on_line=on_line,
                    control=control)  # fmt: skip
        self._check_secrets(req)
        on_line(f"-----> Pushing {req.tag}")
        digest = self._push(req.repository, req.tag.rsplit(":", 1)[1], on_line=on_line)
        return BuildResult(image=f"{req.repository}@{digest}")

    # context ------------------------------------------------------------------------------------
    def _context(self, req: BuildRequest, *, on_line: LineSink) -> tuple[bytes, str, str]:
        choice = req.choice
        if choice.template is None:
            text = read_files(req.source, [choice.dockerfile]).get(choice.dockerfile)
            if text is None:
                raise InvalidSource(f"{choice.dockerfile} is not a readable file in the source")
            on_line(f"-----> Building with {choice.dockerfile} (Docker Engine)")
            return req.source, choice.dockerfile, text
        template = choice.template
        contents = read_files(req.source, buildtemplates.wanted_files(req.info.files))
        base = req.settings.base_image or self._bases.get(template.name, "")
        names = [k for k, _ in req.settings.build_args] + [k for k, _ in req.settings.secrets]
        text = buildtemplates.render(
            template, files=req.info.files, contents=contents, base=base, args=names
        )
        on_line(f"-----> Building with build template {template.name} (Docker Engine)")
        for line in text.splitlines():
            on_line(f"       | {line}")
        ignore = read_files(req.source, [".dockerignore"]).get(".dockerignore", "")
        ignore = ignore.rstrip("\n") + f"\n{buildtemplates.RENDERED_PATH}\n.dockerignore\n"
        extra = {buildtemplates.RENDERED_PATH: text, ".dockerignore": ignore}
        return with_files(req.source, extra), buildtemplates.RENDERED_PATH, text

    def _check_from(self, dockerfile: str, *, build_args: dict[str, str]) -> None:
        """No public registry is reachable: a missing base image fails now, naming the local
        ones, instead of after a pull that cannot succeed."""
        for ref in from_images(dockerfile, build_args=build_args):
            if has_registry_host(ref):
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
        context: bytes,
        dockerfile: str,
        on_line: LineSink,
        control: BuildControl,
    ) -> None:
        secrets = [v for _, v in req.settings.secrets]
        args = {**dict(req.settings.build_args), **dict(req.settings.secrets)}
        with tempfile.TemporaryDirectory(prefix="slipway-build-") as tmp:
            iidfile = Path(tmp) / "iid"
            argv = [
                self._docker, "build", "--force-rm", "--file", dockerfile, "--tag", req.tag,
                "--iidfile", str(iidfile),
                *(x for name in args for x in ("--build-arg", name)),
                "-",
            ]  # fmt: skip
            # Values travel in the environment: `--build-arg NAME` takes them from there.
            env = {**os.environ, **args, "DOCKER_BUILDKIT": "0"}
            step = [""]

            def line(text: str) -> None:
                if text.strip().startswith(_LEGACY_BANNER):
                    return  # the CLI's advice to install buildx, which this engine cannot use
                text = mask(text, secrets)
                m = _STEP.fullmatch(text)
                if m:
                    step[0] = f"step {m.group(1)} `{m.group(2)}`"
                on_line(text)

            done = buildprocs.run(
                argv, on_line=line, control=control, env=env, stdin=context, missing=INSTALL_DOCKER
            )
            if done.returncode != 0 or not iidfile.exists():
                raise _failure(done.tail, step=step[0], secrets=secrets)

    def _check_secrets(self, req: BuildRequest) -> None:
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
                f"secret {', '.join(leaked)} appears in the image history or config: use "
                "secrets only in a build stage the final image does not start FROM (e.g. "
                "`FROM base AS deps` + `ARG NAME` there, then COPY --from=deps); nothing was pushed"
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
    return DockerEngineBuilder(client)._push(repository, tag, on_line=on_line)


def _failure(tail: list[str], *, step: str, secrets: Sequence[str]) -> BuildFailed:
    lines = [mask(line, secrets) for line in tail]
    message = lines[-1] if lines else "docker build failed"
    for prefix in ("Error response from daemon: ", "ERROR: "):
        message = message.removeprefix(prefix)
    if "dockerfile parse error" in message or "unknown instruction" in message:
        what = f"the Dockerfile has a syntax error: {message}"
    elif "Cannot connect to the Docker daemon" in message:
        raise Unavailable("Docker Engine did not answer: is dockerd running?")
    else:
        what = f"{step} failed: {message}" if step else message
    return BuildFailed(f"build failed: {what}", log_tail="\n".join(lines))


def _explain(e: Exception) -> str:
    explanation = getattr(e, "explanation", None)
    return str(explanation or e)
