"""`--env-file`: the `.env` grammar, read on the user's machine before a deploy is sent.

Its own grammar, not `core.pairs`: blank lines and `#` comments skipped, an `export ` prefix
dropped, one pair of matching quotes around the value stripped, spaces around the key and the
value trimmed. Each line becomes one `NAME=value` string, sent like an `--env` flag.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core.errors import InvalidInput


def read(path: Path) -> list[str]:
    """The file's `NAME=value` strings, in file order."""
    try:
        text = path.read_text()
    except OSError as e:
        raise InvalidInput(f"cannot read {path}: {e.strerror}") from e
    return parse(text, path=path)


def parse(text: str, *, path: Path) -> list[str]:
    """KEY=value lines; blank lines and # comments skipped; one pair of quotes stripped."""
    pairs = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"{path}:{number}: expected KEY=value, got {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        pairs.append(f"{key.strip()}={value}")
    return pairs
