"""`events.PushTimings`: where a push's time went, read from the deploy's events as they pass;
and the rollout's side of it: a `timing` event per step, and passes asked for while a new
revision is Pending.

A scripted clock stands for time in the first part: each event is seen at the time given beside
it, so every figure there is exact. The rollout tests use a real SQLite store and the stand-in
reconciler of `test_rollout`."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.push_to_url import stage_timings
from pipeline.core.settings import Settings
from pipeline.deploy import events
from pipeline.deploy.edits import Edits
from pipeline.deploy.events import PushTimings
from pipeline.deploy.manifests import Placement
from pipeline.deploy.rollout import POLL_S, Rollout
from pipeline.deploy.urls import ServiceUrls
from pipeline.deploy.waits import InstanceWatch
from pipeline.store import db
from pipeline.store.state import Store
from tests.unit.test_rollout import IMAGE, NoGarbage, Passes


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def log(line: str) -> dict[str, Any]:
    return {"event": "log", "line": line}


CACHED_BUILD = [
    log("-----> Builder: dockerfile (Dockerfile found)"),
    log("Step 1/3 : FROM docker.io/slipway/python:3.11-bookworm"),
    log(" ---> Done in 0.0s"),
    log("Step 2/3 : WORKDIR /app"),
    log(" ---> Using cache"),
    log("Step 3/3 : COPY app.py ."),
    log(" ---> Using cache"),
]


def seen(timings: PushTimings, clock: Clock, script: list[tuple[float, dict[str, Any]]]) -> None:
    for at, event in script:
        clock.now = at
        timings.see(event)


def a_push(build_lines: list[dict[str, Any]]) -> list[tuple[float, dict[str, Any]]]:
    return [
        (100.05, {"event": "build", "build": "b1", "builder": "dockerfile"}),
        *((100.1, line) for line in build_lines),
        (100.45, log("-----> Pushing 127.0.0.1:5000/web:build-b1")),
        (100.57, events.stage("Built and pushed 127.0.0.1:5000/web@sha256:ab", seconds=0.5)),
        (100.58, {"event": "revision", "revision": "web-00002", "status": "Pending"}),
        (100.78, events.timing("instance", seconds=0.2)),
        (100.86, events.timing("route", seconds=0.08)),
        (100.87, events.timing("cleanup", seconds=0.01)),
        (100.88, events.ready("web-00002", seconds=0.3, urls=["http://web.localhost"], percent=1)),
    ]


def test_each_step_runs_from_the_end_of_the_one_before_and_they_add_up() -> None:
    clock = Clock()
    timings = PushTimings(clock=clock)

    seen(timings, clock, a_push(CACHED_BUILD))
    clock.now = 100.9

    assert [name for name, _ in timings.steps] == [
        "receive", "build", "push", "instance", "route", "cleanup",
    ]  # fmt: skip
    assert [round(s, 2) for _, s in timings.steps] == [0.05, 0.4, 0.12, 0.21, 0.08, 0.01]
    assert timings.line() == (
        "-----> Timings: receive 0.05s, build 0.40s (cached), push 0.12s, instance 0.21s, "
        "route 0.08s, cleanup 0.01s; total 0.90s"
    )


@pytest.mark.parametrize(
    ("lines", "note"),
    [
        pytest.param(CACHED_BUILD, " (cached)", id="every-step-cached-from-not-counted"),
        pytest.param(
            [*CACHED_BUILD[:5], log("Step 3/3 : COPY app.py ."), log(" ---> Done in 0.1s")],
            " (1/2 steps cached)",
            id="the-copy-ran",
        ),
        pytest.param(
            [
                log("Step deps 2/3 : RUN pip install -r requirements.txt"),
                log("Collecting flask"),
                log("Step final 3/3 : COPY . /app"),
                log("Step deps 2/3 : RUN pip install -r requirements.txt (continued)"),
                log(" ---> Done in 3.2s"),
                log(" ---> Done in 0.0s"),
            ],
            " (0/2 steps cached)",
            id="named-stages-and-continued-headers",
        ),
        pytest.param([log("===> DETECTING")], "", id="buildpacks-no-dockerfile-steps"),
    ],
)
def test_the_build_says_how_much_came_from_cache(lines: list[dict[str, Any]], note: str) -> None:
    clock = Clock()
    timings = PushTimings(clock=clock)

    seen(timings, clock, a_push(lines))

    assert f"build 0.40s{note}, push" in timings.line()


def test_an_unchanged_template_ends_after_the_push() -> None:
    """No new revision: no rollout steps, and the total still counts everything."""
    clock = Clock()
    timings = PushTimings(clock=clock)

    seen(timings, clock, a_push(CACHED_BUILD)[: len(CACHED_BUILD) + 3])  # up to the push
    clock.now = 100.7

    assert timings.line() == (
        "-----> Timings: receive 0.05s, build 0.40s (cached), push 0.12s; total 0.70s"
    )


def test_receive_counts_from_when_the_push_reached_the_handler() -> None:
    clock = Clock()
    timings = PushTimings(clock=clock, started=99.0)

    seen(timings, clock, a_push(CACHED_BUILD)[:1])

    assert timings.steps == [("receive", pytest.approx(1.05))]


def test_timing_events_print_no_line_of_their_own() -> None:
    """`slipway deploy` prints `events.lines`: the steps stay out of its output."""
    assert events.lines(events.timing("route", seconds=0.1)) == []
    assert events.timing("route", seconds=0.12345) == {
        "event": "timing", "stage": "route", "seconds": 0.123,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("output", "figures"),
    [
        pytest.param(
            "remote: -----> Timings: receive 0.05s, build 0.40s (1/2 steps cached), push 0.12s, "
            "instance 0.21s, route 0.08s, cleanup 0.01s; total 0.90s        \nTo http://x",
            {"receive_s": 0.05, "build_s": 0.4, "push_s": 0.12, "instance_s": 0.21}
            | {"route_s": 0.08, "cleanup_s": 0.01, "total_s": 0.9},
            id="a-deploy",
        ),
        pytest.param("remote: ! build failed\n", {}, id="no-timings-line"),
    ],
)
def test_the_bench_reads_the_timings_line(output: str, figures: dict[str, float]) -> None:
    assert stage_timings(output) == figures


# the rollout's side: its steps, and the passes it asks for while a revision is Pending -------
class ReadyOnWake(Passes):
    """A reconciler whose pass finds the instance ready only at the `ready_at`-th wake."""

    def __init__(self, store: Store, *, ready_at: int) -> None:
        super().__init__(store)
        self.wakes = 0
        self.ready_at = ready_at

    def wake(self) -> None:
        self.wakes += 1
        if self.wakes >= self.ready_at:
            super().wake()


def a_rollout(tmp: Path, reconciler_for: Callable[[Store], Passes]) -> tuple[Rollout, Passes]:
    engine = db.make_engine(f"sqlite:///{tmp / 'db.sqlite'}")
    db.migrate(engine)
    store = Store(db.session_factory(engine))
    reconciler = reconciler_for(store)
    settings = Settings(data_dir=tmp, readiness_timeout_s=5)
    rollout = Rollout(
        store=store, reconciler=reconciler, settings=settings, secrets=None, garbage=NoGarbage(),
        edits=Edits(store=store, reconciler=reconciler, settings=settings),
        urls=ServiceUrls(store=store, settings=settings), watch=InstanceWatch(reader=None),
    )  # fmt: skip
    return rollout, reconciler


def test_rollout_ends_each_step_with_a_timing_event_before_ready(tmp_path: Path) -> None:
    rollout, _ = a_rollout(tmp_path, lambda store: Passes(store))
    seen: list[dict[str, Any]] = []

    rollout.roll_out("web", image=IMAGE, env={}, build_id=None, emit=seen.append,
                     placement=Placement())  # fmt: skip

    kinds = [(e["event"], e.get("stage")) for e in seen]
    assert kinds == [
        ("revision", None), ("timing", "instance"), ("timing", "route"), ("timing", "cleanup"),
        ("ready", None),
    ]  # fmt: skip
    assert all(e["seconds"] >= 0 for e in seen if e["event"] == "timing")


def test_a_pending_revision_asks_for_passes_instead_of_waiting_for_the_reconcilers_pace(
    tmp_path: Path,
) -> None:
    """The instance is ready at the 6th pass: asked for at each look, it is found within
    6 looks (0.3 s), not after 6 of the reconciler's own intervals."""
    rollout, reconciler = a_rollout(tmp_path, lambda store: ReadyOnWake(store, ready_at=6))
    started = time.monotonic()

    rollout.roll_out("web", image=IMAGE, env={}, build_id=None, emit=events.ignore,
                     placement=Placement())  # fmt: skip

    assert time.monotonic() - started < 6 * POLL_S + 1.0
    assert reconciler.wakes >= 6
    assert rollout_status(tmp_path) == "Ready"


def rollout_status(tmp: Path) -> str:
    store = Store(db.session_factory(db.make_engine(f"sqlite:///{tmp / 'db.sqlite'}")))
    return store.get_revision("web-00001").status


def test_waiting_for_another_deploy_is_a_step_of_its_own() -> None:
    clock = Clock()
    timings = PushTimings(clock=clock)
    script = a_push(CACHED_BUILD)
    script.insert(0, (100.02, events.stage("Waiting for the deploy to web in progress")))

    seen(timings, clock, script)

    assert [(name, round(s, 2)) for name, s in timings.steps[:3]] == [
        ("receive", 0.02), ("waiting", 0.03), ("build", 0.4),
    ]  # fmt: skip
