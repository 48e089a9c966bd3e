"""Cloud Native Buildpacks through the real `pack` CLI, then the push to the registry.

`pack build` writes the image into the Docker Engine (no `--publish`), so the push is the same as
for Dockerfile builds. The builder comes from the service (`slipway.dev/pack-builder`), then the
source's project.toml (`[io.buildpacks] builder`), then Slipway's config (SLIPWAY_PACK_BUILDER,
by default Slipway's own `slipway/builder:bookworm`, made by scripts/builder).

Every build of a service runs as `pack build <repository> --tag <repository>:build-<id>`: pack keys
its cache volumes and the previous image on the image name, so a stable name is what lets a code
change reuse the dependency layer (a unique name per build makes every build cold). The cache
volume names also depend on PACK_VOLUME_KEY, derived from a secret in the data dir so it outlives
the process. Secrets go to pack in an `--env-file` (mode 0600, deleted after), never in argv;
CNB build env is not part of the image. Failures are explained by `packerrors`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import tempfile
import threading
import tomllib
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import docker

from pipeline.build import contexts
from pipeline.build import dockerfile as dockerbuilds
from pipeline.build import processes as buildprocs
from pipeline.build.builders import BuildRequest, BuildResult, LineSink
from pipeline.build.masking import mask
from pipeline.build.packerrors import PackRun, failure
from pipeline.build.processes import BuildControl
from pipeline.build.sourcetokens import ensure_key
from pipeline.core.settings import DEFAULT_PACK_BUILDER, Settings

INSTALL_PACK = (
    "pack is not installed on the Slipway machine (looked for {pack}): build it with "
    "`./scripts/tools pack` (./scripts/up does, and makes Slipway's builder), or set SLIPWAY_PACK "
    "to a pack binary; or build with a Dockerfile or a build template instead "
    "(slipway deploy --builder template:<name>)"
)
# Images under slipway/ are made on this machine (base images, the builder), never pulled.
LOCAL_PREFIX = "slipway/"
VOLUME_KEY_FILE = "pack-volume-key"
ERROR_LINES_KEPT = 40


def project_builder(project_toml: str) -> str:
    """`[io.buildpacks] builder` from a project.toml (descriptor 0.2), or ""."""
    try:
        doc = tomllib.loads(project_toml)
    except tomllib.TOMLDecodeError:
        return ""
    section = doc.get("io", {}).get("buildpacks", {})
    return str(section.get("builder", "")) if isinstance(section, dict) else ""


def pull_policy(builder: str) -> str:
    """`never` for a builder made here (there is no registry to pull it from), else pack's
    `if-not-present`, so a user with a network may name Paketo's or Heroku's builder."""
    return "never" if builder.startswith(LOCAL_PREFIX) else "if-not-present"


def pack_argv(
    *,
    pack: str,
    image: str,
    tag: str,
    builder: str,
    trust: bool,
    path: Path,
    env: Sequence[tuple[str, str]],
    env_file: Path | None,
) -> list[str]:
    argv = [pack, "build", image, "--tag", tag]
    if builder:
        argv += ["--builder", builder, "--pull-policy", pull_policy(builder)]
    if trust:
        argv.append("--trust-builder")
    argv += ["--path", str(path), "--default-process", "web"]
    for key, value in env:
        argv += ["--env", f"{key}={value}"]
    if env_file is not None:
        argv += ["--env-file", str(env_file)]
    return argv


def volume_key(data_dir: Path) -> str:
    """PACK_VOLUME_KEY: stable across restarts (the same cache volumes), unguessable, and never
    the stored secret itself."""
    secret = ensure_key(data_dir / VOLUME_KEY_FILE)
    return hmac.new(secret, b"pack-volume-key", hashlib.sha256).hexdigest()


class PackBuilder:
    def __init__(
        self,
        client: docker.DockerClient,
        *,
        pack_bin: str = "pack",
        default_builder: str = DEFAULT_PACK_BUILDER,
        trusted_builders: frozenset[str] = frozenset(),
        volume_key: str = "",
    ) -> None:
        self._client = client
        self._pack = pack_bin
        self._default_builder = default_builder
        self._trusted = trusted_builders | ({DEFAULT_PACK_BUILDER, default_builder} - {""})
        self._volume_key = volume_key
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    @classmethod
    def from_settings(cls, client: docker.DockerClient, settings: Settings) -> PackBuilder:
        return cls(
            client,
            pack_bin=settings.pack_bin,
            default_builder=settings.pack_builder,
            trusted_builders=settings.pack_trusted_builders,
            volume_key=volume_key(settings.data_dir),
        )

    def choose(self, req: BuildRequest) -> tuple[str, str]:
        """The builder and where it was named."""
        project = dockerbuilds.read_files(req.source, ["project.toml"]).get("project.toml", "")
        default_from = (
            "Slipway's default" if self._default_builder == DEFAULT_PACK_BUILDER
            else "SLIPWAY_PACK_BUILDER"
        )  # fmt: skip
        named = (
            (req.settings.pack_builder, "the service"),
            (project_builder(project), "project.toml"),
            (self._default_builder, default_from),
        )
        return next(((b, w) for b, w in named if b), ("", "pack's default"))

    def trusts(self, builder: str) -> bool:
        """Slipway's builder, the configured default and SLIPWAY_PACK_TRUSTED_BUILDERS: pack runs
        them as one container with the Docker socket; any other goes phase by phase in pack's
        lifecycle image (which must be pullable)."""
        return builder in self._trusted

    def build(self, req: BuildRequest, *, on_line: LineSink, control: BuildControl) -> BuildResult:
        builder, where = self.choose(req)
        trust = self.trusts(builder)
        on_line(f"-----> Building with Cloud Native Buildpacks (pack), builder {builder or '-'} "
                f"(from {where}{', trusted' if trust else ''})")  # fmt: skip
        secrets = [v for _, v in req.settings.secrets] + [self._volume_key]
        errors: deque[str] = deque(maxlen=ERROR_LINES_KEPT)

        def line(text: str) -> None:
            masked = mask(text, secrets)
            if masked.startswith("ERROR:"):
                errors.append(masked)
            on_line(masked)

        with (
            self._one_build_of(req.repository, on_line=on_line, control=control),
            tempfile.TemporaryDirectory(prefix="slipway-pack-") as tmp,
        ):
            src = contexts.unpack(req.source, Path(tmp) / "src")
            argv = pack_argv(
                pack=self._pack, image=req.repository, tag=req.tag, builder=builder, trust=trust,
                path=src, env=req.settings.build_args,
                env_file=_env_file(Path(tmp), req.settings.secrets),
            )  # fmt: skip
            done = buildprocs.run(
                argv, on_line=line, control=control, env=self._env(),
                missing=INSTALL_PACK.format(pack=self._pack),
            )  # fmt: skip
        if done.returncode != 0:
            run = PackRun(
                builder=builder, own_builder=builder == DEFAULT_PACK_BUILDER,
                local=builder.startswith(LOCAL_PREFIX),
            )  # fmt: skip
            tail = [mask(text, secrets) for text in done.tail]
            raise failure(run, returncode=done.returncode, errors=list(errors), tail=tail)
        on_line(f"-----> Pushing {req.tag}")
        digest = dockerbuilds.push(
            self._client, req.repository, req.tag.rsplit(":", 1)[1], on_line=on_line
        )
        return BuildResult(image=f"{req.repository}@{digest}")

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self._volume_key:
            env["PACK_VOLUME_KEY"] = self._volume_key
        return env

    @contextmanager
    def _one_build_of(
        self, repository: str, *, on_line: LineSink, control: BuildControl
    ) -> Iterator[None]:
        """Builds of one service share its cache volumes and previous image: one at a time."""
        with self._locks_guard:
            lock = self._locks.setdefault(repository, threading.Lock())
        if not lock.acquire(blocking=False):
            on_line("-----> Waiting for the previous pack build of this service (same cache)")
            while not lock.acquire(timeout=0.2):
                control.check(where=" while waiting for the previous pack build")
        try:
            yield
        finally:
            lock.release()


def _env_file(folder: Path, secrets: Sequence[tuple[str, str]]) -> Path | None:
    """The build secrets as pack's --env-file (0600, inside the build's temp dir), or None."""
    if not secrets:
        return None
    path = folder / "secrets.env"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.writelines(f"{k}={v}\n" for k, v in secrets)
    return path
