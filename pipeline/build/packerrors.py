"""What a failed `pack build` means, in words that name the fix: output lines in, an error out.

`buildpacks` runs pack; when pack exits non-zero, the lines it kept (masked) come here: every
line that starts with `ERROR:` and the last lines. pack prints
its own errors on stderr (`ERROR: failed to build: …`) and the lifecycle's output on stdout, so the
last line is pack's summary, rarely the cause. The lifecycle's exit status (`failed with status
code: N`, the CNB platform spec's exit codes) says which phase failed; the match is on that status
or on pack's exact text (buildpacks/README.md lists what pack 0.40.9 prints in each case).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.core.errors import BuildFailed, SlipwayError, Unavailable
from pipeline.core.settings import DEFAULT_PACK_BUILDER

_STATUS = re.compile(r"failed with status code: (\d+)")
# Lifecycle exit codes (platform spec): 20 no buildpack group passed detection, 21 detection
# failed with an error, 51 a buildpack's build failed.
DETECT_FAILED = 20
DETECT_ERRORED = 21
BUILDPACK_FAILED = 51
NO_BUILDER_EXIT = 2  # pack itself: no --builder and no `pack config default-builder`
# Lines pack or the lifecycle add after the cause ("ERROR: failed to build: exit status 1").
_SUMMARY_PREFIX = "ERROR: failed to "
_WHERE_BUILDERS = (
    "the annotation slipway.dev/pack-builder, `[io.buildpacks] builder = ...` in project.toml, "
    "or SLIPWAY_PACK_BUILDER"
)
MAKE_BUILDER = "make it with ./scripts/builder (./scripts/up and ./scripts/test make it too)"
OWN_BUILDER_APPS = (
    "Slipway's builder builds a Python app (requirements.txt or pyproject.toml), a Node.js app "
    "(package.json), a static site (index.html at the root or in public/) or a Procfile with a "
    "`web:` line: add one of those, or a Dockerfile"
)


@dataclass(frozen=True, kw_only=True)
class PackRun:
    """What the failed build was given."""

    builder: str  # "" = pack's own default
    own_builder: bool  # Slipway's builder (scripts/builder makes it)
    local: bool  # made on this machine, never pulled (`--pull-policy never`)


def failure(
    run: PackRun, *, returncode: int, errors: Sequence[str], tail: Sequence[str]
) -> SlipwayError:
    """The error for pack's exit: `errors` are its `ERROR:` lines, `tail` its last lines."""
    lines = [*errors, *tail]
    text = "\n".join(lines)
    if "Cannot connect to the Docker daemon" in text:
        return Unavailable("the Docker Engine did not answer pack: is dockerd running?")
    message = _message(run, returncode=returncode, lines=lines, text=text)
    return BuildFailed(f"build failed: {message}", log_tail="\n".join(tail))


def _message(run: PackRun, *, returncode: int, lines: Sequence[str], text: str) -> str:
    builder = run.builder
    status = _status(text)
    if returncode == NO_BUILDER_EXIT and not builder:
        return f"pack has no builder configured: set one with {_WHERE_BUILDERS}"
    if "failed to fetch builder image" in text:
        if run.own_builder:
            return f"Slipway's builder image {builder} is not on this machine: {MAKE_BUILDER}"
        if run.local:
            return (
                f"the builder image {builder} is not on this machine, and Slipway never pulls "
                f"slipway/ images: name an existing builder with {_WHERE_BUILDERS} (Slipway's "
                f"own is {DEFAULT_PACK_BUILDER}: {MAKE_BUILDER})"
            )
        return (
            f"the builder image {builder} is not on this machine and could not be pulled: "
            f"load it into the Docker Engine (docker pull {builder}) or name another builder "
            f"with {_WHERE_BUILDERS} ({_pack_error(lines)})"
        )
    if "invalid run-image" in text:
        fix = f"remake the builder: {MAKE_BUILDER}" if run.local else "pull it"
        return f"the run image of {builder} is not on this machine ({_pack_error(lines)}): {fix}"
    if "fetching lifecycle image" in text:
        return (
            f"{builder} is not a trusted builder, so pack wants the separate lifecycle image, "
            f"which is not on this machine ({_pack_error(lines)}): if you trust {builder}, add "
            "it to SLIPWAY_PACK_TRUSTED_BUILDERS"
        )
    if "is too new. Maximum supported API version" in text:
        return (
            f"the lifecycle in {builder} speaks a newer Docker Engine API than this engine: "
            + ("remake the builder with ./scripts/builder (it pins DOCKER_API_VERSION)"
               if run.local else "use a builder made for this engine")
        )  # fmt: skip
    if status in (DETECT_FAILED, DETECT_ERRORED) or "No buildpack groups passed detection" in text:
        why = OWN_BUILDER_APPS if run.own_builder else (
            f"add the files its buildpacks look for (`pack builder inspect {builder}` lists "
            "them), or a Dockerfile"
        )  # fmt: skip
        errored = f" ({_cause(lines)})" if status == DETECT_ERRORED else ""
        return f"no buildpack of {builder or 'the builder'} detects this app{errored}: {why}"
    if status == BUILDPACK_FAILED:
        return f"a buildpack failed: {_cause(lines)}"
    return f"pack build exited {returncode}: {_pack_error(lines)}"


def _status(text: str) -> int | None:
    found = _STATUS.findall(text)
    return int(found[-1]) if found else None


def _cause(lines: Sequence[str]) -> str:
    """The buildpack's own ERROR line, else the last line before pack's summary."""
    for line in lines:
        if line.startswith("ERROR: ") and not line.startswith(_SUMMARY_PREFIX):
            return line.removeprefix("ERROR: ")
    before = [line.strip() for line in lines if not line.startswith(_SUMMARY_PREFIX)]
    return before[-1] if before else _pack_error(lines)


def _pack_error(lines: Sequence[str]) -> str:
    """pack's own error (its last ERROR line), else the last line."""
    errors = [line for line in lines if line.startswith("ERROR: ")]
    last = errors[-1] if errors else (lines[-1] if lines else "no output")
    return last.removeprefix("ERROR: ")
