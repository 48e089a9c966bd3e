"""`stream_logs` against an in-process reader: the merged history, then following without gaps or
repeats, new instances picked up, and every stream closed when the reader goes away."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from pipeline.core.errors import Unavailable
from pipeline.engines.logs import NS, LogLine, Source
from pipeline.engines.logstreams import LogQuery, stream_logs
from tests.unit.logfakes import FakeReader, source

T = 1_796_040_000 * NS
A, B = source("a"), source("b", revision="hello-00002")


def table() -> FakeReader:
    return FakeReader(
        [A, B],
        {
            ("a", "stdout"): [(T + 1, "a out 1"), (T + 4, "a out 4")],
            ("a", "stderr"): [(T + 2, "a err 2")],
            ("b", "stdout"): [(T + 3, "b out 3")],
        },
    )


def collect(
    reader: FakeReader, query: LogQuery, *, stop: threading.Event | None = None
) -> list[LogLine]:
    lines: list[LogLine] = []
    stream_logs(
        reader, query, emit=lambda x: lines.append(x) or True, stop=stop or threading.Event()
    )
    return lines


def texts(lines: list[LogLine]) -> list[str]:
    return [x.text for x in lines]


def test_history_is_every_stream_of_every_instance_merged_in_time_order() -> None:
    lines = collect(table(), LogQuery(service="hello"))
    assert texts(lines) == ["a out 1", "a err 2", "b out 3", "a out 4"]
    assert [(x.revision, x.instance, x.stream) for x in lines[1:3]] == [
        ("hello-00001", "i-a", "stderr"),
        ("hello-00002", "i-b", "stdout"),
    ]


def test_tail_is_the_last_lines_of_the_merged_history() -> None:
    reader = table()
    assert texts(collect(reader, LogQuery(service="hello", tail=2))) == ["b out 3", "a out 4"]
    assert {o.tail for o in reader.opened} == {2}, "each stream asked for its last 2 only"
    assert collect(table(), LogQuery(service="hello", tail=0)) == []


def test_since_and_revision_reach_the_reader() -> None:
    reader = table()
    lines = collect(reader, LogQuery(service="hello", revision="hello-00002", since=(T + 2) / NS))
    assert texts(lines) == ["b out 3"]
    assert {(o.key[0], o.since) for o in reader.opened} == {("b", (T + 2) / NS)}


def test_every_history_stream_is_closed() -> None:
    reader = table()
    collect(reader, LogQuery(service="hello"))
    assert all(o.log.closed.is_set() for o in reader.opened)


class Follow:
    """`stream_logs(follow=True)` on a thread, its lines collected."""

    def __init__(self, reader: FakeReader, query: LogQuery, *, now: float = T / NS + 10) -> None:
        self.lines: list[LogLine] = []
        self.stop = threading.Event()
        self.reader = reader
        self.thread = threading.Thread(
            target=stream_logs,
            args=(reader, query),
            kwargs={"emit": self._emit, "stop": self.stop, "clock": lambda: now},
            daemon=True,
        )
        self.emit_result = True
        self.thread.start()

    def _emit(self, line: LogLine) -> bool:
        self.lines.append(line)
        return self.emit_result

    def until(self, check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 5
        while not check():
            assert time.monotonic() < deadline, texts(self.lines)
            time.sleep(0.005)

    def end(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()


def test_follow_continues_each_stream_after_the_last_line_read_without_repeats() -> None:
    reader = table()
    f = Follow(reader, LogQuery(service="hello", follow=True))
    f.until(lambda: len(reader.follows()) == 4)
    since = {o.key: o.since for o in reader.follows()}
    assert since[("a", "stdout")] == pytest.approx((T + 4) / NS - 1e-6)
    # A stream with no history starts where the call began (the clock), not at its beginning.
    assert since[("b", "stderr")] == pytest.approx((T + 10 * NS) / NS - 1e-6)
    reader.push(("a", "stdout"), (T + 4, "a out 4"))  # the last line read, again: dropped
    reader.push(("a", "stdout"), (T + 5, "a out 5"))
    reader.push(("b", "stderr"), (T + 11 * NS, "b err live"))
    f.until(lambda: len(f.lines) == 6)
    f.end()
    assert texts(f.lines)[:4] == ["a out 1", "a err 2", "b out 3", "a out 4"]
    # Live lines of different streams come in the order they arrive.
    assert sorted(texts(f.lines)[4:]) == ["a out 5", "b err live"]


def test_a_tail_cut_line_is_not_shown_when_following() -> None:
    reader = table()
    f = Follow(reader, LogQuery(service="hello", tail=1, follow=True))
    f.until(lambda: len(reader.follows()) == 4)
    since = {o.key: o.since for o in reader.follows()}
    assert since[("a", "stderr")] == pytest.approx((T + 2) / NS - 1e-6), "read, cut by tail"
    f.end()
    assert texts(f.lines) == ["a out 4"]


def test_an_instance_that_starts_while_following_is_read_from_its_beginning() -> None:
    reader = table()
    f = Follow(reader, LogQuery(service="hello", follow=True))
    f.until(lambda: len(reader.follows()) == 4)
    new = source("c")
    reader.lines[("c", "stdout")] = [(T + 20, "c booted")]
    reader.add(new)
    f.until(lambda: "c booted" in texts(f.lines))
    f.end()
    assert {o.since for o in reader.follows() if o.key[0] == "c"} == {None}


def test_stopping_closes_every_followed_stream() -> None:
    reader = table()
    f = Follow(reader, LogQuery(service="hello", follow=True))
    f.until(lambda: len(reader.follows()) == 4)
    f.end()
    deadline = time.monotonic() + 5
    while not all(o.log.closed.is_set() for o in reader.opened):
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_a_reader_that_went_away_stops_the_follow() -> None:
    reader = table()
    f = Follow(reader, LogQuery(service="hello", follow=True))
    f.until(lambda: len(reader.follows()) == 4)
    f.emit_result = False  # the client is gone
    reader.push(("b", "stdout"), (T + 30 * NS, "nobody reads this"))
    f.thread.join(timeout=5)
    assert not f.thread.is_alive() and f.stop.is_set()
    assert all(o.log.closed.is_set() for o in reader.follows())


def test_history_stops_at_the_first_line_nobody_takes() -> None:
    stop = threading.Event()
    taken: list[LogLine] = []

    def emit(line: LogLine) -> bool:
        taken.append(line)
        return False

    stream_logs(table(), LogQuery(service="hello", follow=True), emit=emit, stop=stop)
    assert len(taken) == 1 and stop.is_set()


class Flaky(FakeReader):
    """Lists fine once, then fails once (Docker restarting), then fine again."""

    def __init__(self, sources: list[Source], lines: dict[tuple[str, str], list[tuple[int, str]]]):
        super().__init__(sources, lines)
        self.calls = 0

    def sources(self, *, service: str, revision: str = "") -> list[Source]:
        self.calls += 1
        if self.calls == 2:
            raise Unavailable("Docker Engine is not reachable")
        return super().sources(service=service, revision=revision)


def test_a_failed_look_for_new_instances_does_not_end_the_follow() -> None:
    reader = Flaky([A], {("a", "stdout"): [(T + 1, "a out 1")]})
    f = Follow(reader, LogQuery(service="hello", follow=True))
    f.until(lambda: reader.calls > 3)
    reader.push(("a", "stdout"), (T + 20 * NS, "still here"))
    f.until(lambda: "still here" in texts(f.lines))
    f.end()
