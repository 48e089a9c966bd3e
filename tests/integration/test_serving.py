"""Serving through the real data plane: splits, tags, rollback, concurrency, timeouts.

Traffic is real HTTP through HAProxy to busybox httpd instances; the CGI endpoints let a test
see from inside an instance whether requests overlapped.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import Slipway, httpd_app

pytestmark = pytest.mark.integration

# One request in flight per instance is detectable: mkdir is atomic.
SLOW_CGI = """#!/bin/sh
if mkdir /tmp/inflight 2>/dev/null; then sleep 1; rmdir /tmp/inflight; r=alone
else sleep 1; r=overlap; fi
printf 'Content-Type: text/plain\\r\\n\\r\\n%s\\n' "$r"
"""
SLEEP_CGI = """#!/bin/sh
sleep 3
printf 'Content-Type: text/plain\\r\\n\\r\\nlate\\n'
"""


def cgi_app(folder: Path, body: str) -> Path:
    return httpd_app(folder, body, {"slow": SLOW_CGI, "sleep": SLEEP_CGI})


@contextmanager
def steady_load(slipway: Slipway, host: str) -> Iterator[tuple[list[str], Counter[str]]]:
    """Keep-alive and fresh-connection clients sending requests until the block ends."""
    failures: list[str] = []
    bodies: Counter[str] = Counter()
    stop = threading.Event()

    def run(keepalive: bool) -> None:
        headers = {"Host": f"{host}:{slipway.ingress_port}"}
        url = f"http://127.0.0.1:{slipway.ingress_port}/"
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                try:
                    r = client.get(url, headers=headers) if keepalive else httpx.get(
                        url, headers=headers, timeout=10
                    )  # fmt: skip
                    if r.status_code == 200:
                        bodies[r.text] += 1
                    else:
                        failures.append(f"{r.status_code} {r.text.strip()}")
                except httpx.HTTPError as e:
                    failures.append(repr(e))
                time.sleep(0.005)

    threads = [threading.Thread(target=run, args=(k,)) for k in (True, False)]
    for t in threads:
        t.start()
    try:
        yield failures, bodies
    finally:
        stop.set()
        for t in threads:
            t.join()


def test_split_tags_rollback_and_no_traffic_deploys(slipway: Slipway, tmp_path: Path) -> None:
    one = cgi_app(tmp_path / "one", "one\n")
    two = cgi_app(tmp_path / "two", "two\n")
    slipway.cli("deploy", "split", "--source", str(one))
    slipway.cli("deploy", "split", "--source", str(two))
    assert slipway.get("split").text == "two\n"

    # Per-request 50/50 split; split-00001 had no instance and is warmed before it gets traffic.
    with steady_load(slipway, "split.localhost") as (failures, _):
        out = slipway.cli("traffic", "split", "--to-revisions", "split-00001=50,split-00002=50")
        time.sleep(1)
    assert failures == []
    assert "50%  split-00001" in out.stdout and "50%  split-00002" in out.stdout
    seen: Counter[str] = Counter()
    with httpx.Client(timeout=10) as client:  # one keep-alive connection
        for _ in range(400):
            seen[slipway.get("split", client=client).text] += 1
    # Binomial(400, 0.5): 4 standard deviations is ±40.
    assert 160 <= seen["one\n"] <= 240, seen

    # A tag serves only its revision, also at 0%.
    slipway.cli("traffic", "split", "--set-tags", "old=split-00001")
    for _ in range(10):
        assert slipway.get("old--split.localhost").text == "one\n"

    # Rollback: the newest serving revision is split-00002, so split-00001 gets 100%.
    with steady_load(slipway, "split.localhost") as (failures, bodies):
        rolled = slipway.cli("rollback", "split")
        time.sleep(1)
    assert failures == []
    assert bodies["one\n"] and bodies["two\n"], bodies  # served by both across the switch
    assert "Rolled back split to split-00001" in rolled.stdout
    assert slipway.get("split").text == "one\n"

    # A deploy with --no-traffic --tag: only the tag URL serves it.
    three = cgi_app(tmp_path / "three", "three\n")
    out = slipway.cli("deploy", "split", "--source", str(three), "--no-traffic", "--tag", "cand")
    assert "split-00003 ready" in out.stdout
    assert slipway.get("split").text == "one\n"
    assert slipway.get("cand--split.localhost").text == "three\n"

    # Bad input changes nothing.
    for args, message in [
        (["--to-revisions", "split-00001=90"], "sum to 90, want 100"),
        (["--to-revisions", "split-00009=100"], "no revision 'split-00009'"),
        (["--set-tags", f"{'t' * 60}=split-00001"], "stays within 63"),
        (["--to-tags", "nope=100"], "no tag 'nope'"),
    ]:
        bad = slipway.cli("traffic", "split", *args, check=False)
        assert bad.returncode == 1 and message in bad.stderr, (args, bad.stderr)
    assert slipway.get("split").text == "one\n"


def test_rollback_without_a_previous_revision_is_refused(slipway: Slipway, tmp_path: Path) -> None:
    slipway.cli("deploy", "lonely", "--source", str(cgi_app(tmp_path / "a", "a\n")))
    result = slipway.cli("rollback", "lonely", check=False)
    assert result.returncode == 1 and "no previous ready revision" in result.stderr


@pytest.mark.parametrize(
    ("concurrency", "expect_overlap"),
    [pytest.param(1, False, id="one-at-a-time"), pytest.param(0, True, id="unlimited")],
)
def test_container_concurrency_queues_excess_requests(
    slipway: Slipway, tmp_path: Path, concurrency: int, expect_overlap: bool
) -> None:
    svc = f"cc{concurrency}"
    app = cgi_app(tmp_path / "cc", "cc\n")
    slipway.cli("deploy", svc, "--source", str(app), "--concurrency", str(concurrency))
    results: list[str] = []

    def call() -> None:
        results.append(slipway.get(svc, "/cgi-bin/slow").text.strip())

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    assert ("overlap" in results) is expect_overlap, results


def test_timeout_seconds_gives_504(slipway: Slipway, tmp_path: Path) -> None:
    app = cgi_app(tmp_path / "t", "t\n")
    slipway.cli("deploy", "timeouts", "--source", str(app), "--timeout", "1")
    resp = slipway.get("timeouts", "/cgi-bin/sleep")
    assert resp.status_code == 504
    assert "did not answer within its timeout of 1s" in resp.text
    assert slipway.get("timeouts").status_code == 200
