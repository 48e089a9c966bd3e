"""`-o table|json|yaml` on every list and describe, tables whole when piped, `-h` everywhere,
`--version`, and shell completion: the `slipway` command in-process against a recording client,
and as a real process where the terminal (or its absence) matters."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.cli import main
from tests.unit.clirecorder import Recorder, install, run

ROOT = Path(__file__).resolve().parents[2]
SLIPWAY = Path(sys.executable).parent / "slipway"
LONG_IMAGE = "registry.example.com/" + "very-long-team-name/" * 6 + "hello@sha256:" + "ab" * 32

SERVICE_ROW = {
    "name": "hello", "url": "http://hello.x", "ready": True,
    "latest_created_revision": "hello-00001", "latest_ready_revision": "hello-00001",
    "traffic": [{"revision": "hello-00001", "percent": 100}],
}  # fmt: skip
REVISION_ROW = {
    "name": "hello-00001", "status": "Ready", "traffic": 100, "tags": [],
    "instances": {"running": 1}, "created": "2025-01-01T00:00:00+00:00",
    "ready_at": "2025-01-01T00:00:05+00:00", "image": LONG_IMAGE, "reason": "", "message": "",
}  # fmt: skip
CERT = {"status": "Ready", "issuer": "local", "not_after": "2026-01-01T00:00:00", "reason": ""}
MANIFEST = {
    "apiVersion": "serving.knative.dev/v1",
    "kind": "Service",
    "metadata": {"name": "hello"},
    "spec": {"template": {"spec": {"containers": [{"image": LONG_IMAGE}]}}},
}
VIEW = {**SERVICE_ROW, "generation": 1, "private": False, "invokers": [],
        "revisions": [REVISION_ROW], "spec": MANIFEST}  # fmt: skip

LISTS = [
    pytest.param(["services", "list"], "/v1/services", [SERVICE_ROW], id="services"),
    pytest.param(
        ["revisions", "list", "hello"], "/v1/services/hello/revisions", [REVISION_ROW],
        id="revisions",
    ),
    pytest.param(
        ["secrets", "list"], "/v1/secrets", [{"name": "db", "version": 2, "keys": ["url"]}],
        id="secrets",
    ),
    pytest.param(
        ["builds", "list"], "/v1/builds",
        [{"id": "b1", "service": "hello", "status": "succeeded", "created": "2025-01-01",
          "error": "", "image": LONG_IMAGE}],
        id="builds",
    ),
    pytest.param(
        ["domains", "list"], "/v1/domainmappings",
        [{"host": "shop.example.com", "service": "hello", "url": "https://shop.example.com",
          "certificate": {**CERT, "name": "shop.example.com"}}],
        id="domains",
    ),
    pytest.param(
        ["domains", "certs"], "/v1/certificates",
        [{**CERT, "name": "*.example.com", "message": ""}],
        id="certificates",
    ),
    pytest.param(
        ["keys", "list"], "/v1/keys", [{"kid": "k1", "signing": True}], id="keys"
    ),
]  # fmt: skip


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    return install(monkeypatch)


@pytest.mark.parametrize(("command", "path", "rows"), LISTS)
@pytest.mark.parametrize(
    ("flag", "parse"),
    [
        pytest.param("json", json.loads, id="json"),
        pytest.param("yaml", yaml.safe_load, id="yaml"),
        pytest.param("YAML", yaml.safe_load, id="upper-case"),
    ],
)
def test_lists_print_the_rows_as_json_or_yaml(
    recorder: Recorder, command: list[str], path: str, rows: list[Any], flag: str, parse: Any
) -> None:
    recorder.replies[("GET", path)] = rows
    result = run(*command, "-o", flag)
    assert result.exit_code == 0, result.output
    assert parse(result.stdout) == rows
    assert "\x1b[" not in result.stdout  # no highlighting: it pipes into jq / yq


@pytest.mark.parametrize(("command", "path", "rows"), LISTS)
def test_lists_still_print_a_table_by_default(
    recorder: Recorder, command: list[str], path: str, rows: list[Any]
) -> None:
    recorder.replies[("GET", path)] = rows
    table = run(*command)
    assert table.exit_code == 0, table.output
    assert run(*command, "--output", "table").stdout == table.stdout
    with pytest.raises(json.JSONDecodeError):
        json.loads(table.stdout)


def test_describe_yaml_is_the_knative_document_and_json_the_whole_view(
    recorder: Recorder,
) -> None:
    recorder.replies[("GET", "/v1/services/hello")] = VIEW
    as_yaml = run("services", "describe", "hello", "-o", "yaml").stdout
    assert yaml.safe_load(as_yaml) == MANIFEST
    assert as_yaml.startswith("apiVersion: serving.knative.dev/v1\nkind: Service\n")  # in order
    as_json = run("services", "describe", "hello", "-o", "json").stdout
    assert json.loads(as_json) == VIEW
    assert run("services", "describe", "hello", "--json").stdout == as_json


def test_describe_refuses_json_and_yaml_at_once(recorder: Recorder) -> None:
    result = run("services", "describe", "hello", "--json", "-o", "yaml")
    assert result.exit_code == 1
    assert result.stderr == "error: --json and -o yaml disagree: use one of them\n"
    assert recorder.calls == []


def test_an_unknown_output_format_names_the_choices(recorder: Recorder) -> None:
    result = run("services", "list", "-o", "xml")
    assert result.exit_code == 2
    assert "'xml' is not one of 'table', 'json', 'yaml'" in result.stderr
    assert recorder.calls == []


LONG_URL = "http://" + "u" * 150
LONG_REASON = "Backoff-" + "r" * 150


@pytest.mark.parametrize(
    ("command", "long_value"),
    [
        pytest.param(["services", "list"], LONG_URL, id="services-list"),
        pytest.param(["revisions", "list", "hello"], LONG_REASON, id="revisions-list"),
        pytest.param(["services", "describe", "hello"], LONG_IMAGE, id="describe"),
    ],
)
def test_piped_tables_keep_long_rows_whole_on_one_line(
    recorder: Recorder, command: list[str], long_value: str
) -> None:
    recorder.replies[("GET", "/v1/services")] = [{**SERVICE_ROW, "url": LONG_URL}]
    recorder.replies[("GET", "/v1/services/hello/revisions")] = [
        {**REVISION_ROW, "reason": LONG_REASON}
    ]
    recorder.replies[("GET", "/v1/services/hello")] = VIEW
    # A narrow COLUMNS would cut a table on a terminal; a pipe has no width.
    result = run(*command, env={"COLUMNS": "40"})
    assert result.exit_code == 0, result.output
    assert any(long_value in line for line in result.stdout.splitlines()), result.stdout
    assert all(line == line.rstrip() for line in result.stdout.splitlines())


def test_a_terminal_still_gets_a_table_fitted_to_its_width() -> None:
    """The other half of the rule, with a real pseudo-terminal as stdout."""
    code = (
        "from rich.table import Table\n"
        "from pipeline.cli.formats import print_table\n"
        "t = Table('NAME', 'IMAGE', box=None)\n"
        f"t.add_row('hello', {LONG_IMAGE!r})\n"
        "print_table(t)\n"
    )
    primary, secondary = pty.openpty()
    env = {**os.environ, "COLUMNS": "60", "LINES": "25", "TERM": "dumb-ish"}
    env.pop("FORCE_COLOR", None)
    proc = subprocess.run(
        [sys.executable, "-c", code], stdout=secondary, stderr=subprocess.PIPE, env=env,
        cwd=ROOT, timeout=60, check=True,
    )  # fmt: skip
    os.close(secondary)
    shown = _read_all(primary).decode()
    assert proc.returncode == 0
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).rstrip() for line in shown.splitlines()]
    assert LONG_IMAGE not in shown  # fitted: cut with an ellipsis
    assert 40 < max(len(line) for line in lines) <= 60, lines


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def _every_command() -> list[list[str]]:
    commands = [[name] for name, _, _ in main.COMMANDS]
    for group, _, members in main.GROUPS:
        commands += [[group]] + [[group, name] for name, _ in members]
    return commands


@pytest.mark.parametrize("command", _every_command(), ids=" ".join)
def test_dash_h_is_help_everywhere(command: list[str]) -> None:
    short, long = run(*command, "-h"), run(*command, "--help")
    assert short.exit_code == 0, short.output
    assert "Usage:" in short.stdout
    assert short.stdout == long.stdout


def test_version_flag_and_command_agree() -> None:
    from pipeline import __version__

    assert run("--version").stdout == run("version").stdout == f"slipway {__version__}\n"


def test_shell_completion_is_on() -> None:
    env = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    script = subprocess.run(
        [SLIPWAY, "--show-completion", "bash"], env=env, capture_output=True, text=True,
        timeout=60, check=True,
    ).stdout  # fmt: skip
    assert "complete -o default -F _slipway_completion slipway" in script
    assert "_SLIPWAY_COMPLETE=complete_bash" in script
    # What that script runs on <TAB>: the choices of -o, from the command itself.
    completing = {**env, "_SLIPWAY_COMPLETE": "complete_bash", "COMP_CWORD": "4",
                  "COMP_WORDS": "slipway services list -o "}  # fmt: skip
    offered = subprocess.run(
        [SLIPWAY], env=completing, capture_output=True, text=True, timeout=60, check=True
    ).stdout  # fmt: skip
    assert offered.split() == ["table", "json", "yaml"]
    assert "--install-completion" in run("--help").stdout
