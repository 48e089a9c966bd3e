"""Cloud Native Buildpacks through the `pack` CLI, then the push to the registry.

`pack build` writes the image into the Docker Engine (no `--publish`), so the push is the same as
for Dockerfile builds. The builder comes from the service (`slipway.dev/pack-builder`), then the
source's project.toml (`[io.buildpacks] builder`), then Slipway's config (SLIPWAY_PACK_BUILDER);
with none of them, pack's own default builder applies (`pack config default-builder`), and pack
exits 2 when it has none. Secrets go to pack in an `--env-file` (mode 0600, deleted after), never
in argv; CNB build env is not part of the image.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
import tomllib
from collections.abc import Sequence
from pathlib import Path

import docker

from pipeline.build import dockerfile as dockerbuilds
from pipeline.build import processes as buildprocs
from pipeline.build.builders import BuildRequest, BuildResult, LineSink
from pipeline.build.masking import mask
from pipeline.build.processes import BuildControl
from pipeline.core.errors import BuildFailed

INSTALL_PACK = (
    "pack is not installed on the Slipway machine: install the pack CLI "
    "(https://buildpacks.io/docs/tools/pack/ — e.g. download the release tarball and put `pack` "
    "on the PATH of `slipway server`), or set SLIPWAY_PACK to its path; or build with a "
    "Dockerfile or a build template instead (slipway deploy --builder template:<name>)"
)
EXIT_CODES = {
    2: (
        "pack has no builder configured: set one with the annotation slipway.dev/pack-builder, "
        "`[io.buildpacks] builder = ...` in project.toml, or SLIPWAY_PACK_BUILDER"
    ),
}


def project_builder(project_toml: str) -> str:
    """`[io.buildpacks] builder` from a project.toml (descriptor 0.2), or ""."""
    try:
        doc = tomllib.loads(project_toml)
    except tomllib.TOMLDecodeError:
        return ""
    section = doc.get("io", {}).get("buildpacks", {})
    return str(section.get("builder", "")) if isinstance(section, dict) else ""


def pack_argv(
    *,
    pack: str,
    image: str,
    builder: str,
    path: Path,
    env: Sequence[tuple[str, str]],
    env_file: Path | None,
) -> list[str]:
    argv = [pack, "build", image]
    if builder:
        argv += ["--builder", builder]
    argv += ["--path", str(path), "--default-process", "web"]
    for key, value in env:
        argv += ["--env", f"{key}={value}"]
    if env_file is not None:
        argv += ["--env-file", str(env_file)]
    return argv


class PackBuilder:
    def __init__(
        self, client: docker.DockerClient, *, pack_bin: str = "pack", default_builder: str = ""
    ) -> None:
        self._client = client
        self._pack = pack_bin
        self._default_builder = default_builder

    def build(self, req: BuildRequest, *, on_line: LineSink, control: BuildControl) -> BuildResult:
        project = dockerbuilds.read_files(req.source, ["project.toml"]).get("project.toml", "")
        builder, where = next(
            (
                (b, w)
                for b, w in (
                    (req.settings.pack_builder, "the service"),
                    (project_builder(project), "project.toml"),
                    (self._default_builder, "SLIPWAY_PACK_BUILDER"),
                )
                if b
            ),
            ("", "pack's default"),
        )
        on_line(f"-----> Building with Cloud Native Buildpacks (pack), builder {builder or '-'} "
                f"(from {where})")  # fmt: skip
        secrets = [v for _, v in req.settings.secrets]
        with tempfile.TemporaryDirectory(prefix="slipway-pack-") as tmp:
            src = Path(tmp) / "src"
            with tarfile.open(fileobj=io.BytesIO(req.source), mode="r:*") as tar:
                tar.extractall(src, filter="data")
            env_file = None
            if req.settings.secrets:
                env_file = Path(tmp) / "secrets.env"
                fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.writelines(f"{k}={v}\n" for k, v in req.settings.secrets)
            argv = pack_argv(
                pack=self._pack, image=req.tag, builder=builder, path=src,
                env=req.settings.build_args, env_file=env_file,
            )  # fmt: skip
            done = buildprocs.run(
                argv,
                on_line=lambda line: on_line(mask(line, secrets)),
                control=control,
                missing=INSTALL_PACK,
            )
        if done.returncode != 0:
            tail = [mask(line, secrets) for line in done.tail]
            known = EXIT_CODES.get(done.returncode)
            last = tail[-1] if tail else ""
            message = known or f"pack build exited {done.returncode}: {last}"
            raise BuildFailed(f"build failed: {message}", log_tail="\n".join(tail))
        on_line(f"-----> Pushing {req.tag}")
        digest = dockerbuilds.push(
            self._client, req.repository, req.tag.rsplit(":", 1)[1], on_line=on_line
        )
        return BuildResult(image=f"{req.repository}@{digest}")
