"""The `slipway` commands other than deploy against a recording client: what each sends, what
the user reads back (tables, the traffic block, one `error:` line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli.client import ClientError
from tests.unit.clirecorder import Recorder, install, run


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    return install(monkeypatch)


TRAFFIC_VIEW = {
    "name": "hello",
    "url": "http://hello.x",
    "traffic": [
        {"percent": 90, "revision": "hello-00001", "tag": None},
        {"percent": 10, "revision": "hello-00002", "tag": "blue", "url": "http://blue--hello.x"},
    ],
}


def test_traffic_sends_the_edit_and_prints_the_split(recorder: Recorder) -> None:
    recorder.replies[("POST", "/v1/services/hello/traffic")] = TRAFFIC_VIEW
    result = run(
        "traffic", "hello", "--to-revisions", "hello-00001=90, hello-00002=10", "--to-tags",
        "blue=5", "--set-tags", "blue=hello-00002", "--remove-tags", "old, ,older", "--to-latest",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [(_, _, kwargs)] = recorder.calls
    assert kwargs["json"] == {
        "to_revisions": {"hello-00001": 90, "hello-00002": 10},
        "to_tags": {"blue": 5},
        "to_latest": True,
        "set_tags": {"blue": "hello-00002"},
        "remove_tags": ["old", "older"],
    }
    assert result.stdout.splitlines() == [
        "hello  http://hello.x",
        "   90%  hello-00001",
        "   10%  hello-00002  #blue http://blue--hello.x",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["--to-revisions", "hello-00001"],
            "--to-revisions takes NAME=VALUE pairs separated by commas, got 'hello-00001'",
            id="no-equals",
        ),
        pytest.param(
            ["--to-tags", "blue=ten"], "--to-tags: blue=ten is not a whole percent", id="not-int"
        ),
        pytest.param(["--set-tags", "blue="], "--set-tags takes NAME=VALUE", id="empty-value"),
    ],
)
def test_traffic_refuses_malformed_pairs(recorder: Recorder, args: list[str], message: str) -> None:
    result = run("traffic", "hello", *args)
    assert result.exit_code == 1
    assert message in result.stderr
    assert recorder.calls == []


def test_rollback_prints_where_traffic_went(recorder: Recorder) -> None:
    view = {**TRAFFIC_VIEW, "rolled_back_to": "hello-00001"}
    recorder.replies[("POST", "/v1/services/hello/rollback")] = view
    result = run("rollback", "hello")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:2] == [
        "Rolled back hello to hello-00001",
        "hello  http://hello.x",
    ]


def test_api_errors_become_one_error_line(recorder: Recorder) -> None:
    recorder.replies[("GET", "/v1/services/nope")] = ClientError("service 'nope' not found")
    result = run("services", "describe", "nope")
    assert result.exit_code == 1
    assert result.stderr == "error: service 'nope' not found\n"


def test_services_describe(recorder: Recorder) -> None:
    revision = {
        "name": "hello-00002", "status": "Failed", "instances": {"running": 0}, "image": "r/x@sha",
        "reason": "ExitCode", "message": "exited 1",
    }  # fmt: skip
    view = {**TRAFFIC_VIEW, "generation": 2, "private": True, "invokers": ["user:a"],
            "revisions": [revision]}  # fmt: skip
    recorder.replies[("GET", "/v1/services/hello")] = view
    result = run("services", "describe", "hello")
    assert result.exit_code == 0, result.output
    lines = [line.rstrip() for line in result.stdout.splitlines()]
    assert lines[:5] == [
        "hello  http://hello.x  generation 2",
        "Private; invokers: user:a",
        "Traffic:",
        "   90%  hello-00001",
        "   10%  hello-00002  #blue http://blue--hello.x",
    ]
    assert lines[5].split() == ["REVISION", "STATUS", "INSTANCES", "IMAGE", "REASON"]
    assert lines[6].split() == ["hello-00002", "Failed", "0", "r/x@sha", "ExitCode"]
    assert lines[7] == "hello-00002: exited 1"


def test_services_list(recorder: Recorder) -> None:
    recorder.replies[("GET", "/v1/services")] = [
        {**TRAFFIC_VIEW, "latest_ready_revision": "hello-00002"},
        {"name": "idle", "url": "http://idle.x", "latest_ready_revision": None, "traffic": []},
    ]
    result = run("services", "list")
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows == [
        ["NAME", "URL", "LATEST", "READY", "TRAFFIC"],
        ["hello", "http://hello.x", "hello-00002", "hello-00001=90%,", "hello-00002=10%"],
        ["idle", "http://idle.x", "-", "-"],
    ]


def test_invokers_and_keys(recorder: Recorder) -> None:
    access = {"name": "hello", "private": True, "invokers": ["service:a", "user:b"]}
    recorder.replies[("POST", "/v1/services/hello/invokers")] = access
    recorder.replies[("DELETE", "/v1/services/hello/invokers/user:b")] = {
        **access, "invokers": []
    }  # fmt: skip
    keys = [{"kid": "k2", "signing": True}, {"kid": "k1", "signing": False}]
    recorder.replies[("POST", "/v1/keys/rotate")] = keys
    recorder.replies[("GET", "/v1/keys")] = keys
    recorder.replies[("POST", "/v1/auth/identity-token")] = {"token": "ey.x.y"}
    outputs = [
        run("services", "add-invoker", "hello", "--member", "user:b").stdout,
        run("services", "remove-invoker", "hello", "--member", "user:b").stdout,
        run("keys", "rotate").stdout,
        run("keys", "list").stdout,
        run("auth", "print-identity-token", "--audience", "http://hello.x").stdout,
    ]
    assert outputs == [
        "hello  private  invokers: service:a, user:b\n",
        "hello  private  invokers: -\n",
        "k2  signing\nk1  verifying\n",
        "k2  signing\nk1  verifying\n",
        "ey.x.y\n",
    ]
    assert recorder.calls[0][2] == {"json": {"member": "user:b"}}
    assert recorder.calls[-1][2] == {"json": {"audience": "http://hello.x", "user": "admin"}}


def test_secrets_set_reads_files_and_never_echoes_values(
    recorder: Recorder, tmp_path: Path
) -> None:
    recorder.replies[("PUT", "/v1/secrets/db")] = {"version": 3, "keys": ["url", "cert.pem"]}
    (tmp_path / "cert.pem").write_text("PEM")
    result = run("secrets", "set", "db", "url=postgres://u:p@h/d", f"cert.pem=@{tmp_path}/cert.pem")
    assert result.exit_code == 0, result.output
    assert recorder.calls[0][2] == {
        "json": {"data": {"url": "postgres://u:p@h/d", "cert.pem": "PEM"}}
    }
    assert result.stdout == "db v3  keys: url, cert.pem\n"
    refused = run("secrets", "set", "db", "hunter2")
    assert refused.exit_code == 1
    assert refused.stderr == "error: expected KEY=VALUE or KEY=@file, got 'hunter2'\n"


def test_builds_log_streams_then_reports_failure(recorder: Recorder) -> None:
    recorder.replies[("GET", "/v1/builds/b1")] = {"status": "failed", "error": "exit 2"}
    result = run("builds", "log", "b1", "-f")
    assert result.exit_code == 1
    assert result.stdout == "step 1\n"
    assert result.stderr == "error: build b1 failed: exit 2\n"
    assert recorder.calls[0] == ("GET", "/v1/builds/b1/log", {"params": {"follow": "1"}})


def test_metadata_refuses_an_engine_without_its_option() -> None:
    base = ["metadata", "--bind", "127.0.0.1", "--port", "1", "--keys-dir", "/k", "--platform",
            "p", "--issuer", "i", "--domain", "d"]  # fmt: skip
    assert run(*base, "--engine", "podman").stderr == (
        "error: --engine 'podman': use docker or knative\n"
    )
    assert run(*base).stderr == "error: --engine docker needs --network\n"
    assert run(*base, "--engine", "knative").stderr == "error: --engine knative needs --namespace\n"


def test_version() -> None:
    from pipeline import __version__

    assert run("version").stdout == f"slipway {__version__}\n"
