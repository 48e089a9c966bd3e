"""`slipway logs` on the real platform: an app writing to stdout and stderr behind HAProxy, read
through Docker's logs; request lines from HAProxy through the control plane's datagram socket.

The follow latencies are measured here because they are the feature's promise ("a request's line
within a second"); each is printed (`pytest -s`) as well as checked.
"""

from __future__ import annotations

import json
import queue
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import docker
import pytest

from pipeline.core import names
from pipeline.core.annotations import MIN_SCALE_ANNOTATION
from pipeline.engines.dockerlogs import DockerLogs
from pipeline.engines.logs import LogLine
from pipeline.engines.logstreams import LogQuery, stream_logs
from tests.integration.conftest import BUSYBOX, ROOT, Slipway, httpd_app

pytestmark = pytest.mark.integration

SERVICE = "chatty"
# fd 3 is the container's stdout: a CGI script's own stdout is the HTTP response.
BOOT = (
    "echo booted on stdout; echo booted on stderr >&2; exec 3>&1; exec httpd -f -p ${PORT} -h /www"
)
HIT = (
    "#!/bin/sh\n"
    'echo "hit $QUERY_STRING on stdout" >&3\n'
    'echo "hit $QUERY_STRING on stderr" >&2\n'
    'printf "Content-Type: text/plain\\r\\n\\r\\nok\\n"\n'
)
LINE = re.compile(
    rf"^\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{{3}}Z {SERVICE}-\d{{5}}/i-[a-z0-9]+ "
    r"\[(stdout|stderr)\] (.*)$"
)
FOLLOW_BUDGET_S = 1.0  # the feature's promise


@pytest.fixture(scope="module")
def chatty(
    slipway: Slipway, docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> str:
    folder = httpd_app(tmp_path_factory.mktemp("chatty"), "up\n", cgi={"hit": HIT})
    (folder / "Dockerfile").write_text(
        f'FROM {BUSYBOX}\nCOPY www /www\nUSER app\nCMD ["sh", "-c", "{BOOT}"]\n'
    )
    slipway.replace_with_app(
        docker_client, folder, SERVICE, annotations={MIN_SCALE_ANNOTATION: "1"}
    )
    until(lambda: slipway.get(SERVICE, "/").status_code == 200, what=f"{SERVICE} serving")
    return SERVICE


def until(check: Callable[[], object], *, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def hit(slipway: Slipway, marker: str) -> None:
    response = slipway.get(SERVICE, f"/cgi-bin/hit?{marker}")
    assert response.status_code == 200, response.text


def logged(slipway: Slipway, *args: str, marker: str) -> str:
    """`slipway logs ARGS` once `marker` is in it (Docker writes a line a moment after)."""
    out = ""

    def has_it() -> bool:
        nonlocal out
        out = slipway.cli("logs", *args).stdout
        return marker in out

    until(has_it, what=f"{marker!r} in `slipway logs {' '.join(args)}`", timeout_s=10)
    return out


def test_logs_show_stdout_and_stderr_with_revision_and_instance(
    slipway: Slipway, chatty: str
) -> None:
    hit(slipway, "first")
    out = logged(slipway, chatty, marker="hit first on stderr")
    lines = out.splitlines()
    assert lines and all(LINE.match(line) for line in lines), out
    texts = {(m.group(1), m.group(2)) for line in lines if (m := LINE.match(line))}
    assert {
        ("stdout", "booted on stdout"),
        ("stderr", "booted on stderr"),
        ("stdout", "hit first on stdout"),
        ("stderr", "hit first on stderr"),
    } <= texts, out
    stamps = [line.split(" ", 1)[0] for line in lines]
    assert stamps == sorted(stamps), "merged in time order"


def test_tail_keeps_the_last_lines(slipway: Slipway, chatty: str) -> None:
    hit(slipway, "tail-a")
    hit(slipway, "tail-b")
    logged(slipway, chatty, marker="hit tail-b on stderr")
    last_two = slipway.cli("logs", chatty, "--tail", "2").stdout.splitlines()
    assert len(last_two) == 2 and all("hit tail-b on" in line for line in last_two), last_two
    assert slipway.cli("logs", chatty, "--tail", "0").stdout == ""


def test_since_takes_a_time_or_a_duration(slipway: Slipway, chatty: str) -> None:
    hit(slipway, "before-since")
    logged(slipway, chatty, marker="hit before-since on stderr")
    time.sleep(0.05)
    middle = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    time.sleep(0.05)
    hit(slipway, "after-since")
    out = logged(slipway, chatty, "--since", middle, marker="hit after-since on stderr")
    assert "before-since" not in out and "booted" not in out, out
    recent = slipway.cli("logs", chatty, "--since", "10m").stdout
    assert "before-since" in recent and "after-since" in recent
    bad = slipway.cli("logs", chatty, "--since", "yesterday", check=False)
    assert bad.returncode == 1 and "10m" in bad.stderr


class Following:
    """`slipway logs ... --follow` as a subprocess, its lines timed as they arrive."""

    def __init__(self, slipway: Slipway, *args: str) -> None:
        env = {**slipway.env, "SLIPWAY_URL": slipway.url, "SLIPWAY_TOKEN": slipway.token}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "logs", *args, "--follow"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        self.lines: queue.Queue[tuple[float, str]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put((time.monotonic(), line.rstrip("\n")))

    def wait_for(self, text: str, *, timeout_s: float = 30) -> tuple[float, str]:
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                seen, line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if text in line:
                return seen, line
        raise AssertionError(f"{text!r} not followed within {timeout_s}s")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self._reader.join(timeout=10)  # it has read stdout to its end
        assert self.proc.stdout is not None and self.proc.stderr is not None
        errors = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        assert "Traceback" not in errors, errors


@pytest.fixture
def following(slipway: Slipway) -> Iterator[Callable[..., Following]]:
    started: list[Following] = []

    def start(*args: str) -> Following:
        started.append(Following(slipway, *args))
        return started[-1]

    yield start
    for f in started:
        f.stop()


def wait_until_following(
    follow: Following, *, send: Callable[[str], None], shows: Callable[[str], str]
) -> None:
    """Send requests until one's line shows: the follow is up (the CLI takes a moment to start,
    and a line from before it asked is not followed)."""
    token = secrets.token_hex(3)
    for attempt in range(20):
        send(f"warm{attempt}x{token}")
        try:
            follow.wait_for(shows(f"warm{attempt}x{token}"), timeout_s=2)
            return
        except AssertionError:
            continue
    raise AssertionError("the follow never showed a warm-up line")


def follow_latency(
    follow: Following, *, send: Callable[[str], None], shows: Callable[[str], str]
) -> float:
    """Seconds from a request's response to its line on the follower's stdout: `send(marker)`
    makes the request, `shows(marker)` is what its line contains."""
    wait_until_following(follow, send=send, shows=shows)
    marker = f"m{secrets.token_hex(4)}"
    sent = time.monotonic()
    send(marker)
    answered = time.monotonic()
    seen, line = follow.wait_for(shows(marker), timeout_s=10)
    print(
        f"\nfollow latency: {(seen - answered) * 1000:.0f} ms after the response "
        f"({(seen - sent) * 1000:.0f} ms after the request was sent): {line}"
    )
    return seen - answered


def test_follow_shows_a_request_line_within_a_second(
    slipway: Slipway, chatty: str, following: Callable[..., Following]
) -> None:
    follow = following(chatty, "--tail", "0")
    latency = follow_latency(
        follow, send=lambda m: hit(slipway, m), shows=lambda m: f"[stdout] hit {m} on stdout"
    )
    assert latency < FOLLOW_BUDGET_S


def test_requests_show_method_path_status_and_revision(
    slipway: Slipway, chatty: str, following: Callable[..., Following]
) -> None:
    hit(slipway, "request-log")
    pattern = re.compile(rf"Z {SERVICE}-\d{{5}}/i-[a-z0-9]+ GET /cgi-bin/hit 200 \d+ms$", re.M)
    until(lambda: pattern.search(slipway.cli("logs", chatty, "--requests").stdout),
          what="the request line", timeout_s=10)  # fmt: skip
    assert "request-log" not in slipway.cli("logs", chatty, "--requests").stdout, "no query"
    raw = slipway.api_get(f"/v1/services/{chatty}/logs?requests=1&tail=1").text
    events = [json.loads(line) for line in raw.splitlines() if line.strip()]
    assert len(events) == 1 and events[0]["event"] == "request", events
    assert {k: events[0][k] for k in ("method", "path", "status")} == {
        "method": "GET", "path": "/cgi-bin/hit", "status": 200,
    }  # fmt: skip
    assert events[0]["revision"].startswith(f"{SERVICE}-") and events[0]["instance"]

    # Each request its own path (a missing file: 404), so its line is told from the others.
    follow = following(chatty, "--requests", "--tail", "0")
    latency = follow_latency(
        follow,
        send=lambda m: assert_status(slipway.get(SERVICE, f"/{m}").status_code, 404),
        shows=lambda m: f" GET /{m} 404 ",
    )
    assert latency < FOLLOW_BUDGET_S


def assert_status(got: int, want: int) -> None:
    assert got == want


def test_request_lines_survive_a_control_plane_restart(slipway: Slipway, chatty: str) -> None:
    """HAProxy outlives the control plane: a request served while it is down waits in HAProxy's
    ring, and the forwarder reconnects to the new control plane's socket."""
    slipway.stop()
    try:
        assert slipway.get(SERVICE, "/while-down").status_code == 404
    finally:
        slipway.start()
    assert slipway.get(SERVICE, "/after-restart").status_code == 404

    def both() -> bool:
        out = slipway.cli("logs", chatty, "--requests").stdout
        return " GET /while-down 404 " in out and " GET /after-restart 404 " in out

    until(both, what="both requests in the request log after the restart", timeout_s=30)


def test_follow_picks_up_an_instance_that_starts_while_following(
    slipway: Slipway,
    chatty: str,
    docker_client: docker.DockerClient,
    following: Callable[..., Following],
    tmp_path: Path,
) -> None:
    follow = following(chatty, "--tail", "0")
    wait_until_following(
        follow, send=lambda m: hit(slipway, m), shows=lambda m: f"hit {m} on stdout"
    )
    revisions = slipway.api_get(f"/v1/services/{chatty}").json()["revisions"]
    # A changed spec is a new revision: a new instance, which boots and says so.
    folder = httpd_app(tmp_path / "again", "up\n", cgi={"hit": HIT})
    (folder / "Dockerfile").write_text(
        f'FROM {BUSYBOX}\nCOPY www /www\nUSER app\nCMD ["sh", "-c", "{BOOT}"]\n'
    )
    slipway.replace_with_app(
        docker_client, folder, SERVICE, annotations={MIN_SCALE_ANNOTATION: "1"}, concurrency=7
    )
    newest = names.revision_name(SERVICE, len(revisions) + 1)
    _, line = follow.wait_for(f"{newest}/i-", timeout_s=60)
    assert "booted on" in line, line


def test_a_stopped_instance_is_read_until_it_is_removed(
    docker_client: docker.DockerClient, busybox_image: str
) -> None:
    """Engine level: the platform removes an exited instance within a reconcile pass, so a
    stopped one is made here, under a platform id of its own that no reconciler owns."""
    platform = f"tlogs{secrets.token_hex(3)}"
    labels = names.instance_labels(
        platform=platform, service="gone", revision="gone-00001", instance="ab12"
    )
    container = docker_client.containers.run(
        busybox_image, ["sh", "-c", "echo out-line; echo err-line >&2"], labels=labels,
        detach=True, log_config={"Type": "json-file", "Config": {}},
    )  # fmt: skip
    reader = DockerLogs(docker_client, platform=platform)
    try:
        container.wait(timeout=30)
        lines: list[LogLine] = []
        stream_logs(reader, LogQuery(service="gone"), emit=lambda line: lines.append(line) or True,
                    stop=threading.Event())  # fmt: skip
        assert {(x.revision, x.instance, x.stream, x.text) for x in lines} == {
            ("gone-00001", "i-ab12", "stdout", "out-line"),
            ("gone-00001", "i-ab12", "stderr", "err-line"),
        }
    finally:
        container.remove(force=True)
    assert reader.sources(service="gone") == [], "removed: gone from the logs too"
