"""The `slipway` command against a recording client: what each option puts on the wire, and what
the user reads back. No server: `Client.from_env` hands out a fake that records every call."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from pipeline.cli.client import Client, ClientError
from pipeline.cli.main import app

DONE = {"event": "done", "revision": "hello-00002", "created": True, "urls": ["http://hello.x"]}


class Recorder:
    """Stands in for `Client`: answers from a table, streams the given events, records calls."""

    def __init__(self, replies: dict[tuple[str, str], Any], events: list[dict[str, Any]]) -> None:
        self.replies = replies
        self.events = events
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        self.calls.append((method, path, kwargs))
        reply = self.replies[(method, path)]
        if isinstance(reply, ClientError):
            raise reply
        return reply

    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        self.calls.append((method, path, kwargs))
        yield from self.events

    def stream_text(self, path: str, **kwargs: Any) -> Iterator[str]:
        self.calls.append(("GET", path, kwargs))
        yield "step 1\n"


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    fake = Recorder({}, [DONE])
    monkeypatch.setattr(Client, "from_env", classmethod(lambda cls: fake))
    return fake


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})


def by_key(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """What the API reads from a query: each key's values in order (keys in any order)."""
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        grouped.setdefault(key, []).append(value)
    return grouped


@pytest.mark.parametrize(
    ("args", "query"),
    [
        pytest.param("--image r/x:1", "image=r/x:1", id="image-only"),
        pytest.param(
            "--image r/x:1 --env A=1 -e 'B=two words' --remove-env C --remove-env D"
            " --set-secrets DB=db:url --concurrency 0 --timeout 30 --min-instances 1"
            " --max-instances 0 --no-traffic --tag blue --allow-unauthenticated",
            "env=A=1&env=B=two words&remove_env=C&remove_env=D&secret=DB=db:url&concurrency=0"
            "&timeout=30&min_instances=1&max_instances=0&no_traffic=1&tag=blue"
            "&allow_unauthenticated=1&image=r/x:1",
            id="image-every-flag",
        ),
        pytest.param(
            "--image r/x:1 --no-allow-unauthenticated",
            "allow_unauthenticated=0&image=r/x:1",
            id="private",
        ),
        pytest.param(
            "--image r/x:1 --tag '' --builder '' --dockerfile ''",
            "image=r/x:1",
            id="empty-strings-left-out",
        ),
        pytest.param(
            "--git https://g/x.git --builder template:python --dockerfile deploy/Dockerfile"
            " --base-image slipway/python --build-arg X=1 --build-arg Y=2",
            "build_arg=X=1&build_arg=Y=2&builder=template:python&dockerfile=deploy/Dockerfile"
            "&base_image=slipway/python",
            id="git-build-options",
        ),
        pytest.param("--git https://g/x.git --ref main", "", id="git-nothing-else"),
    ],
)
def test_deploy_options_become_the_query(recorder: Recorder, args: str, query: str) -> None:
    """`query` is what the CLI sent before DeployParams, unencoded: KEY=VALUE joined by `&`."""
    result = run("deploy", "hello", *shlex.split(args))
    assert result.exit_code == 0, result.output
    [(method, path, kwargs)] = recorder.calls
    assert (method, path) == ("POST", "/v1/services/hello/deployments")
    expected = [pair.partition("=")[::2] for pair in query.split("&") if pair]
    assert by_key(kwargs["params"]) == by_key(expected)
    assert "hello-00002 ready  http://hello.x" in result.stdout


def test_deploy_env_file_comes_before_env_flags(recorder: Recorder, tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text("# settings\n\nGREETING='hello world'\nexport OTHER=x\n  Q = \"a\"  \n")
    result = run("deploy", "hello", "--image", "r/x:1", "--env-file", str(env_file), "-e", "Z=9")
    assert result.exit_code == 0, result.output
    [(_, _, kwargs)] = recorder.calls
    env = by_key(kwargs["params"])["env"]
    assert env == ["GREETING=hello world", "OTHER=x", "Q=a", "Z=9"]


def test_deploy_env_file_line_without_equals_fails(recorder: Recorder, tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text("A=1\nJUSTANAME\n")
    result = run("deploy", "hello", "--image", "r/x:1", "--env-file", str(env_file))
    assert result.exit_code == 1
    assert f"{env_file}:2: expected KEY=value, got 'JUSTANAME'" in result.stderr
    assert recorder.calls == []


def test_deploy_source_uploads_with_build_secrets_in_headers(
    recorder: Recorder, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    result = run(
        "deploy", "hello", "--source", str(tmp_path), "--build-secret", "TOKEN",
        "--build-secret", "PIN=1234", "--no-traffic", env={"TOKEN": "from-env"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [(_, _, kwargs)] = recorder.calls
    assert kwargs["params"] == [("no_traffic", "1")]
    assert kwargs["content"][:2] == b"\x1f\x8b"  # gzip
    assert kwargs["headers"] == [
        ("Content-Type", "application/gzip"),
        ("X-Slipway-Build-Secret", "TOKEN=from-env"),
        ("X-Slipway-Build-Secret", "PIN=1234"),
    ]
    assert result.stdout.startswith(f"-----> Uploading {tmp_path} (")


def test_deploy_git_sends_the_repository_and_secrets_in_the_body(recorder: Recorder) -> None:
    result = run("deploy", "hello", "--git", "https://g/x.git", "--build-secret", "PIN=1234")
    assert result.exit_code == 0, result.output
    [(_, _, kwargs)] = recorder.calls
    assert kwargs["json"] == {
        "git": {"url": "https://g/x.git", "ref": "HEAD"},
        "build_secrets": {"PIN": "1234"},
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param([], "give exactly one of --source DIR", id="no-source"),
        pytest.param(
            ["--image", "r/x:1", "--git", "https://g"], "give exactly one of", id="two-sources"
        ),
        pytest.param(
            ["--image", "r/x:1", "--build-secret", "NOT_IN_ENV_ANYWHERE"],
            "--build-secret NOT_IN_ENV_ANYWHERE: no such variable in your environment",
            id="build-secret-not-in-environment",
        ),
    ],
)
def test_deploy_refuses_before_sending(recorder: Recorder, args: list[str], message: str) -> None:
    result = run("deploy", "hello", *args)
    assert result.exit_code == 1
    assert message in result.stderr
    assert recorder.calls == []


def test_deploy_prints_the_event_stream(recorder: Recorder) -> None:
    recorder.events = [
        {"event": "build", "build": "b1", "builder": "dockerfile"},
        {"event": "log", "line": "-----> Step 1"},
        {"event": "log", "line": "RUN true"},
        {"event": "stage", "text": "Built and pushed", "seconds": 3.5},
        {"event": "revision", "revision": "hello-00002"},
        {"event": "ready", "revision": "hello-00002", "seconds": 1.2},
        DONE,
    ]
    result = run("deploy", "hello", "--image", "r/x:1")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "-----> Build b1 (dockerfile)",
        "-----> Step 1",
        "       RUN true",
        "-----> Built and pushed   3.5s",
        "-----> Revision hello-00002 created, waiting until ready",
        "-----> hello-00002 ready   1.2s",
        "hello-00002 ready  http://hello.x",
    ]


def test_deploy_error_event_prints_the_log_tail_and_fails(recorder: Recorder) -> None:
    recorder.events = [{"event": "error", "message": "build failed", "log_tail": "E: no such"}]
    result = run("deploy", "hello", "--image", "r/x:1")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["E: no such", "error: build failed"]


def test_deploy_stream_ending_early_fails(recorder: Recorder) -> None:
    recorder.events = [{"event": "revision", "revision": "hello-00002"}]
    result = run("deploy", "hello", "--image", "r/x:1")
    assert result.exit_code == 1
    assert "the deployment stream ended early" in result.stderr


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
