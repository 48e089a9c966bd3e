"""What a deploy does to its Service manifest, pure: manifest and flags in → manifest out; and
the per-service lock that serialises deploys."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from pipeline.core.errors import InvalidName
from pipeline.deploy.locks import ServiceLocks
from pipeline.deploy.manifests import Commit, Flags, Placement, edit_template

SECRET_REF = {"secretKeyRef": {"name": "db", "key": "password"}}


def manifest(env: list[dict[str, Any]]) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"containers": [{"image": "x", "env": env}]}}}}


def env_of(edited: dict[str, Any]) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = edited["spec"]["template"]["spec"]["containers"][0]["env"]
    return env


@pytest.mark.parametrize(
    ("current", "env", "flags", "expected"),
    [
        pytest.param([{"name": "A", "value": "1"}], {"B": "2"}, None,
                     [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}], id="env-added"),
        pytest.param([{"name": "A", "value": "1"}], {"A": "9"}, None,
                     [{"name": "A", "value": "9"}], id="env-replaced-in-place"),
        pytest.param([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}], {},
                     Flags(remove_env=("A",)), [{"name": "B", "value": "2"}], id="env-removed"),
        pytest.param([{"name": "DB", "value": "plain"}], {},
                     Flags(secret_env=(("DB", "db", "password"),)),
                     [{"name": "DB", "valueFrom": SECRET_REF}], id="literal-becomes-secret"),
        pytest.param([{"name": "DB", "valueFrom": SECRET_REF}], {"DB": "plain"}, None,
                     [{"name": "DB", "value": "plain"}], id="secret-becomes-literal"),
        pytest.param([{"name": "DB", "valueFrom": SECRET_REF}, {"name": "A", "value": "1"}], {},
                     Flags(remove_env=("DB",)), [{"name": "A", "value": "1"}],
                     id="secret-removed"),
        pytest.param([{"name": "DB", "valueFrom": SECRET_REF}], {"A": "1"}, None,
                     [{"name": "A", "value": "1"}, {"name": "DB", "valueFrom": SECRET_REF}],
                     id="literals-before-secrets"),
    ],
)  # fmt: skip
def test_env_edits(
    current: list[dict[str, Any]], env: dict[str, str], flags: Flags | None, expected: Any
) -> None:
    before = manifest(current)
    assert env_of(edit_template(before, env=env, flags=flags)) == expected
    assert before == manifest(current), "the input manifest is left alone"


def test_flags_edit_the_template_and_scale_annotations() -> None:
    edited = edit_template(
        manifest([]), env={}, flags=Flags(concurrency=4, timeout_s=30, min_scale=1, max_scale=3)
    )
    template = edited["spec"]["template"]
    assert (template["spec"]["containerConcurrency"], template["spec"]["timeoutSeconds"]) == (4, 30)
    assert template["metadata"]["annotations"] == {
        "autoscaling.knative.dev/min-scale": "1",
        "autoscaling.knative.dev/max-scale": "3",
    }


SHA = "abc1234" + "0" * 33


@pytest.mark.parametrize(
    ("commit", "kwargs", "expected"),
    [
        pytest.param(None, {}, Placement(), id="api-deploy"),
        pytest.param(None, {"tag": "canary", "no_traffic": True},
                     Placement(tags=("canary",), traffic="none"), id="no-traffic-with-tag"),
        pytest.param(Commit(sha=SHA, branch="main"), {},
                     Placement(tags=("commit-abc1234",)), id="deploy-branch-push"),
        pytest.param(Commit(sha=SHA, branch="login", preview_tag="branch-login"), {},
                     Placement(tags=("commit-abc1234", "branch-login"), traffic="none"),
                     id="preview-push"),
    ],
)  # fmt: skip
def test_placement_of(commit: Commit | None, kwargs: dict[str, Any], expected: Placement) -> None:
    assert Placement.of(commit, **kwargs) == expected


def test_placement_check_refuses_a_bad_tag_before_any_build() -> None:
    with pytest.raises(InvalidName):
        Placement(tags=("Not_A_Tag",)).check("hello")
    with pytest.raises(InvalidName):
        Placement().check("Hello")


def test_a_second_deploy_to_a_service_waits_and_says_so() -> None:
    locks = ServiceLocks()
    said: list[dict[str, Any]] = []
    entered = threading.Event()
    with locks.hold("hello"):
        with locks.hold("other", said.append):
            pass  # another service does not wait
        waiter = threading.Thread(target=lambda: _enter(locks, said, entered))
        waiter.start()
        while not said:
            threading.Event().wait(0.01)
        assert not entered.is_set()
    waiter.join(5)
    assert entered.is_set()
    assert said == [
        {"event": "stage", "text": "Waiting for the deploy to hello in progress", "seconds": 0}
    ]


def _enter(locks: ServiceLocks, said: list[dict[str, Any]], entered: threading.Event) -> None:
    with locks.hold("hello", said.append):
        entered.set()
