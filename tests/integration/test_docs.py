"""The console examples of README.md and docs/*.md, run in order against a real control plane.

Each page with runnable examples gets a platform of its own (control plane, HAProxy, registry)
and one bash session, so `cd`, `export` and shell variables carry from one command to the next as
they would for a reader typing them. The session starts in a scratch folder holding a copy of
`examples/`, so the pages' `--source examples/...` paths work and nothing in the checkout moves.
Output (stdout and stderr together, as a terminal shows them) must match the page line by line
(tests/docexamples.py: `...` wildcards, whitespace runs compare as one space). A command must
exit 0 unless its shown output has an `Error` line.

What the test substitutes, because the fixture's platform is not the one `./scripts/up` starts:

- in commands and shown output: `localhost:8080` and `127.0.0.1:8080` → the fixture's ingress
  port; `127.0.0.1:8081` → its API port; `127.0.0.1:5000` → its registry; `/var/lib/slipway` →
  its data dir;
- `slipway` on PATH is `python -m pipeline.cli` of this checkout, with `SLIPWAY_URL` and
  `SLIPWAY_TOKEN` of the fixture (a reader's CLI finds both from the data dir);
- curl runs with `--silent --show-error` (a `.curlrc` in `CURL_HOME`): on a terminal curl shows
  no progress meter, into a pipe it would;
- git commits get an author from `GIT_AUTHOR_*`/`GIT_COMMITTER_*` (a reader's git is set up).
"""

from __future__ import annotations

import os
import secrets
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.docexamples import Block, Command, blocks, explain, matches
from tests.integration.conftest import ROOT, Slipway, free_port, running_slipway

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND_TIMEOUT_S = 300.0
# Settings a page's examples need that the fixture's platform does not have by default. HTTPS:
# no ACME directory, so the local CA signs every name (no CA on the internet is asked).
PAGE_SETTINGS = {"https.md": {"SLIPWAY_HTTPS_PORT": "", "SLIPWAY_ACME_DIRECTORY": ""}}


def runnable(page: Path) -> list[Block]:
    return [block for block in blocks(page) if not block.not_run]


RUNNABLE = [page for page in PAGES if runnable(page)]


class Shell:
    """One bash process fed commands one at a time; each command's output ends at a marker."""

    def __init__(self, *, cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            cwd=cwd, env=env,
        )  # fmt: skip

    def run(self, command: str, *, timeout_s: float) -> tuple[int, str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        marker = f"--docs-{secrets.token_hex(8)}--"
        # Braces, not a subshell: `cd` and `export` must stay. stdin is not the script.
        script = f"{{\n{command}\n}} </dev/null 2>&1\nprintf '\\n{marker}%s\\n' \"$?\"\n"
        self.proc.stdin.write(script.encode())
        self.proc.stdin.flush()
        return self._read_until(marker, timeout_s=timeout_s)

    def _read_until(self, marker: str, *, timeout_s: float) -> tuple[int, str]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        data = b""
        deadline = time.monotonic() + timeout_s
        while marker.encode() not in data or not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise AssertionError(f"no end within {timeout_s:.0f}s; so far:\n{data.decode()}")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"the shell exited; output:\n{data.decode()}")
            data += chunk
        text = data.decode(errors="replace")
        output, _, status = text.rpartition(marker)
        # The printf's leading newline ends an unterminated last line; drop the one it added.
        return int(status.strip()), output[:-1] if output.endswith("\n") else output

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def substitutions(sw: Slipway) -> list[tuple[str, str]]:
    https = sw.env.get("SLIPWAY_HTTPS_PORT", "")
    return [
        *([(":8443", f":{https}")] if https else []),
        ("localhost:8080", f"localhost:{sw.ingress_port}"),
        ("127.0.0.1:8080", f"127.0.0.1:{sw.ingress_port}"),
        ("127.0.0.1:8081", f"127.0.0.1:{sw.api_port}"),
        ("127.0.0.1:5000", sw.env["SLIPWAY_REGISTRY"]),
        ("/var/lib/slipway", str(sw.data_dir)),
    ]


def substitute(text: str, pairs: list[tuple[str, str]]) -> str:
    for old, new in pairs:
        text = text.replace(old, new)
    return text


def reader_env(sw: Slipway, bin_dir: Path) -> dict[str, str]:
    """The environment of a reader's shell, pointed at the fixture's platform."""
    return {
        **sw.env,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SLIPWAY_URL": sw.url,
        "SLIPWAY_TOKEN": sw.token,
        "PYTHONUNBUFFERED": "1",  # progress and results interleave as on a terminal
        "COLUMNS": "200",
        "GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.test",
        "GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@example.test",
        "GIT_TERMINAL_PROMPT": "0",
        "CURL_HOME": str(bin_dir),
    }  # fmt: skip


def reader_tools(bin_dir: Path) -> None:
    """`slipway` on PATH, and curl quiet as on a terminal."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "slipway"
    script.write_text(f'#!/bin/sh\nexec {sys.executable} -m pipeline.cli "$@"\n')
    script.chmod(0o755)
    (bin_dir / ".curlrc").write_text("silent\nshow-error\n")


@pytest.fixture
def shell_for(
    request: pytest.FixtureRequest, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
    docker_client: docker.DockerClient, registry: str, busybox_image: str, python_image: str,
) -> Iterator[tuple[Slipway, Shell]]:  # fmt: skip
    work = tmp_path / "reader"
    work.mkdir()
    shutil.copytree(ROOT / "examples", work / "examples")
    reader_tools(tmp_path / "bin")
    page: Path = request.node.callspec.params["page"]
    settings = dict(PAGE_SETTINGS.get(page.name, {}))
    if "SLIPWAY_HTTPS_PORT" in settings:
        settings["SLIPWAY_HTTPS_PORT"] = str(free_port())
    with running_slipway(tmp_path_factory, docker_client, registry, settings) as sw:
        shell = Shell(cwd=work, env=reader_env(sw, tmp_path / "bin"))
        try:
            yield sw, shell
        finally:
            shell.close()


def check(command: Command, page: Path, *, shell: Shell, pairs: list[tuple[str, str]]) -> None:
    where = f"{page.relative_to(ROOT)}:{command.line}"
    status, output = shell.run(substitute(command.command, pairs), timeout_s=COMMAND_TIMEOUT_S)
    expected = [substitute(line, pairs) for line in command.expected]
    got = output.split("\n") if output else []
    if os.environ.get("DOCS_SHOW"):  # writing a page: `DOCS_SHOW=1 pytest -s` prints the output
        print(f"{where}\n$ {command.command}\n{output}")
    assert matches(expected, got), f"{where}: $ {command.command}\n{explain(expected, got)}"
    shows_error = any(line.lstrip().lower().startswith("error") for line in expected)
    assert status == 0 or shows_error, f"{where}: $ {command.command}\nexited {status}:\n{output}"


@pytest.mark.parametrize("page", RUNNABLE, ids=[p.name for p in RUNNABLE])
def test_page_examples_run_as_shown(page: Path, shell_for: tuple[Slipway, Shell]) -> None:
    sw, shell = shell_for
    pairs = substitutions(sw)
    for block in runnable(page):
        for command in block.commands:
            check(command, page, shell=shell, pairs=pairs)
