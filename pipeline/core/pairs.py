"""`NAME=value` and `ENV=SECRET:KEY` strings, parsed once for the CLI, the API and annotations.

Names are POSIX environment names (letters, digits, `_`, not starting with a digit): a name
with `=`, a newline or a space would reach a container's environment or a build as something
other than what the user wrote.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pipeline.core.errors import InvalidInput

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def is_env_name(name: str) -> bool:
    return ENV_NAME.fullmatch(name) is not None


def parse_pairs(pairs: Iterable[str], *, what: str) -> tuple[tuple[str, str], ...]:
    """`NAME=value` strings as pairs, later ones winning; the value may hold anything."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not is_env_name(key):
            # The name only: the value may be a secret, and errors reach logs and terminals.
            shown = f"{key!r}=…" if sep else f"{key!r} (no '=')"
            raise InvalidInput(
                f"{what} {shown} must look like NAME=value, NAME made of letters, digits and _"
            )
        out[key] = value
    return tuple(out.items())


def parse_secret_ref(value: str) -> tuple[str, str, str]:
    """`ENV=SECRET:KEY` (an env var filled from key KEY of secret SECRET) as a triple."""
    env, _, ref = value.partition("=")
    secret, _, key = ref.partition(":")
    if not (is_env_name(env) and secret and key):
        raise InvalidInput(f"secret {value!r} must look like ENV=SECRET:KEY")
    return env, secret, key
