"""`slipway logs` against a recording client: the query it sends, the lines it prints."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.cli.logs import line_of, short_time
from tests.unit.clirecorder import Recorder, install, run

LOG = {"event": "log", "time": "2026-11-30T12:00:00.123456789Z", "revision": "hello-00002",
       "instance": "i-ab12", "stream": "stdout", "line": "listening on 8080"}  # fmt: skip
REQUEST = {"event": "request", "time": "2026-11-30T12:00:01.456000000Z", "revision": "hello-00002",
           "instance": "i-ab12", "method": "GET", "path": "/api/items", "status": 200,
           "duration_ms": 12}  # fmt: skip


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    return install(monkeypatch)


@pytest.mark.parametrize(
    ("args", "params"),
    [
        pytest.param([], {}, id="plain"),
        pytest.param(
            ["--revision", "hello-00002", "--since", "10m", "--tail", "0", "-f", "--requests"],
            {"revision": "hello-00002", "since": "10m", "tail": 0, "follow": "1", "requests": "1"},
            id="every-option",
        ),
    ],
)
def test_the_query_sent(recorder: Recorder, args: list[str], params: dict[str, Any]) -> None:
    recorder.events = []
    result = run("logs", "hello", *args)
    assert result.exit_code == 0, result.output
    assert recorder.calls == [("GET", "/v1/services/hello/logs", {"params": params})]


def test_lines_are_printed_as_they_come(recorder: Recorder) -> None:
    recorder.events = [LOG, REQUEST]
    result = run("logs", "hello")
    assert result.stdout.splitlines() == [
        "2026-11-30T12:00:00.123Z hello-00002/i-ab12 [stdout] listening on 8080",
        "2026-11-30T12:00:01.456Z hello-00002/i-ab12 GET /api/items 200 12ms",
    ]


def test_an_error_event_is_one_error_line_and_exit_1(recorder: Recorder) -> None:
    recorder.events = [LOG, {"event": "error", "error": "Unavailable", "status": 503,
                             "message": "Docker Engine is not reachable"}]  # fmt: skip
    result = run("logs", "hello")
    assert result.exit_code == 1
    assert "error: Docker Engine is not reachable" in result.stderr


@pytest.mark.parametrize(
    ("event", "want"),
    [
        pytest.param(
            LOG, "2026-11-30T12:00:00.123Z hello-00002/i-ab12 [stdout] listening on 8080", id="log"
        ),
        pytest.param(
            {**REQUEST, "instance": "", "status": 503, "duration_ms": 0},
            "2026-11-30T12:00:01.456Z hello-00002/- GET /api/items 503 0ms",
            id="answered-by-haproxy",
        ),
        pytest.param(
            {**REQUEST, "status": -1, "duration_ms": -1},
            "2026-11-30T12:00:01.456Z hello-00002/i-ab12 GET /api/items - -",
            id="client-went-away",
        ),
        pytest.param({"event": "dropped", "lines": 3}, None, id="not-a-line"),
    ],
)
def test_line_of(event: dict[str, Any], want: str | None) -> None:
    assert line_of(event) == want


def test_short_time_keeps_milliseconds_and_leaves_other_text() -> None:
    assert short_time("2026-11-30T12:00:00.000000001Z") == "2026-11-30T12:00:00.000Z"
    assert short_time("2026-11-30T12:00:00Z") == "2026-11-30T12:00:00Z"
