"""App logs as values: one line of an instance's stdout or stderr, the time grammar, the merge.

Where this sits: the engines read raw log lines (`engines.dockerlogs`, `knative.logs`) through
the narrow `LogReader` below; `engines.logstreams` drives a reader (history, then follow);
`api.logs` streams the lines as NDJSON and `cli.logs` prints them. Everything here is pure: a
line's time is integer nanoseconds since the epoch (both Docker and Kubernetes stamp lines in
RFC 3339 with nanoseconds, and a float would lose the last digits), and merging sorted sources
is `heapq.merge` keyed on it.
"""

from __future__ import annotations

import calendar
import heapq
import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from pipeline.core.errors import InvalidInput

NS = 10**9
# A line longer than this is cut (with a marker): one runaway write must not fill the stream.
LINE_MAX = 16 * 1024
CUT = " [cut]"

_STAMP = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True, kw_only=True)
class LogLine:
    """One line an instance wrote, with where and when."""

    time_ns: int
    revision: str
    instance: str  # as users see it: `i-ab12` (Docker), the pod name (Knative)
    stream: str  # "stdout", "stderr", or "output" where the runtime does not keep them apart
    text: str


@dataclass(frozen=True, kw_only=True)
class Source:
    """One instance whose log can be read (running, or stopped and not yet removed)."""

    id: str  # the engine's id: container id, pod name
    revision: str
    instance: str  # display name, as in `LogLine.instance`
    container: str = ""  # which container of a pod (Knative); "" for a Docker instance


class OpenLog(Protocol):
    """One open log stream: (time_ns, text) lines, closable from another thread."""

    def __iter__(self) -> Iterator[tuple[int, str]]: ...

    def close(self) -> None: ...


class LogReader(Protocol):
    """What an engine offers to read its instances' logs."""

    @property
    def streams(self) -> tuple[str, ...]:
        """The streams each instance has, read one `open` each."""
        ...

    @property
    def discover_every_s(self) -> float:
        """How often a follow looks for new instances."""
        ...

    def sources(self, *, service: str, revision: str = "") -> list[Source]: ...

    def open(
        self, source: Source, *, stream: str, follow: bool, since: float | None, tail: int | None
    ) -> OpenLog:
        """The log of one stream; `since` in epoch seconds (inclusive), `tail` last lines."""
        ...


# --- time ---------------------------------------------------------------------------------------


def parse_time(text: str) -> int:
    """RFC 3339 (fraction optional, up to nanoseconds) -> nanoseconds since the epoch."""
    m = _STAMP.match(text)
    if not m:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    offset = "+00:00" if m.group(3) == "Z" else m.group(3)
    moment = datetime.fromisoformat(m.group(1) + offset)
    seconds = calendar.timegm(moment.utctimetuple())
    return seconds * NS + int((m.group(2) or "").ljust(9, "0"))


def format_time(time_ns: int) -> str:
    """Nanoseconds -> `2026-11-30T12:00:00.123456789Z`, always nine digits (so it sorts)."""
    seconds, fraction = divmod(time_ns, NS)
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{fraction:09d}Z"


def parse_since(text: str, *, now: float) -> float:
    """`--since`: a duration back from now (`10m`, `1h30m`, `45s`) or an RFC 3339 time, as epoch
    seconds."""
    value = text.strip()
    if _STAMP.match(value):
        return parse_time(value) / NS
    parts = _DURATION_PART.findall(value)
    if value and "".join(n + u for n, u in parts) == value:
        return now - sum(float(n) * _UNIT_S[u] for n, u in parts)
    raise InvalidInput(
        f"invalid since {text!r}: use a duration back from now such as 10m, 1h30m or 45s, or "
        "an RFC 3339 time such as 2026-11-30T12:00:00Z"
    )


def check_tail(tail: int | None) -> int | None:
    if tail is not None and tail < 0:
        raise InvalidInput(f"invalid tail {tail}: the number of last lines to show, 0 or more")
    return tail


# --- lines ----------------------------------------------------------------------------------------


def split_stamp(raw: str) -> tuple[int, str] | None:
    """`<RFC 3339 time> <text>` (what Docker and Kubernetes write with timestamps on)."""
    stamp, _, text = raw.partition(" ")
    try:
        return parse_time(stamp), text
    except ValueError:
        return None


def clip(text: str) -> str:
    return text if len(text) <= LINE_MAX else text[:LINE_MAX] + CUT


def merge(sources: Iterable[Iterable[LogLine]]) -> Iterator[LogLine]:
    """Lines of several sources, each in time order, as one stream in time order; lines of equal
    time keep the order of their sources. Lazy: reads each source only as far as needed."""
    return heapq.merge(*sources, key=lambda line: line.time_ns)


def last(lines: Iterable[LogLine], n: int | None) -> Iterable[LogLine]:
    """The last `n` lines (all of them for None), holding at most `n` in memory."""
    if n is None:
        return lines
    return deque(lines, maxlen=n) if n > 0 else ()
