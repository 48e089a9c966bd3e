"""`slipway deploy` against a recording client: options to the DeployParams query the API reads,
the source as the body, build secrets kept out of the URL, the event stream as progress lines."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import typer.main

from pipeline.cli import deployments, envfiles
from pipeline.cli.main import app
from pipeline.core.errors import InvalidInput
from pipeline.deploy.params import DeployParams
from tests.unit.clirecorder import DONE, Recorder, install, run


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    return install(monkeypatch)


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


def test_every_deploy_param_has_a_flag() -> None:
    """The API reads DeployParams: a field without a `deploy` flag could not be sent."""
    deploy = typer.main.get_command(app).commands["deploy"]
    flags = {opt for param in deploy.params for opt in [*param.opts, *param.secondary_opts]}
    for field in DeployParams.model_fields:
        assert deployments.FLAGS.get(field, "--" + field.replace("_", "-")) in flags, field


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param("--timeout 0", "--timeout: Input should be greater than or equal to 1",
                     id="timeout-zero"),
        pytest.param("--timeout 3601", "--timeout: Input should be less than or equal to 3600",
                     id="timeout-over-an-hour"),
        pytest.param("--concurrency -1", "--concurrency: Input should be greater than or equal",
                     id="negative-concurrency"),
        pytest.param("--max-instances -2", "--max-instances: Input should be greater than",
                     id="negative-max"),
        pytest.param("--cpu 0.5x", "--cpu: '0.5x' is not a positive Kubernetes quantity; write "
                     "e.g. '1', '0.5' or '500m'", id="cpu-not-a-quantity"),
        pytest.param("--cpu 0", "--cpu: '0' is not a positive", id="cpu-zero"),
        pytest.param("--memory 128MB", "--memory: '128MB' is not a positive Kubernetes quantity; "
                     "write e.g. '128Mi' or '1Gi'", id="memory-not-a-quantity"),
        pytest.param("--memory -1Gi", "--memory: '-1Gi' is not a positive", id="memory-negative"),
        pytest.param("--port 8012", "--port: port 8012 is reserved by Knative's queue-proxy",
                     id="port-reserved"),
        pytest.param("--port 0", "--port: Input should be greater than or equal to 1",
                     id="port-zero"),
        pytest.param("--port 65536", "--port: Input should be less than or equal to 65535",
                     id="port-too-high"),
    ],
)  # fmt: skip
def test_deploy_refuses_values_out_of_range_naming_the_flag(
    recorder: Recorder, args: str, message: str
) -> None:
    result = run("deploy", "hello", "--image", "r/x:1", *shlex.split(args))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {message}")
    assert recorder.calls == []


@pytest.mark.parametrize(
    ("text", "pairs"),
    [
        pytest.param("A=1\nB=2\n", ["A=1", "B=2"], id="plain"),
        pytest.param("# c\n\n   \n  # indented\nA=1", ["A=1"], id="comments-and-blanks"),
        pytest.param("export A=1\n", ["A=1"], id="export"),
        pytest.param("A='x y'\nB=\"q\"\nC='\nD=\"x'", ["A=x y", "B=q", "C='", "D=\"x'"],
                     id="one-pair-of-matching-quotes"),
        pytest.param(" A = 1 \n", ["A=1"], id="spaces-trimmed"),
        pytest.param("A=b=c\nE=\n", ["A=b=c", "E="], id="value-may-hold-equals-or-nothing"),
    ],
)  # fmt: skip
def test_env_file_grammar(text: str, pairs: list[str]) -> None:
    assert envfiles.parse(text, path=Path("app.env")) == pairs


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("A=1\nJUSTANAME", "app.env:2: expected KEY=value, got 'JUSTANAME'",
                     id="no-equals"),
        pytest.param("=1", "app.env:1: expected KEY=value, got '=1'", id="no-key"),
    ],
)  # fmt: skip
def test_env_file_refuses(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        envfiles.parse(text, path=Path("app.env"))


def test_build_secrets_from_flags_and_environment() -> None:
    given = ["TOKEN", "PIN=1", "PIN=2", "URL=a=b"]
    assert deployments.build_secrets(given, environ={"TOKEN": "t"}) == (
        ("TOKEN", "t"),
        ("PIN", "2"),
        ("URL", "a=b"),
    )
    with pytest.raises(InvalidInput, match="build secret 'MY-KEY'=… must look like") as e:
        deployments.build_secrets(["MY-KEY=s3cr3t"], environ={})
    assert "s3cr3t" not in str(e.value)  # the value of a refused secret is never echoed


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


@pytest.mark.parametrize(
    ("ready", "last_lines"),
    [
        pytest.param({"urls": ["http://hello.x", "http://v2--hello.x"], "percent": 100},
                     ["-----> hello-00002 ready   1.2s", "       http://hello.x  (100%)",
                      "       http://v2--hello.x"], id="ready-lists-them-once"),
        pytest.param({}, ["-----> hello-00002 ready   1.2s", "hello-00002 ready  http://hello.x"],
                     id="older-server-said-at-the-end"),
        pytest.param(None, ["-----> Revision hello-00002 created, waiting until ready",
                            "hello-00002 ready  http://hello.x"], id="no-ready-step"),
    ],
)  # fmt: skip
def test_deploy_prints_the_urls_once(
    recorder: Recorder, ready: dict[str, Any] | None, last_lines: list[str]
) -> None:
    recorder.events = [
        {"event": "revision", "revision": "hello-00002"},
        *([] if ready is None else
          [{"event": "ready", "revision": "hello-00002", "seconds": 1.2, **ready}]),
        {**DONE, "urls": ["http://hello.x", "http://v2--hello.x"] if ready else ["http://hello.x"]},
    ]  # fmt: skip
    result = run("deploy", "hello", "--image", "r/x:1")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-len(last_lines):] == last_lines
    assert result.stdout.count("http://hello.x") == 1


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
