"""Reading a service's logs through a `LogReader`: the history merged in time order, then (with
follow) every line as it is written, including instances that start while following.

Where this sits: `api.logs` runs `stream_logs` on a thread of its own and hands each line to the
client; nothing here blocks an event loop or knows about HTTP. Blocking reads happen on one thread
per open stream; `stop` (set when the client goes away, or when `emit` says nobody listens) closes
every stream, which ends those threads.

History and follow are two reads per stream: the history (no follow) is read to its end and
merged across instances; each stream is then followed from the last line it showed, and lines at
or before that time are dropped, so nothing is lost or shown twice in between. Live lines are
passed on as they arrive: across instances that is time order to within the read latency.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass

from pipeline.core.errors import SlipwayError
from pipeline.core.logs import get as get_log
from pipeline.engines.logs import NS, LogLine, LogReader, OpenLog, Source, last, merge

# Receives each line; False means nobody listens any more (the stream stops).
Emit = Callable[[LogLine], bool]


@dataclass(frozen=True, kw_only=True)
class LogQuery:
    service: str
    revision: str = ""  # "" = every revision
    since: float | None = None  # epoch seconds
    tail: int | None = None  # the last N lines of the history (merged), None = all
    follow: bool = False


def stream_logs(
    reader: LogReader,
    query: LogQuery,
    *,
    emit: Emit,
    stop: threading.Event,
    clock: Callable[[], float] = time.time,
) -> None:
    """Emit the history, then (follow) live lines until `stop` is set. Blocks: run it on a
    thread. Engine errors while reading the history raise (a `SlipwayError`)."""
    started_ns = int(clock() * NS)
    sources = reader.sources(service=query.service, revision=query.revision)
    read = _history(reader, sources, query, emit=emit, stop=stop)
    if not query.follow or stop.is_set():
        return
    followers = _Followers(reader, emit=emit, stop=stop)
    try:
        for source in sources:
            for stream in reader.streams:
                after = read.get((source.id, stream), started_ns)
                followers.start(source, stream=stream, after_ns=after)
        known = {s.id for s in sources}
        while not stop.wait(reader.discover_every_s):
            for source in _discover(reader, query):
                if source.id not in known:
                    known.add(source.id)
                    for stream in reader.streams:  # new since we looked: all of it
                        followers.start(source, stream=stream, after_ns=None)
    finally:
        followers.close()


def _history(
    reader: LogReader, sources: list[Source], query: LogQuery, *, emit: Emit, stop: threading.Event
) -> dict[tuple[str, str], int]:
    """Emit the merged history; return the time of the last line read per (source, stream).
    Lines `tail` cut are read too: following from there shows neither them nor a line twice."""
    read: dict[tuple[str, str], int] = {}
    with ExitStack() as opened:
        streams: list[Iterator[LogLine]] = []
        for source in sources:
            for stream in reader.streams:
                log = reader.open(
                    source, stream=stream, follow=False, since=query.since, tail=query.tail
                )
                opened.callback(log.close)
                streams.append(_noting(lines_of(log, source=source, stream=stream), read,
                                       key=(source.id, stream)))  # fmt: skip
        for line in last(merge(streams), query.tail):
            if stop.is_set() or not emit(line):
                stop.set()
                break
    return read


def _noting(
    lines: Iterator[LogLine], read: dict[tuple[str, str], int], *, key: tuple[str, str]
) -> Iterator[LogLine]:
    for line in lines:
        read[key] = line.time_ns
        yield line


def _discover(reader: LogReader, query: LogQuery) -> list[Source]:
    try:
        return reader.sources(service=query.service, revision=query.revision)
    except SlipwayError as e:  # the engine hiccuped: keep following what is open, look again
        get_log(component="logs").warning("log_discovery_failed", error=e.message)
        return []


def lines_of(
    log: OpenLog, *, source: Source, stream: str, after_ns: int | None = None
) -> Iterator[LogLine]:
    """An open stream's lines as `LogLine`s, dropping those at or before `after_ns`."""
    for time_ns, text in log:
        if after_ns is not None and time_ns <= after_ns:
            continue
        yield LogLine(
            time_ns=time_ns,
            revision=source.revision,
            instance=source.instance,
            stream=stream,
            text=text,
        )


class _Followers:
    """One thread per followed stream; `close` ends them all (and any that start late)."""

    def __init__(self, reader: LogReader, *, emit: Emit, stop: threading.Event) -> None:
        self._reader = reader
        self._emit = emit
        self._stop = stop
        self._open: list[OpenLog] = []
        self._closed = False
        self._lock = threading.Lock()

    def start(self, source: Source, *, stream: str, after_ns: int | None) -> None:
        threading.Thread(
            target=self._follow,
            args=(source, stream, after_ns),
            name=f"log-{source.instance}-{stream}",
            daemon=True,
        ).start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            opened, self._open = self._open, []
        for log in opened:
            log.close()

    def _follow(self, source: Source, stream: str, after_ns: int | None) -> None:
        # `since` a microsecond early: the float cannot hold every nanosecond, and the lines at or
        # before `after_ns` are dropped by time anyway.
        since = None if after_ns is None else after_ns / NS - 1e-6
        try:
            log = self._reader.open(source, stream=stream, follow=True, since=since, tail=None)
        except SlipwayError as e:
            get_log(component="logs").warning(
                "log_follow_failed", source=source.id, error=e.message
            )
            return
        with self._lock:
            if self._closed:
                log.close()
                return
            self._open.append(log)
        try:
            for line in lines_of(log, source=source, stream=stream, after_ns=after_ns):
                if not self._emit(line):
                    self._stop.set()
                    return
        finally:
            log.close()
