"""Checks on a Dockerfile's text before anything is built: base images that cannot be there, and
build secrets asked for the old way.

Where it sits: `dockerfile` runs these after reading (or rendering) the Dockerfile and before
starting `docker build`. Pure: the text and the settings in, the findings out.

Secrets reach BuildKit builds as secret mounts only (`RUN --mount=type=secret,id=NAME`, read from
`/run/secrets/NAME`): a build arg's value lands in the image history of every stage that uses it.
A Dockerfile that still declares `ARG NAME` for a secret would silently build with an empty value,
so it is refused with the way to write it instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_FROM = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", re.IGNORECASE)
_ARG = re.compile(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(\S*))?", re.IGNORECASE)
_ARGS = re.compile(r"^\s*ARG\s+(.+)$", re.IGNORECASE)
_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


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


def secrets_declared_as_args(dockerfile: str, *, secrets: Iterable[str]) -> list[str]:
    """The secret names the Dockerfile declares with ARG (`ARG A B=1` declares A and B)."""
    wanted = set(secrets)
    found: list[str] = []
    for line in dockerfile.splitlines():
        m = _ARGS.match(line)
        if not m:
            continue
        for word in m.group(1).split():
            name = word.split("=", 1)[0]
            if name in wanted and name not in found:
                found.append(name)
    return found


def secret_arg_refusal(names: list[str]) -> str:
    """Why a Dockerfile with `ARG <secret>` is refused, and how to read the secret instead."""
    first = names[0]
    return (
        f"the Dockerfile declares `ARG {first}`, but {', '.join(names)} "
        f"{'is a build secret' if len(names) == 1 else 'are build secrets'}: secrets never "
        "travel as build args (their values would be in the image history). Read it from a "
        f"secret mount instead: `RUN --mount=type=secret,id={first} "
        f'{first}="$(cat /run/secrets/{first})" your-command` (the file exists only during that '
        f"step), and remove `ARG {first}`; nothing was built"
    )
