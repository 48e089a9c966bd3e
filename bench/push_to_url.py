"""Seconds from `git push` to the first 200 on the commit URL, and where the push's time went.

Needs a running Slipway (`./scripts/up`). Two apps: `examples/hello-python` (a Dockerfile, the
standard library only) and `examples/hello-flask` (no Dockerfile: the python build template pip
installs Flask and gunicorn from PyPI, keeping pip's cache in a BuildKit cache mount). For each:
the first push (a new service), a one-line code change (`--rounds` pushes, each a new line, the
median shown), and for Flask a dependency change (a package added to requirements.txt).

Every run uses new service names, so the Flask app's first push is cold: its pip cache (one per
service) starts empty and every wheel comes from PyPI, and a line unique to the run at the top
of requirements.txt makes BuildKit run the install step (its cache is the engine's, shared by
all services). Its dependency change runs the install again, from the service's pip cache plus
the one new download. The base image and the venv step are cached, as they are for any app on a
running Slipway.

Each case also carries the push's own stage timings (the `-----> Timings:` line `git push`
prints): receive, build, push (to the registry), instance (revision created until Ready),
route (until the data plane applied it), cleanup.

    .venv/bin/python -m bench.push_to_url [--rounds 3] [--json]
"""

from __future__ import annotations

import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.common import (
    Case,
    Column,
    bench_arguments,
    delete_service,
    emit,
    progress,
    running_settings,
)
from pipeline.cli.client import default_token
from pipeline.core import names
from pipeline.core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("receive", "build", "push", "instance", "route", "cleanup")
_TIMINGS = re.compile(r"-----> Timings: (.*)")
_STAGE = re.compile(r"(\w+) ([\d.]+)s")
TIMEOUT_S = 300  # a cold Flask build downloads its wheels from PyPI


@dataclass(frozen=True, kw_only=True)
class Step:
    name: str
    edit: Callable[[Path], None]  # changes the repository's files
    expect: str  # the new revision's answer contains this
    rounds: bool = False  # repeated --rounds times, each a fresh edit


@dataclass(frozen=True, kw_only=True)
class App:
    service: str  # the run's service is named `<service>-<run>`
    example: str
    steps: tuple[Step, ...]


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.test",
        "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.test",
    }  # fmt: skip
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"git {' '.join(args[:2])} failed:\n{done.stdout}{done.stderr}")
    return done.stdout.strip() + done.stderr.strip()


def stage_timings(push_output: str) -> dict[str, float]:
    """The stages of the `-----> Timings:` line, as `<stage>_s` figures (pure)."""
    m = _TIMINGS.search(push_output)
    if m is None:
        return {}
    return {f"{name}_s": float(secs) for name, secs in _STAGE.findall(m.group(1))}


def push_to_first_200(
    repo: Path, *, service: str, remote: str, settings: Settings, expect: str
) -> dict[str, float]:
    """`took_s` from the push to the first 200 carrying `expect`, and the push's stage timings."""
    sha = git(repo, "rev-parse", "HEAD")
    host = names.tag_host(names.commit_tag(sha), service, settings.domain)
    started = time.monotonic()
    out = git(repo, "push", "--force", remote, "HEAD:main")
    with httpx.Client(timeout=5) as client:
        while time.monotonic() - started < TIMEOUT_S:
            r = client.get(
                f"http://127.0.0.1:{settings.ingress_port}/",
                headers={"Host": f"{host}:{settings.ingress_port}"},
            )
            if r.status_code == 200 and expect in r.text:
                return {"took_s": time.monotonic() - started, **stage_timings(out)}
            time.sleep(0.02)
    raise SystemExit(f"{service}@{sha[:7]} did not answer 200 within {TIMEOUT_S}s:\n{out}")


def add_requirement(line: str, *, greeting: str) -> Callable[[Path], None]:
    def edit(repo: Path) -> None:
        path = repo / "requirements.txt"
        path.write_text(path.read_text() + line + "\n")
        app = repo / "app.py"
        app.write_text(re.sub(r"H(?:ello|i\d*) from", greeting, app.read_text(), count=1))

    return edit


def one_line(repo: Path) -> None:
    """A one-line change that is new every time: the counter after `Hi from` grows."""
    path = repo / "app.py"
    text = path.read_text()
    m = re.search(r"Hi(\d*) from", text)
    count = int(m.group(1) or 0) + 1 if m else 0
    path.write_text(re.sub(r"H(?:ello|i\d*) from", f"Hi{count} from", text, count=1))


APPS = (
    App(service="bench-push", example="hello-python", steps=(
        Step(name="first push (new service)", edit=lambda _: None, expect="Hello from"),
        Step(name="one-line change", edit=one_line, expect=" from", rounds=True),
    )),
    App(service="bench-flask", example="hello-flask", steps=(
        Step(name="first push (new service)", edit=lambda _: None, expect="Hello from"),
        Step(name="one-line change", edit=one_line, expect=" from", rounds=True),
        Step(
            name="dependency added",
            edit=add_requirement("python-dotenv==1.0.1", greeting="Hey from"),
            expect="Hey from",
        ),
    )),
)  # fmt: skip


def run_app(app: App, *, settings: Settings, remote: str, rounds: int) -> list[Case]:
    cases: list[Case] = []
    run = secrets.token_hex(3)
    service = f"{app.service}-{run}"
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        for f in (ROOT / "examples" / app.example).iterdir():
            (repo / f.name).write_bytes(f.read_bytes())
        requirements = repo / "requirements.txt"
        if requirements.exists():  # the install step runs: its BuildKit cache outlives services
            requirements.write_text(f"# bench run {run}\n" + requirements.read_text())
        git(repo, "init", "-q", "-b", "main")
        for step in app.steps:
            runs = []
            for _ in range(rounds if step.rounds else 1):
                step.edit(repo)
                git(repo, "add", "-A")
                git(repo, "commit", "-q", "--allow-empty", "-m", step.name)
                expect = _greeting(repo) if step.rounds else step.expect
                progress(f"{app.example}: {step.name}")
                runs.append(push_to_first_200(
                    repo, service=service, remote=remote.format(service=service),
                    settings=settings, expect=expect,
                ))  # fmt: skip
            cases.append(_case(f"{app.example}: {step.name}", runs))
    delete_service(service)
    return cases


def _greeting(repo: Path) -> str:
    m = re.search(r"Hi\d* from", (repo / "app.py").read_text())
    assert m, "one_line edits leave `Hi<n> from` in app.py"
    return m.group(0)


def _case(name: str, runs: list[dict[str, float]]) -> Case:
    """The median run's figures (by took_s); with several runs, the fastest and slowest too."""
    ordered = sorted(runs, key=lambda r: r["took_s"])
    median = ordered[len(ordered) // 2]
    case: Case = {"name": name, **{k: round(v, 2) for k, v in median.items()}}
    if len(runs) > 1:
        case.update(runs=len(runs), best_s=round(ordered[0]["took_s"], 2),
                    worst_s=round(ordered[-1]["took_s"], 2),
                    mean_s=round(statistics.fmean(r["took_s"] for r in runs), 2))  # fmt: skip
    return case


COLUMNS = (
    Column("name", "case", "<40"),
    Column("took_s", "push→200 s", ">11.2f"),
    *(Column(f"{s}_s", s, ">9.2f") for s in STAGES),
    Column("total_s", "push", ">7.2f"),
    Column("best_s", "best", ">7.2f"),
    Column("worst_s", "worst", ">7.2f"),
)


def main() -> int:
    parser = bench_arguments(__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="one-line changes pushed per app")
    args = parser.parse_args()
    settings = running_settings()
    token = default_token(settings)
    remote = f"http://x:{token}@localhost:{settings.ingress_port}/git/{{service}}.git"
    cases = [
        case
        for app in APPS
        for case in run_app(app, settings=settings, remote=remote, rounds=max(1, args.rounds))
    ]
    notes = [
        "push→200: git push to the first 200 on the commit URL; the stage columns are the push's",
        "own `-----> Timings:` line (route: until the data plane applied it); a one-line change",
        "shows the median of its rounds; push: the push's own total (its timings' sum and the",
        "ref update), before the bench's first request",
    ]
    emit(cases, COLUMNS, as_json=args.json, notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
