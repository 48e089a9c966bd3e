"""BuildKit on the embedded engine: which `docker` CLI builds, its argv and environment, and what
a failed build's last words mean. Pure, apart from looking for the CLI's file.

Where it sits: `dockerfile` (the Docker Engine builder) asks here how to start a build, runs it
through `processes`, and reads its output through `progress`.

Why Debian's 20.10 CLI: dockerd here is Debian's docker.io 20.10, whose CLI still builds with
BuildKit when `DOCKER_BUILDKIT=1` (from 23.0 on the CLI hands BuildKit builds to the buildx
plugin, which is not packaged for this Debian). Building docker/buildx from its Go module would
give a second toolchain to keep for the same BuildKit (dockerd's own), so the platform pins
`/usr/bin/docker` (installed by `docker.io`, as scripts/lib.sh does on a fresh machine) and never
relies on PATH order: a `/usr/local/bin/docker` of v23+ without buildx comes first on PATH on these
machines, and refuses BuildKit builds. Without `/usr/bin/docker`, `docker` from PATH is tried and
the buildx refusal is turned into an install hint.

The build context is a local folder, not a tar on stdin: for an uploaded tar, dockerd's BuildKit
neither honours `.dockerignore` nor stops the build when the CLI dies, while for a folder the CLI
applies `.dockerignore` (Docker's own rules) and a killed CLI cancels the solve (its RUN process
goes). The Dockerfile lives outside that folder, so a rendered template never lands in the image.

Secrets reach the build as `--secret id=NAME,env=SLIPWAY_BUILD_SECRET_<i>`: the value sits in the
CLI's environment under a name of Slipway's (never argv, never a user-chosen variable that could
redirect the CLI, such as DOCKER_HOST), and a RUN step reads it from `/run/secrets/NAME`; BuildKit
keeps secret mounts out of layers and history. Build args keep `--build-arg NAME` with the value
in the environment.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.errors import BuildFailed, InvalidInput, Unavailable
from pipeline.core.pairs import is_env_name

DEBIAN_DOCKER = Path("/usr/bin/docker")
SECRET_ENV_PREFIX = "SLIPWAY_BUILD_SECRET_"
INSTALL_DOCKER = (
    "the docker CLI is not installed: apt-get install docker.io (its CLI builds with BuildKit)"
)
NEEDS_BUILDX = (
    "the docker CLI at {cli} cannot build with BuildKit (from Docker 23 on that needs the buildx "
    "plugin): apt-get install docker.io, whose 20.10 CLI at /usr/bin/docker builds with BuildKit, "
    "or install docker-buildx"
)
_EXIT_CODE = re.compile(r"executor failed running \[(.*)\]: exit code: (\d+)$")
_SYNTAX = ("dockerfile parse error", "unknown instruction", "failed to create LLB definition")
_PREFIXES = (
    "failed to solve with frontend dockerfile.v0: ",
    "failed to create LLB definition: ",
    "failed to solve: ",
    "rpc error: code = Unknown desc = ",
    "error: ",
    "ERROR: ",
)


def docker_cli(*, debian: Path = DEBIAN_DOCKER) -> str:
    """Debian's CLI when it is there (it builds with BuildKit); else `docker` from PATH."""
    return str(debian) if os.access(debian, os.X_OK) else "docker"


def cache_id(*, daemon_id: str, repository: str) -> str:
    """The id of a service's cache mounts. Cache mounts are shared by id across every build on
    the engine, so each service gets its own, keyed by the engine's ID (which no build step can
    read): a hostile Dockerfile cannot name, and so fill, another service's package cache."""
    digest = hashlib.sha256(f"{daemon_id}\0{repository}".encode()).hexdigest()[:20]
    return f"slipway-{digest}"


@dataclass(frozen=True, kw_only=True)
class Invocation:
    argv: list[str]
    env: dict[str, str]


def build_invocation(
    *,
    cli: str,
    context: Path,
    dockerfile: Path,
    tag: str,
    iidfile: Path,
    build_args: Mapping[str, str],
    secrets: Mapping[str, str],
    base_env: Mapping[str, str],
) -> Invocation:
    """`docker build` with BuildKit and plain progress, values only in the environment."""
    for name in [*build_args, *secrets]:
        if not is_env_name(name):
            raise InvalidInput(f"build arg or secret name {name!r} is not a valid variable name")
    secret_env = {f"{SECRET_ENV_PREFIX}{i}": v for i, v in enumerate(secrets.values())}
    argv = [
        cli, "build", "--progress=plain", "--file", str(dockerfile), "--tag", tag,
        "--iidfile", str(iidfile),
        *(x for name in build_args for x in ("--build-arg", name)),
        *(x for i, name in enumerate(secrets)
          for x in ("--secret", f"id={name},env={SECRET_ENV_PREFIX}{i}")),
        str(context),
    ]  # fmt: skip
    # Slipway's own secret variables win over anything inherited; build args are the user's.
    env = {**base_env, **build_args, **secret_env, "DOCKER_BUILDKIT": "1"}
    return Invocation(argv=argv, env=env)


def failure_message(lines: Sequence[str], *, step: str, cli: str) -> str:
    """What the CLI's last lines say, as the user should read it: `step` is the failing step's
    label (``2/3 `RUN make` ``), "" when the build failed before any step ran."""
    if any("buildx component is missing" in line for line in lines):
        raise BuildFailed(NEEDS_BUILDX.format(cli=cli))
    if any("Cannot connect to the Docker daemon" in line for line in lines):
        raise Unavailable("Docker Engine did not answer: is dockerd running?")
    message = lines[-1].strip() if lines else "docker build failed"
    for prefix in _PREFIXES:
        message = message.removeprefix(prefix)
    if any(s in message for s in _SYNTAX):
        return f"the Dockerfile has a syntax error: {message}"
    exit_code = _EXIT_CODE.search(message)
    if exit_code and step:
        return f"step {step} returned a non-zero code: {exit_code.group(2)}"
    return f"step {step} failed: {message}" if step else message
