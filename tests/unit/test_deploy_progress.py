"""What a deploy prints as it goes and when it ends: the URLs that reach the new revision (not
every URL of the service) with its share of the traffic, https when HTTPS is on, progress lines
while it waits, the lines `git push` and `slipway deploy` share, and what Ctrl-C says."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.console import Console

from pipeline.cli.output import follow
from pipeline.cli.progress import StreamPrinter, interrupted_lines
from pipeline.core.settings import Settings
from pipeline.deploy import events
from pipeline.deploy.manifests import Placement
from pipeline.deploy.urls import public_url, revision_urls
from pipeline.reconcile.routing import Target
from tests.unit.test_rollout import IMAGE, Deploys


def T(revision: str, percent: int, tag: str = "") -> Target:
    return Target(revision=revision, percent=percent, tag=tag)


SVC = "http://hello.x"
CANDIDATE = "http://candidate--hello.x"
COMMIT = "http://commit-abc1234--hello.x"
OLD = "http://commit-0000000--hello.x"
ALL = [SVC, OLD, COMMIT, CANDIDATE]


@pytest.mark.parametrize(
    ("targets", "revision", "percent", "urls"),
    [
        pytest.param(
            [T("hello-00001", 0, "commit-0000000"), T("hello-00002", 100),
             T("hello-00002", 0, "commit-abc1234")],
            "hello-00002", 100, (SVC, COMMIT), id="takes-all-traffic",
        ),
        pytest.param(
            [T("hello-00001", 100), T("hello-00001", 0, "commit-0000000"),
             T("hello-00002", 0, "candidate")],
            "hello-00002", 0, (CANDIDATE,), id="no-traffic-tag-candidate",
        ),
        pytest.param(
            [T("hello-00001", 90), T("hello-00002", 10, "candidate")],
            "hello-00002", 10, (SVC, CANDIDATE), id="a-share",
        ),
        pytest.param(
            [T("hello-00001", 100), T("hello-00002", 0)],
            "hello-00002", 0, (), id="no-traffic-no-tag",
        ),
    ],
)  # fmt: skip
def test_revision_urls_are_those_that_reach_it(
    targets: list[Target], revision: str, percent: int, urls: tuple[str, ...]
) -> None:
    got = revision_urls(service="hello", revision=revision, targets=targets, urls=ALL)
    assert (got.percent, got.urls) == (percent, urls)


@pytest.mark.parametrize(
    ("urls", "percent", "lines"),
    [
        pytest.param([SVC, COMMIT], 100, [f"       {SVC}  (100%)", f"       {COMMIT}"], id="all"),
        pytest.param(
            [CANDIDATE], 0, [f"       {CANDIDATE}  (0%: no traffic, its tag URL only)"],
            id="candidate",
        ),
        pytest.param([], 0, ["       0% of the traffic and no URL of its own"], id="nothing"),
    ],
)  # fmt: skip
def test_url_lines_put_the_percent_on_the_first(
    urls: list[str], percent: int, lines: list[str]
) -> None:
    assert events.url_lines(urls, percent=percent) == lines


@pytest.mark.parametrize(
    ("https_port", "ingress_port", "url"),
    [
        pytest.param(0, 8080, "http://hello.localhost:8080", id="plain"),
        pytest.param(0, 80, "http://hello.localhost", id="plain-80"),
        pytest.param(8443, 8080, "https://hello.localhost:8443", id="https"),
        pytest.param(443, 80, "https://hello.localhost", id="https-443"),
    ],
)
def test_public_url_is_https_once_it_is_on(
    tmp_path: Path, https_port: int, ingress_port: int, url: str
) -> None:
    settings = Settings(data_dir=tmp_path, https_port=https_port, ingress_port=ingress_port)
    assert public_url("hello.localhost", settings) == url


@pytest.mark.parametrize(
    ("event", "line"),
    [
        pytest.param(
            events.progress("w-00001", seconds=2.4, instance="", port=8080, last_line=""),
            "       2s  waiting for an instance to start", id="no-instance",
        ),
        pytest.param(
            events.progress("w-00001", seconds=5.1, instance="i-ab12", port=8080, last_line=""),
            "       5s  i-ab12 started, not accepting connections on port 8080 yet",
            id="silent-instance",
        ),
        pytest.param(
            events.progress(
                "w-00001", seconds=10, instance="i-ab12", port=8080,
                last_line="listening on :3000",
            ),
            "       10s  i-ab12 started, not accepting connections on port 8080 yet; "
            "last log line: listening on :3000",
            id="wrong-port",
        ),
    ],
)  # fmt: skip
def test_progress_line(event: dict[str, Any], line: str) -> None:
    assert events.lines(event) == [line]


def test_build_and_ready_lines_are_those_git_push_and_deploy_share() -> None:
    assert events.lines({"event": "build", "build": "b1", "builder": "dockerfile"}) == [
        "-----> Build b1 (dockerfile)"
    ]
    ready = events.ready("hello-00002", seconds=1.2, urls=[CANDIDATE], percent=0)
    assert events.lines(ready) == [
        "-----> hello-00002 ready   1.2s",
        f"       {CANDIDATE}  (0%: no traffic, its tag URL only)",
    ]


def printed(*, tty: bool, instance: str, last_line: str) -> str:
    """What the CLI prints for two progress events and the step after them."""
    buffer = io.StringIO()
    con = Console(file=buffer, force_terminal=tty, soft_wrap=True, color_system=None)
    printer = StreamPrinter(con)
    for s in (5, 10):
        printer.event(
            events.progress("w-1", seconds=s, instance=instance, port=8080, last_line=last_line)
        )
    printer.event({"event": "stage", "text": "done"})
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("tty", "instance", "last_line", "text"),
    [
        pytest.param(
            False, "i-1", "x",
            "       5s  i-1 started, not accepting connections on port 8080 yet; "
            "last log line: x\n"
            "       10s  i-1 started, not accepting connections on port 8080 yet; "
            "last log line: x\n"
            "-----> done\n",
            id="piped-one-line-each",
        ),
        pytest.param(
            True, "", "",
            "\r\x1b[2K5s  waiting for an instance to start"
            "\r\x1b[2K10s  waiting for an instance to start\n"
            "-----> done\n",
            id="terminal-overwrites-in-place",
        ),
    ],
)  # fmt: skip
def test_progress_printing(tty: bool, instance: str, last_line: str, text: str) -> None:
    assert printed(tty=tty, instance=instance, last_line=last_line) == text


def test_ctrl_c_names_the_build_and_how_to_follow_or_cancel_it() -> None:
    assert interrupted_lines("b-42") == [
        "Interrupted: the deploy goes on on the server; build b-42 keeps running.",
        "  Follow it: slipway builds log b-42 --follow",
        "  Cancel it: slipway builds cancel b-42",
    ]
    assert interrupted_lines("")[0] == (
        "Interrupted: a deploy the server already received goes on there."
    )


def test_rollout_ready_event_has_only_the_new_revisions_urls_and_percent(tmp_path: Path) -> None:
    deploys = Deploys(tmp_path)
    deploys.deploy("hello", tags=("first",))
    deploys.events.clear()
    outcome = deploys.rollout.roll_out(
        "hello", image=IMAGE, env={"V": "2"}, build_id=None, emit=deploys.events.append,
        placement=Placement(tags=("candidate",), traffic="none"),
    )  # fmt: skip
    ready = [e for e in deploys.events if e["event"] == "ready"]
    assert len(ready) == 1
    assert ready[0]["urls"] == ["http://candidate--hello.localhost:8080"]
    assert ready[0]["percent"] == 0
    assert (outcome.urls, outcome.percent) == (ready[0]["urls"], 0)


def test_follow_on_ctrl_c_says_the_build_goes_on_and_exits_130(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def stream() -> Iterator[dict[str, Any]]:
        yield {"event": "build", "build": "b-7", "builder": "dockerfile"}
        raise KeyboardInterrupt

    with pytest.raises(typer.Exit) as stopped:
        follow(stream())

    assert stopped.value.exit_code == 130
    captured = capsys.readouterr()
    assert "-----> Build b-7 (dockerfile)" in captured.out
    assert captured.err.splitlines() == interrupted_lines("b-7")
