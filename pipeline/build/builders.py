"""Builds: which builder turns a source into an image, and what every builder is given.

    explicit setting (annotation slipway.dev/builder, `deploy --builder`)
      > a Dockerfile (path: slipway.dev/dockerfile, `--dockerfile`)
      > project.toml (Cloud Native Buildpacks via `pack`)
      > a build template whose detect rule matches (buildtemplates/<name>/detect.toml)
      > an error that lists what was looked for

`choose_builder` is pure: the file list and settings in, the decision (and why) out. The
builders themselves live in `dockerfile` (Dockerfile and templates) and `buildpacks`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from pipeline.build.processes import BuildControl
from pipeline.build.sources import SourceInfo
from pipeline.build.templates import Template, detect, find
from pipeline.core.annotations import (
    BASE_IMAGE_ANNOTATION,
    BUILD_ENV_ANNOTATION,
    BUILDER_ANNOTATION,
    DOCKERFILE_ANNOTATION,
    PACK_BUILDER_ANNOTATION,
)
from pipeline.core.errors import InvalidInput, InvalidSource
from pipeline.core.pairs import parse_pairs

LineSink = Callable[[str], None]
Kind = Literal["dockerfile", "pack", "template"]



@dataclass(frozen=True, kw_only=True)
class BuildSettings:
    """What the service (annotations) and the deploy request (flags) say about the build."""

    builder: str = ""  # "" | dockerfile | pack | template:<name>
    dockerfile: str = ""  # "" means Dockerfile
    build_args: tuple[tuple[str, str], ...] = ()
    secrets: tuple[tuple[str, str], ...] = ()  # never logged, never in image history
    pack_builder: str = ""
    base_image: str = ""  # template base override

    def over(self, service: BuildSettings) -> BuildSettings:
        """Request settings win; build args add to the service's build env."""
        return BuildSettings(
            builder=self.builder or service.builder,
            dockerfile=self.dockerfile or service.dockerfile,
            build_args=tuple({**dict(service.build_args), **dict(self.build_args)}.items()),
            secrets=tuple({**dict(service.secrets), **dict(self.secrets)}.items()),
            pack_builder=self.pack_builder or service.pack_builder,
            base_image=self.base_image or service.base_image,
        )


def service_settings(annotations: Mapping[str, str]) -> BuildSettings:
    """Build settings from the service's annotations; `build-env` is `K=V` per line or comma."""
    env_text = annotations.get(BUILD_ENV_ANNOTATION, "")
    pairs = [p.strip() for p in re.split(r"[\n,]", env_text) if p.strip()]
    return BuildSettings(
        builder=annotations.get(BUILDER_ANNOTATION, "").strip(),
        dockerfile=annotations.get(DOCKERFILE_ANNOTATION, "").strip(),
        build_args=parse_pairs(pairs, what=f"annotation {BUILD_ENV_ANNOTATION}: entry"),
        pack_builder=annotations.get(PACK_BUILDER_ANNOTATION, "").strip(),
        base_image=annotations.get(BASE_IMAGE_ANNOTATION, "").strip(),
    )


@dataclass(frozen=True, kw_only=True)
class BuilderChoice:
    kind: Kind
    reason: str  # said at the start of the build
    dockerfile: str = "Dockerfile"
    template: Template | None = None

    @property
    def name(self) -> str:
        """As stored on the build: dockerfile, pack, template:<name>."""
        return f"template:{self.template.name}" if self.template else self.kind


def choose_builder(
    files: Sequence[str], *, settings: BuildSettings, templates: Sequence[Template]
) -> BuilderChoice:
    dockerfile = settings.dockerfile or "Dockerfile"
    explicit = settings.builder
    present = set(files)
    if explicit:
        if explicit == "dockerfile":
            if dockerfile not in present:
                raise InvalidSource(
                    f"the service asks for the dockerfile builder but there is no {dockerfile} "
                    "in the source folder"
                )
            return BuilderChoice(
                kind="dockerfile", dockerfile=dockerfile, reason="set on the service"
            )
        if explicit == "pack":
            return BuilderChoice(kind="pack", reason="set on the service")
        if explicit.startswith("template:"):
            template = find(templates, explicit.removeprefix("template:"))
            return BuilderChoice(kind="template", template=template, reason="set on the service")
        known = ", ".join(["dockerfile", "pack", *(f"template:{t.name}" for t in templates)])
        raise InvalidInput(f"unknown builder {explicit!r}: choose one of {known}")
    if dockerfile in present:
        return BuilderChoice(kind="dockerfile", dockerfile=dockerfile, reason=f"{dockerfile} found")
    if settings.dockerfile:
        raise InvalidSource(
            f"the build asks for {dockerfile} as its Dockerfile, but the source has none"
        )
    if "project.toml" in present:
        return BuilderChoice(kind="pack", reason="project.toml found (Cloud Native Buildpacks)")
    found = detect(templates, files)
    if found is not None:
        template, matched = found
        return BuilderChoice(
            kind="template", template=template, reason=f"no Dockerfile; {matched} found"
        )
    looked = ", ".join(
        [dockerfile, "project.toml", *(f"{'/'.join(t.any_of)} ({t.name})" for t in templates)]
    )
    raise InvalidSource(
        f"no {dockerfile} in the source folder (looked for: {looked}) and no build template "
        "matched: add a Dockerfile, or the files of one of the build templates, or set the "
        "builder (slipway deploy --builder)"
    )


@dataclass(frozen=True, kw_only=True)
class BuildRequest:
    build_id: str
    source: bytes  # gzip tar
    info: SourceInfo
    repository: str  # registry/repo, without tag
    choice: BuilderChoice = field(
        default_factory=lambda: BuilderChoice(kind="dockerfile", reason="default")
    )
    settings: BuildSettings = field(default_factory=BuildSettings)

    @property
    def tag(self) -> str:
        return f"{self.repository}:build-{self.build_id}"


@dataclass(frozen=True, kw_only=True)
class BuildResult:
    image: str  # registry/repo@sha256:...


class Builder(Protocol):
    def build(
        self, req: BuildRequest, *, on_line: LineSink, control: BuildControl
    ) -> BuildResult: ...
