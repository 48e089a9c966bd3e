"""The console examples of README.md and docs/*.md, and how their shown output is matched.

A runnable example is a fenced block whose info string is `console`: lines starting with `$ `
are commands (a trailing backslash continues one onto the next line), the lines after a command
up to the next command are its expected output. A block right after an HTML comment
`<!-- not run: REASON -->` is parsed but not run; the reason is required.

Matching is line by line, like doctest's ELLIPSIS: `...` (or `…`) inside a line matches any text
within that line, and a line that is only `...` matches any number of lines (none included).
Runs of whitespace compare as one space (ports and ids change column widths), and trailing
whitespace and trailing empty lines are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

FENCE = "```"
PROMPT = "$ "
ANY_LINES = "..."
NOT_RUN = re.compile(r"<!--\s*not run:\s*(?P<reason>.*?)\s*-->")
WILDCARD = re.compile(r"\.\.\.|…")


class ExampleSyntaxError(ValueError):
    """A console block the runner cannot read (output before any command, no reason to skip)."""


@dataclass(frozen=True)
class Command:
    line: int  # 1-based, in the page
    command: str
    expected: tuple[str, ...]


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    commands: tuple[Command, ...]
    not_run: str  # the reason, or "" for a block that runs


def blocks(page: Path) -> list[Block]:
    """Every console block of `page`, in order."""
    lines = page.read_text().split("\n")
    found: list[Block] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == FENCE + "console":
            end = _fence_end(lines, i + 1, page)
            reason = _not_run_reason(lines, i, page)
            commands = _commands(lines[i + 1 : end], first_line=i + 2, page=page)
            found.append(Block(page=page, line=i + 1, commands=commands, not_run=reason))
            i = end
        i += 1
    return found


def _fence_end(lines: list[str], start: int, page: Path) -> int:
    for j in range(start, len(lines)):
        if lines[j].strip() == FENCE:
            return j
    raise ExampleSyntaxError(f"{page}:{start}: console block never closed")


def _not_run_reason(lines: list[str], fence: int, page: Path) -> str:
    """The reason of a `<!-- not run: ... -->` comment on the lines just above the fence."""
    j = fence - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    match = NOT_RUN.fullmatch(lines[j].strip()) if j >= 0 else None
    if match is None:
        return ""
    if not match["reason"]:
        raise ExampleSyntaxError(f"{page}:{j + 1}: `not run:` needs a reason")
    return match["reason"]


def _commands(body: list[str], *, first_line: int, page: Path) -> tuple[Command, ...]:
    commands: list[Command] = []
    i = 0
    while i < len(body):
        if not body[i].startswith(PROMPT):
            raise ExampleSyntaxError(
                f"{page}:{first_line + i}: output before any `$ ` command: {body[i]!r}"
            )
        start = i
        text = body[i][len(PROMPT) :]
        while text.endswith("\\") and i + 1 < len(body):
            i += 1
            text = text + "\n" + body[i]
        i += 1
        expected_start = i
        while i < len(body) and not body[i].startswith(PROMPT):
            i += 1
        expected = tuple(body[expected_start:i])
        commands.append(Command(line=first_line + start, command=text, expected=expected))
    return tuple(commands)


def _normal(line: str) -> str:
    return " ".join(line.split())


@cache
def _pattern(line: str) -> re.Pattern[str]:
    parts = [re.escape(part) for part in WILDCARD.split(_normal(line))]
    return re.compile(".*".join(parts))


def _trimmed(lines: list[str] | tuple[str, ...]) -> list[str]:
    out = [line.rstrip() for line in lines]
    while out and not out[-1]:
        out.pop()
    return out


def matches(expected: list[str] | tuple[str, ...], actual: list[str] | tuple[str, ...]) -> bool:
    """Whether `actual` output lines fit the `expected` lines (see the module docstring)."""
    want, got = _trimmed(expected), _trimmed(actual)
    # table[i][j]: want[i:] matches got[j:]; filled from the end (no recursion limit to hit).
    table = [[False] * (len(got) + 1) for _ in range(len(want) + 1)]
    table[len(want)][len(got)] = True
    for i in range(len(want) - 1, -1, -1):
        for j in range(len(got), -1, -1):
            if want[i].strip() == ANY_LINES:
                table[i][j] = table[i + 1][j] or (j < len(got) and table[i][j + 1])
            else:
                table[i][j] = (
                    j < len(got)
                    and _pattern(want[i]).fullmatch(_normal(got[j])) is not None
                    and table[i + 1][j + 1]
                )
    return table[0][0]


def explain(expected: list[str] | tuple[str, ...], actual: list[str] | tuple[str, ...]) -> str:
    """A readable explanation for a failed `matches`: both texts side by side."""
    want = "\n".join(f"    {line}" for line in _trimmed(expected)) or "    (nothing)"
    got = "\n".join(f"    {line}" for line in _trimmed(actual)) or "    (nothing)"
    return f"expected:\n{want}\ngot:\n{got}"
