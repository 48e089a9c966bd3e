"""`deploy --port/--command/--args/--cpu/--memory` and `traffic --update-tags/--clear-tags/
LATEST=N`: the flag grammar, the query the CLI sends, the Flags the API reads back, and the
pure edits they make to the stored Service (state in, state out)."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from pipeline import spec
from pipeline.cli.deployments import gcloud_list
from pipeline.core import traffic
from pipeline.core.errors import InvalidInput, InvalidSpec
from pipeline.deploy.manifests import Flags, edit_template
from pipeline.deploy.params import DeployParams
from tests.unit.clirecorder import Recorder, install, run
from tests.unit.factories import revision
from tests.unit.test_api import AUTH, DEPLOY, RecordingDeployer, app_with, call
from tests.unit.test_cli_deploy import by_key

MIN = "autoscaling.knative.dev/min-scale"
LEGACY_MIN = "autoscaling.knative.dev/minScale"


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    return install(monkeypatch)


# --- the gcloud list grammar ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "words"),
    [
        pytest.param(None, None, id="not-given-keeps"),
        pytest.param([""], [], id="empty-clears"),
        pytest.param(["python,app.py"], ["python", "app.py"], id="commas"),
        pytest.param(["python", "app.py"], ["python", "app.py"], id="repeated-adds-up"),
        pytest.param(["-c", "echo hi"], ["-c", "echo hi"], id="spaces-kept"),
        pytest.param(["^|^-c|echo a,b"], ["-c", "echo a,b"], id="other-delimiter"),
        pytest.param(["^::^a::b,c"], ["a", "b,c"], id="longer-delimiter"),
        pytest.param(["^x"], ["^x"], id="a-lone-caret-is-a-word"),
    ],
)  # fmt: skip
def test_gcloud_list_grammar(given: list[str] | None, words: list[str] | None) -> None:
    assert gcloud_list(given) == words


# --- the CLI's query and what the API makes of it ------------------------------------------------


@pytest.mark.parametrize(
    ("args", "query"),
    [
        pytest.param(
            "--port 9000 --command=python,app.py --args=-m,http.server --cpu 0.5 --memory 128Mi",
            "port=9000&command=python&command=app.py&args=-m&args=http.server&cpu=0.5"
            "&memory=128Mi",
            id="every-container-flag",
        ),
        pytest.param("--command= --args ''", "command=&args=", id="cleared"),
        pytest.param("", "", id="unset-left-out"),
    ],
)
def test_container_flags_become_the_query(recorder: Recorder, args: str, query: str) -> None:
    result = run("deploy", "hello", "--image", "r/x:1", *shlex.split(args))
    assert result.exit_code == 0, result.output
    [(_, _, kwargs)] = recorder.calls
    expected = [pair.partition("=")[::2] for pair in f"image=r/x:1&{query}".split("&") if pair]
    assert by_key(kwargs["params"]) == by_key(expected)


@pytest.mark.parametrize(
    ("params", "flags"),
    [
        pytest.param(
            DeployParams(image="r/x:1", port=9000, command=["sh"], args=["-c", "echo a,b"],
                         cpu="500m", memory="1Gi"),
            Flags(port=9000, command=("sh",), args=("-c", "echo a,b"), cpu="500m", memory="1Gi"),
            id="set",
        ),
        pytest.param(DeployParams(image="r/x:1", command=[], args=[]),
                     Flags(command=(), args=()), id="cleared"),
        pytest.param(DeployParams(image="r/x:1"), Flags(), id="unset"),
    ],
)  # fmt: skip
def test_the_api_reads_the_container_flags_the_cli_sends(
    params: DeployParams, flags: Flags
) -> None:
    deployer = RecordingDeployer()
    reply = call(app_with(deployer), "POST", DEPLOY, params=params.to_query(), headers=AUTH)
    assert reply.status_code == 200, reply.text
    assert deployer.calls[0][1]["flags"] == flags


def test_the_api_refuses_a_bad_limit_with_400() -> None:
    deployer = RecordingDeployer()
    params = {"image": "r/x:1", "memory": "lots"}
    reply = call(app_with(deployer), "POST", DEPLOY, params=params, headers=AUTH)
    assert reply.status_code == 400
    assert "'lots' is not a positive Kubernetes quantity" in reply.json()["detail"]
    assert deployer.calls == []


# --- the edits to the stored Service --------------------------------------------------------------


def stored(container: dict[str, Any], annotations: Any = None) -> dict[str, Any]:
    template: dict[str, Any] = {"spec": {"containers": [{"image": "r/x@sha256:" + "0" * 64,
                                                          **container}]}}  # fmt: skip
    if annotations is not None:
        template["metadata"] = {"annotations": annotations}
    return {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": {"name": "hello"}, "spec": {"template": template}}  # fmt: skip


RUNNING = {
    "command": ["python"], "args": ["app.py"], "ports": [{"containerPort": 9000, "name": "h2c"}],
    "resources": {"limits": {"cpu": "1", "memory": "256Mi"}, "requests": {"cpu": "100m"}},
}  # fmt: skip


@pytest.mark.parametrize(
    ("before", "flags", "after"),
    [
        pytest.param(
            {}, Flags(port=9000, command=("python",), args=("app.py",), cpu="0.5",
                      memory="128Mi"),
            {"command": ["python"], "args": ["app.py"], "ports": [{"containerPort": 9000}],
             "resources": {"limits": {"cpu": "0.5", "memory": "128Mi"}}},
            id="first-deploy",
        ),
        pytest.param(RUNNING, Flags(), RUNNING, id="unset-flags-keep-the-last-revisions"),
        pytest.param(RUNNING, Flags(concurrency=3), RUNNING, id="other-flags-keep-them-too"),
        pytest.param(
            RUNNING, Flags(command=(), args=()),
            {**RUNNING, "command": [], "args": []}, id="empty-clears",
        ),
        pytest.param(
            RUNNING, Flags(port=8081, memory="1Gi"),
            {**RUNNING, "ports": [{"containerPort": 8081, "name": "h2c"}],
             "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "100m"}}},
            id="port-keeps-its-name-limits-keep-the-other",
        ),
        pytest.param(
            {"readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}}}, Flags(port=9000),
            {"ports": [{"containerPort": 9000}],
             "readinessProbe": {"httpGet": {"path": "/ready", "port": 9000}}},
            id="a-probe-naming-the-port-follows-it",
        ),
    ],
)  # fmt: skip
def test_container_flags_edit_the_stored_template(
    before: dict[str, Any], flags: Flags, after: dict[str, Any]
) -> None:
    edited = edit_template(stored(before), env={}, flags=flags)
    container = edited["spec"]["template"]["spec"]["containers"][0]
    assert {k: v for k, v in container.items() if k not in ("image", "env")} == after
    spec.parse_service(edited)  # still a valid Service


def test_a_cleared_command_renders_as_none() -> None:
    edited = edit_template(stored(RUNNING), env={}, flags=Flags(command=(), args=()))
    rendered = spec.parse_service(edited).to_manifest()["spec"]["template"]["spec"]
    assert "command" not in rendered["containers"][0]
    assert "args" not in rendered["containers"][0]


def test_a_limit_below_the_request_is_refused_by_the_spec() -> None:
    edited = edit_template(stored(RUNNING), env={}, flags=Flags(cpu="50m"))
    with pytest.raises(InvalidSpec, match="request '100m' is above the limit '50m'"):
        spec.parse_service(edited)


@pytest.mark.parametrize(
    "annotations",
    [
        pytest.param({LEGACY_MIN: "3"}, id="legacy-key-replaced"),
        pytest.param({LEGACY_MIN: "3", MIN: "3"}, id="both-spellings"),
        pytest.param(None, id="null-annotations"),
    ],
)
def test_min_instances_over_any_spelling(annotations: dict[str, str] | None) -> None:
    edited = edit_template(stored({}, annotations), env={}, flags=Flags(min_scale=1))
    assert edited["spec"]["template"]["metadata"]["annotations"] == {MIN: "1"}
    assert spec.parse_service(edited).template.autoscaling.min_scale == 1


# --- traffic: --update-tags, --clear-tags, LATEST=N ----------------------------------------------

REVISIONS = [revision("hello", 1), revision("hello", 2)]
SERVING = [
    {"revisionName": "hello-00001", "percent": 100},
    {"tag": "old", "revisionName": "hello-00001", "percent": 0},
    {"tag": "new", "revisionName": "hello-00002", "percent": 0},
]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        pytest.param(
            traffic.Change(to_revisions={"LATEST": 10, "hello-00001": 90}),
            [{"latestRevision": True, "percent": 10},
             {"revisionName": "hello-00001", "percent": 90},
             {"tag": "old", "revisionName": "hello-00001", "percent": 0},
             {"tag": "new", "revisionName": "hello-00002", "percent": 0}],
            id="latest-share",
        ),
        pytest.param(
            traffic.Change(to_revisions={"LATEST": 100}),
            [{"latestRevision": True, "percent": 100},
             {"tag": "old", "revisionName": "hello-00001", "percent": 0},
             {"tag": "new", "revisionName": "hello-00002", "percent": 0}],
            id="latest-all",
        ),
        pytest.param(
            traffic.Change(clear_tags=True),
            [{"revisionName": "hello-00001", "percent": 100}],
            id="clear-tags",
        ),
        pytest.param(
            traffic.Change(clear_tags=True, set_tags={"blue": "hello-00002", "edge": "LATEST"}),
            [{"revisionName": "hello-00001", "percent": 100},
             {"tag": "blue", "revisionName": "hello-00002", "percent": 0},
             {"tag": "edge", "latestRevision": True, "percent": 0}],
            id="clear-then-update",
        ),
        pytest.param(
            traffic.Change(set_tags={"old": "hello-00002"}),
            [{"revisionName": "hello-00001", "percent": 100},
             {"tag": "old", "revisionName": "hello-00002", "percent": 0},
             {"tag": "new", "revisionName": "hello-00002", "percent": 0}],
            id="update-moves-a-tag",
        ),
    ],
)  # fmt: skip
def test_traffic_changes(edit: traffic.Change, expected: list[dict[str, Any]]) -> None:
    assert traffic.change(SERVING, edit, revisions=REVISIONS) == expected


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        pytest.param(traffic.Change(to_revisions={"LATEST": 10}),
                     "percents sum to 10, want 100", id="latest-short"),
        pytest.param(traffic.Change(to_revisions={"LATEST": 10}, to_latest=True),
                     "--to-latest and LATEST= in --to-revisions both", id="latest-twice"),
        pytest.param(traffic.Change(to_revisions={"LATEST": 101}),
                     "a percent must be between 0 and 100", id="latest-over-100"),
        pytest.param(traffic.Change(clear_tags=True, remove_tags=("old",)),
                     "--clear-tags already removes every tag", id="clear-and-remove"),
        pytest.param(traffic.Change(set_tags={"x": "hello-00009"}),
                     "--update-tags: no revision 'hello-00009'", id="unknown-revision"),
    ],
)  # fmt: skip
def test_traffic_changes_refused(edit: traffic.Change, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        traffic.change(SERVING, edit, revisions=REVISIONS)


def test_traffic_cli_sends_update_and_clear_tags(recorder: Recorder) -> None:
    view = {"name": "hello", "url": "http://hello.x", "traffic": []}
    recorder.replies[("POST", "/v1/services/hello/traffic")] = view
    result = run(
        "traffic", "hello", "--clear-tags", "--update-tags", "blue=hello-00002,edge=LATEST",
        "--set-tags", "old=hello-00001", "--to-revisions", "LATEST=10,hello-00001=90",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [(_, _, kwargs)] = recorder.calls
    assert kwargs["json"]["set_tags"] == {
        "old": "hello-00001", "blue": "hello-00002", "edge": "LATEST",
    }  # fmt: skip
    assert kwargs["json"]["clear_tags"] is True
    assert kwargs["json"]["to_revisions"] == {"LATEST": 10, "hello-00001": 90}
