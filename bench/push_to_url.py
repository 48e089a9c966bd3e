"""Seconds from `git push` to the first 200 on the commit URL, for a small Python web app.

Needs a running Slipway (`./scripts/up`). Two figures: the first push (cold: new service, every
layer built) and a one-line change pushed after it (warm: the base layers come from cache).

    .venv/bin/python -m bench.push_to_url [--json]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import Case, Column, bench_arguments, delete_service, emit
from pipeline.cli.client import default_token
from pipeline.core import names
from pipeline.core.settings import Settings

SERVICE = "bench-push"
ROOT = Path(__file__).resolve().parents[1]


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.test",
        "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.test",
    }  # fmt: skip
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def push_to_first_200(repo: Path, *, remote: str, settings: Settings, expect: str) -> float:
    sha = git(repo, "rev-parse", "HEAD")
    host = names.tag_host(names.commit_tag(sha), SERVICE, settings.domain)
    started = time.monotonic()
    git(repo, "push", "-q", "--force", remote, "HEAD:main")
    while True:
        r = httpx.get(
            f"http://127.0.0.1:{settings.ingress_port}/",
            headers={"Host": f"{host}:{settings.ingress_port}"},
            timeout=5,
        )
        if r.status_code == 200 and expect in r.text:
            return time.monotonic() - started
        time.sleep(0.02)


COLUMNS = (Column("name", "case", "<34"), Column("took_s", "s", ">8.2f"))


def main() -> int:
    args = bench_arguments(__doc__).parse_args()
    settings = Settings.from_env()
    token = default_token(settings)
    remote = f"http://x:{token}@localhost:{settings.ingress_port}/git/{SERVICE}.git"
    app = (ROOT / "examples" / "hello-python" / "app.py").read_text()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        (repo / "Dockerfile").write_text((ROOT / "examples/hello-python/Dockerfile").read_text())
        (repo / "app.py").write_text(app)
        git(repo, "init", "-q", "-b", "main")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "first")
        cold = push_to_first_200(repo, remote=remote, settings=settings, expect="Hello from")
        (repo / "app.py").write_text(app.replace("Hello from", "Hi from"))
        git(repo, "commit", "-q", "-am", "one-line change")
        warm = push_to_first_200(repo, remote=remote, settings=settings, expect="Hi from")
    cases: list[Case] = [
        {"name": "first push (new service)", "took_s": round(cold, 2)},
        {"name": "one-line change, warm cache", "took_s": round(warm, 2)},
    ]
    notes = ["git push to first 200 on the commit URL (examples/hello-python, Dockerfile)"]
    emit(cases, COLUMNS, as_json=args.json, notes=notes)
    delete_service(SERVICE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
