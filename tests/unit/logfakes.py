"""An in-process `LogReader` for the log tests: sources and their lines from a table, live lines
pushed by the test, and a record of every `open` (what a follow asked for, what was closed)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from pipeline.engines.logs import NS, Source

Key = tuple[str, str]  # (source id, stream)


@dataclass
class FakeLog:
    lines: list[tuple[int, str]]
    live: queue.Queue[tuple[int, str]] | None = None  # follow: then these, until closed
    closed: threading.Event = field(default_factory=threading.Event)

    def __iter__(self) -> Iterator[tuple[int, str]]:
        for line in self.lines:
            if self.closed.is_set():
                return
            yield line
        while self.live is not None and not self.closed.is_set():
            try:
                yield self.live.get(timeout=0.01)
            except queue.Empty:
                continue

    def close(self) -> None:
        self.closed.set()


@dataclass(frozen=True)
class Opened:
    key: Key
    follow: bool
    since: float | None
    tail: int | None
    log: FakeLog


class FakeReader:
    streams = ("stdout", "stderr")
    discover_every_s = 0.01

    def __init__(self, sources: list[Source], lines: dict[Key, list[tuple[int, str]]]) -> None:
        self.listed = list(sources)
        self.lines = lines
        self.live: dict[Key, queue.Queue[tuple[int, str]]] = {}
        self.opened: list[Opened] = []
        self._lock = threading.Lock()

    def sources(self, *, service: str, revision: str = "") -> list[Source]:
        with self._lock:
            return [s for s in self.listed if not revision or s.revision == revision]

    def add(self, source: Source) -> None:
        with self._lock:
            self.listed.append(source)

    def push(self, key: Key, line: tuple[int, str]) -> None:
        self.live_queue(key).put(line)

    def live_queue(self, key: Key) -> queue.Queue[tuple[int, str]]:
        with self._lock:
            return self.live.setdefault(key, queue.Queue())

    def open(
        self, source: Source, *, stream: str, follow: bool, since: float | None, tail: int | None
    ) -> FakeLog:
        key = (source.id, stream)
        lines = [x for x in self.lines.get(key, []) if since is None or x[0] >= since * NS]
        if tail is not None:
            lines = lines[len(lines) - tail :] if tail else []
        log = FakeLog(lines, live=self.live_queue(key) if follow else None)
        with self._lock:
            self.opened.append(Opened(key, follow, since, tail, log))
        return log

    def follows(self) -> list[Opened]:
        with self._lock:
            return [o for o in self.opened if o.follow]


def source(ident: str, *, revision: str = "hello-00001") -> Source:
    return Source(id=ident, revision=revision, instance=f"i-{ident}")
