"""App and request logs, the pure parts: the time grammar, `--since`, the merge, Docker's frames,
HAProxy's request line, and the per-service request rings."""

from __future__ import annotations

import socket
import stat
import time
from pathlib import Path

import pytest

from pipeline.core.errors import InvalidInput
from pipeline.dataplane import requestlogs
from pipeline.dataplane.model import Site
from pipeline.dataplane.requestlogs import RequestLine, RequestLogs
from pipeline.engines.dockerlogs import frame_lines
from pipeline.engines.logs import (
    CUT,
    LINE_MAX,
    NS,
    LogLine,
    check_tail,
    format_time,
    last,
    merge,
    parse_since,
    parse_time,
    split_stamp,
)

T0 = 1_796_040_000 * NS  # 2026-11-30T12:00:00Z


@pytest.mark.parametrize(
    ("text", "want"),
    [
        pytest.param("2026-11-30T12:00:00Z", T0, id="whole-seconds"),
        pytest.param("2026-11-30T12:00:00.123456789Z", T0 + 123_456_789, id="nanoseconds"),
        pytest.param("2026-11-30T12:00:00.5Z", T0 + 500_000_000, id="trimmed-fraction"),
        pytest.param("2026-11-30T13:00:00.25+01:00", T0 + 250_000_000, id="offset"),
        pytest.param("2026-11-30T11:30:00-00:30", T0, id="negative-offset"),
    ],
)
def test_parse_time(text: str, want: int) -> None:
    assert parse_time(text) == want


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("2026-11-30 12:00:00Z", id="space-not-T"),
        pytest.param("2026-11-30T12:00:00", id="no-zone"),
        pytest.param("2026-11-30T12:00:00.1234567890Z", id="ten-digit-fraction"),
        pytest.param("hello", id="not-a-time"),
    ],
)
def test_parse_time_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


def test_format_time_has_nine_digits_and_round_trips() -> None:
    assert format_time(T0 + 5) == "2026-11-30T12:00:00.000000005Z"
    assert parse_time(format_time(T0 + 123_000_000)) == T0 + 123_000_000


NOW = 1_796_040_000.0


@pytest.mark.parametrize(
    ("text", "want"),
    [
        pytest.param("10m", NOW - 600, id="minutes"),
        pytest.param("45s", NOW - 45, id="seconds"),
        pytest.param("1h30m", NOW - 5400, id="hours-and-minutes"),
        pytest.param("2d", NOW - 172_800, id="days"),
        pytest.param("1.5h", NOW - 5400, id="fraction"),
        pytest.param("250ms", NOW - 0.25, id="milliseconds"),
        pytest.param(" 5m ", NOW - 300, id="spaces"),
        pytest.param("2026-11-30T11:00:00Z", NOW - 3600, id="rfc3339"),
    ],
)
def test_parse_since(text: str, want: float) -> None:
    assert parse_since(text, now=NOW) == pytest.approx(want)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("10", id="no-unit"),
        pytest.param("10x", id="unknown-unit"),
        pytest.param("m10", id="unit-first"),
        pytest.param("10m junk", id="trailing-junk"),
        pytest.param("-5m", id="negative"),
        pytest.param("yesterday", id="words"),
    ],
)
def test_parse_since_refuses_with_examples(text: str) -> None:
    with pytest.raises(InvalidInput, match="10m"):
        parse_since(text, now=NOW)


def test_check_tail() -> None:
    assert check_tail(None) is None and check_tail(0) == 0 and check_tail(5) == 5
    with pytest.raises(InvalidInput, match="0 or more"):
        check_tail(-1)


def line(t: int, text: str, *, instance: str = "i-a", stream: str = "stdout") -> LogLine:
    return LogLine(time_ns=t, revision="hello-00001", instance=instance, stream=stream, text=text)


A1, A3 = line(1, "a1"), line(3, "a3")
B2, B3 = line(2, "b2", instance="i-b"), line(3, "b3", instance="i-b")
E2 = line(2, "e2", stream="stderr")


@pytest.mark.parametrize(
    ("sources", "want"),
    [
        pytest.param([[A1, A3], [B2]], [A1, B2, A3], id="interleaved"),
        pytest.param([[A1, A3], [B2, B3]], [A1, B2, A3, B3], id="equal-times-keep-source-order"),
        pytest.param([[B2, B3], [A1, A3]], [A1, B2, B3, A3], id="source-order-decides-ties"),
        pytest.param([[], [A1], []], [A1], id="empty-sources"),
        pytest.param([], [], id="no-sources"),
        pytest.param([[A1, A3], [E2]], [A1, E2, A3], id="stdout-and-stderr"),
    ],
)
def test_merge(sources: list[list[LogLine]], want: list[LogLine]) -> None:
    assert list(merge(sources)) == want


def test_merge_reads_lazily() -> None:
    def endless() -> object:
        t = 10
        while True:
            t += 1
            yield line(t, "later")

    merged = merge([[A1, A3], endless()])  # type: ignore[list-item]
    assert [next(merged).text for _ in range(3)] == ["a1", "a3", "later"]


@pytest.mark.parametrize(
    ("n", "want"),
    [
        pytest.param(None, [A1, B2, A3], id="all"),
        pytest.param(2, [B2, A3], id="last-two"),
        pytest.param(0, [], id="none"),
        pytest.param(9, [A1, B2, A3], id="more-than-there-are"),
    ],
)
def test_last(n: int | None, want: list[LogLine]) -> None:
    assert list(last(iter([A1, B2, A3]), n)) == want


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        pytest.param("2026-11-30T12:00:00Z hello", (T0, "hello"), id="line"),
        pytest.param("2026-11-30T12:00:00Z ", (T0, ""), id="empty-line"),
        pytest.param("2026-11-30T12:00:00Z  two  spaces", (T0, " two  spaces"), id="spaces-kept"),
        pytest.param("hello world", None, id="no-stamp"),
    ],
)
def test_split_stamp(raw: str, want: tuple[int, str] | None) -> None:
    assert split_stamp(raw) == want


S = "2026-11-30T12:00:00.000000001Z "
S2 = "2026-11-30T12:00:00.000000002Z "


@pytest.mark.parametrize(
    ("frames", "want"),
    [
        pytest.param([S + "a\n", S2 + "b\n"], [(T0 + 1, "a"), (T0 + 2, "b")], id="lines"),
        pytest.param([S + "a\r\n"], [(T0 + 1, "a")], id="crlf"),
        pytest.param([S + "par", S2 + "tial\n"], [(T0 + 1, "partial")], id="split-message"),
        pytest.param([S + "no end"], [(T0 + 1, "no end")], id="last-without-newline"),
        pytest.param([S + "a\n", "what\n"], [(T0 + 1, "a"), (T0 + 1, "what")], id="no-stamp"),
        pytest.param(["what\n"], [(0, "what")], id="no-stamp-first"),
    ],
)
def test_frame_lines(frames: list[str], want: list[tuple[int, str]]) -> None:
    encoded = [f.encode("utf-8") for f in frames]
    assert list(frame_lines(encoded)) == want


def test_frame_lines_cuts_a_runaway_message() -> None:
    frames = [(S + "x" * 16384).encode()] * 10 + [(S + "end\n").encode()]
    ((_, text),) = list(frame_lines(frames))
    assert len(text) == LINE_MAX + len(CUT) and text.endswith(CUT)


def test_frame_lines_replaces_bad_utf8() -> None:
    assert list(frame_lines([S.encode() + b"caf\xe9\n"])) == [(T0 + 1, "caf\ufffd")]


# --- request logs -----------------------------------------------------------------------------


def request(
    t: int,
    *,
    revision: str = "hello-00001",
    path: str = "/",
    instance: str = "i-ab12",
    method: str = "GET",
    status: int = 200,
    duration_ms: int = 3,
) -> RequestLine:
    return RequestLine(
        time_ms=t, revision=revision, instance=instance, method=method, path=path,
        status=status, duration_ms=duration_ms,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("datagram", "want"),
    [
        pytest.param(
            b"1796040000123 rev-hello-00002 i-ab12 200 12 GET /api/items\n",
            ("hello", request(1796040000123, revision="hello-00002", path="/api/items",
                              duration_ms=12)),
            id="request",
        ),
        pytest.param(
            b"1 rev-hello-api-00001 <NOSRV> 503 0 POST /a b\n",
            ("hello-api", request(1, revision="hello-api-00001", instance="", method="POST",
                                  path="/a b", status=503, duration_ms=0)),
            id="answered-by-haproxy-dashed-service-space-in-path",
        ),
        pytest.param(
            # The activator's server is named after the revision; the line says "activator".
            b"1 rev-hello-00001 activator-hello-00001 -1 -1 GET /\n",
            ("hello", request(1, instance="activator", status=-1, duration_ms=-1)),
            id="aborted-while-at-zero",
        ),
        pytest.param(b"1 slipway-api api 200 1 GET /v1/services\n", None, id="the-api"),
        pytest.param(b"1 slipway-no-route <NOSRV> 404 0 GET /\n", None, id="unknown-host"),
        pytest.param(b"1 rev-hello i-a 200 1 GET /\n", None, id="not-a-revision"),
        pytest.param(b"x rev-hello-00001 i-a 200 1 GET /\n", None, id="bad-time"),
        pytest.param(b"1 rev-hello-00001 i-a 200 1 GET\n", None, id="too-few-fields"),
        pytest.param(b"", None, id="empty"),
    ],
)
def test_parse_request_line(datagram: bytes, want: tuple[str, RequestLine] | None) -> None:
    assert requestlogs.parse(datagram) == want


def test_frontend_lines_name_the_socket_in_the_run_dir() -> None:
    site = Site(bind="127.0.0.1:8080", domain="localhost", api_server="127.0.0.1:8081",
                run_dir=Path("/run/slipway"))  # fmt: skip
    lines = requestlogs.frontend_lines(site)
    assert lines[0] == "log uxst@/run/slipway/requests.sock len 2048 format raw local0 info"
    assert any(x.startswith("log-format ") and "%HPO" in x for x in lines), "path, no query"


def datagram(line: RequestLine) -> bytes:
    """What HAProxy sends for `line` (requestlogs.LOG_FORMAT)."""
    server = line.instance or "<NOSRV>"
    return (
        f"{line.time_ms} rev-{line.revision} {server} {line.status} {line.duration_ms} "
        f"{line.method} {line.path}\n"
    ).encode()


def test_rings_are_bounded_per_service_and_in_number() -> None:
    rings = RequestLogs(kept=3, services_kept=2)
    for t in range(5):
        rings.receive(datagram(request(t)))
    assert [x.time_ms for x in rings.watch("hello")[0]] == [2, 3, 4]
    rings.receive(datagram(request(1, revision="two-00001")))
    rings.receive(datagram(request(1, revision="three-00001")))
    assert rings.watch("hello")[0] == [], "the least recently written ring went"
    assert len(rings.watch("two")[0]) == 1 and len(rings.watch("three")[0]) == 1


def test_watch_filters_then_tails() -> None:
    rings = RequestLogs()
    for t in range(6):
        rings.receive(datagram(request(t, revision=f"hello-0000{1 + t % 2}")))
    kept, _ = rings.watch("hello", revision="hello-00001", since_ms=1, tail=1)
    assert [(x.time_ms, x.revision) for x in kept] == [(4, "hello-00001")]
    assert rings.watch("hello", tail=0)[0] == []
    assert rings.watch("nobody")[0] == []


def test_watchers_see_later_lines_of_their_service_and_revision_until_cancelled() -> None:
    rings = RequestLogs()
    rings.receive(datagram(request(1)))
    seen: list[int] = []
    all_seen: list[int] = []
    kept, cancel = rings.watch(
        "hello", revision="hello-00001", on_line=lambda x: seen.append(x.time_ms)
    )
    _, cancel_all = rings.watch("hello", on_line=lambda x: all_seen.append(x.time_ms))
    assert [x.time_ms for x in kept] == [1]
    rings.receive(datagram(request(2)))
    rings.receive(datagram(request(3, revision="hello-00002")))
    rings.receive(datagram(request(4, revision="other-00001")))
    cancel()
    rings.receive(datagram(request(5)))
    assert seen == [2] and all_seen == [2, 3, 5]
    cancel_all()
    cancel_all()  # twice is fine


def kept_paths(rings: RequestLogs, want: int) -> list[str]:
    deadline = time.monotonic() + 5
    while len(rings.watch("hello")[0]) < want and time.monotonic() < deadline:
        time.sleep(0.01)
    return [x.path for x in rings.watch("hello")[0]]


def test_lines_sent_to_the_socket_reach_the_rings(tmp_path: Path) -> None:
    path = tmp_path / "run" / "requests.sock"
    path.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # left behind by a control plane that stopped
    stale.close()
    rings = RequestLogs.listen(path)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        # Two HAProxy workers (one left by a reload), a line split across two sends.
        with (
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as old,
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as new,
        ):
            old.connect(str(path))
            new.connect(str(path))
            old.sendall(b"garbage\n1 rev-hello-00001 i-a 200 1 GET /a\n2 rev-hello-0")
            assert kept_paths(rings, 1) == ["/a"]
            new.sendall(b"3 rev-hello-00002 i-b 200 1 GET /c\n")
            old.sendall(b"0001 i-a 200 1 GET /b\n")
            assert sorted(kept_paths(rings, 3)) == ["/a", "/b", "/c"]
    finally:
        rings.close()


def test_a_socket_that_cannot_be_bound_leaves_empty_rings(tmp_path: Path) -> None:
    too_long = tmp_path / ("x" * 120) / "requests.sock"  # past AF_UNIX's 108 bytes
    rings = RequestLogs.listen(too_long)
    assert rings.watch("hello")[0] == []
    rings.close()


def test_only_revision_backends_are_kept() -> None:
    rings = RequestLogs()
    for raw in (
        b"1 slipway-api api 200 1 GET /v1/services\n",
        b"1 slipway-no-route <NOSRV> 404 0 GET /\n",
        b"1 rev-x i-a\n",
        b"junk",
    ):
        rings.receive(raw)
    assert rings._rings == {}
