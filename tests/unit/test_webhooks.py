"""Webhook signatures and event classification: pure, over GitHub's real payload examples.

The GitHub payloads are the recorded examples in ../shared/fixtures/github-webhooks (from
octokit/webhooks); the GitLab payloads are written inline, trimmed to the fields Slipway reads,
in the shape GitLab documents for `Push Hook` and `Merge Request Hook`
(docs.gitlab.com/user/project/integrations/webhook_events).
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.errors import InvalidInput
from pipeline.core.records import Service
from webhooks.actions import Deploy, Ignore, RemoveTag
from webhooks.github import github_actions
from webhooks.gitlab import gitlab_actions
from webhooks.hosts import GitHosts
from webhooks.signatures import SignatureError, github_signature, verify_github, verify_gitlab
from webhooks.tracking import Tracking, tracking_of

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "github-webhooks"
if not FIXTURES.is_dir():
    raise RuntimeError(f"GitHub webhook fixtures missing: expected them in {FIXTURES}")

REPO = "Codertocat/Hello-World"
CLONE = "https://github.com/Codertocat/Hello-World.git"
PUSH_SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
PR_SHA = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def service(name: str, **annotations: str) -> Service:
    keys = {
        "github": "slipway.dev/github-repository",
        "gitlab": "slipway.dev/gitlab-project",
        "branch": "slipway.dev/deploy-branch",
        "forks": "slipway.dev/preview-forks",
    }
    spec = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name, "annotations": {keys[k]: v for k, v in annotations.items()}},
        "spec": {"template": {"spec": {"containers": [{"image": "x"}]}}},
    }
    return Service(name=name, spec=spec, generation=1, created_at=T0)


def edited(payload: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy with dotted-path fields replaced: edited(p, **{"a.b": 1})."""
    out = copy.deepcopy(payload)
    for path, value in changes.items():
        *parents, last = path.split(".")
        target = out
        for key in parents:
            target = target[key]
        target[last] = value
    return out


# signatures -----------------------------------------------------------------------------------
VECTOR_SECRET = b"It's a Secret to Everybody"
VECTOR_BODY = b"Hello, World!"
VECTOR_SIG = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_github_documented_vector() -> None:
    assert github_signature(VECTOR_SECRET, VECTOR_BODY) == VECTOR_SIG
    verify_github(VECTOR_SECRET, VECTOR_BODY, VECTOR_SIG)


@pytest.mark.parametrize(
    ("secret", "body", "header", "says"),
    [
        pytest.param(VECTOR_SECRET, b"Hello, World?", VECTOR_SIG, "does not match", id="tampered"),
        pytest.param(b"another secret", VECTOR_BODY, VECTOR_SIG, "does not match", id="wrong-key"),
        pytest.param(VECTOR_SECRET, VECTOR_BODY, None, "missing", id="missing"),
        pytest.param(VECTOR_SECRET, VECTOR_BODY, "", "missing", id="empty"),
        pytest.param(VECTOR_SECRET, VECTOR_BODY, VECTOR_SIG[7:], "sha256=", id="no-prefix"),
        pytest.param(VECTOR_SECRET, VECTOR_BODY, "sha1=abc", "sha256=", id="sha1"),
        pytest.param(VECTOR_SECRET, VECTOR_BODY, "sha256=zz", "does not match", id="not-hex"),
        pytest.param(VECTOR_SECRET, VECTOR_BODY, "sha256=é", "does not match", id="non-ascii"),
    ],
)
def test_github_refusals(secret: bytes, body: bytes, header: str | None, says: str) -> None:
    with pytest.raises(SignatureError, match=says):
        verify_github(secret, body, header)


def test_gitlab_token() -> None:
    verify_gitlab(b"s3cret", "s3cret")
    for header in ("s3cret ", "other", "", None):
        with pytest.raises(SignatureError):
            verify_gitlab(b"s3cret", header)


# tracking -------------------------------------------------------------------------------------
def test_tracking_defaults_and_annotations() -> None:
    assert tracking_of(service("plain")) == Tracking(service="plain")
    assert tracking_of(service("a", github=REPO, branch="prod", forks="true")) == Tracking(
        service="a", github=REPO.lower(), branch="prod", preview_forks=True
    )
    bare = Service(name="b", spec={"spec": {}}, generation=1, created_at=T0)
    assert tracking_of(bare).branch == "main"


# GitHub classification over the recorded payloads --------------------------------------------
HELLO = service("hello", github=REPO, branch="master")
HELLO_MAIN = service("hello", github=REPO)  # deploy branch: main (default)
OTHER = service("other", github="someone/else")
PUSH = fixture("push_with-new-branch.payload")
PR_OPENED = fixture("pull_request_opened.payload")
FORKED = {
    "pull_request.head.repo.full_name": "mallory/Hello-World",
    "pull_request.head.repo.clone_url": "https://github.com/mallory/Hello-World.git",
}

CASES = [
    pytest.param("ping", fixture("ping_payload"), [HELLO], [Ignore(reason="pong")], id="ping"),
    pytest.param(
        "push",
        PUSH,
        [HELLO, OTHER],
        [Deploy(service="hello", clone_url=CLONE, sha=PUSH_SHA, branch="master", preview_tag="")],
        id="push-deploy-branch",
    ),
    pytest.param(
        "push",
        PUSH,
        [HELLO_MAIN],
        [
            Deploy(
                service="hello",
                clone_url=CLONE,
                sha=PUSH_SHA,
                branch="master",
                preview_tag="branch-master",
            )
        ],
        id="push-other-branch-preview",
    ),
    pytest.param(
        "push",
        edited(PUSH, **{"repository.full_name": "codertocat/hello-world"}),
        [HELLO],
        [
            Deploy(
                service="hello", clone_url=CLONE.lower(), sha=PUSH_SHA, branch="master",
                preview_tag="",
            )
        ],
        id="push-repo-name-case-insensitive",
    ),
    pytest.param(
        "push",
        PUSH,
        [HELLO, service("api", github=REPO, branch="master")],
        [
            Deploy(service="hello", clone_url=CLONE, sha=PUSH_SHA, branch="master", preview_tag=""),
            Deploy(service="api", clone_url=CLONE, sha=PUSH_SHA, branch="master", preview_tag=""),
        ],
        id="push-two-services-one-repo",
    ),
    pytest.param(
        "push",
        PUSH,
        [OTHER, service("lab", gitlab=REPO)],
        [Ignore(reason=f"no service tracks the repository {REPO}")],
        id="push-untracked-repo",
    ),
    pytest.param(
        "push",
        fixture("push_with-organization.payload"),
        [HELLO],
        [Ignore(reason="refs/tags/simple-tag is a tag: tags are stored, not built")],
        id="push-tag-deleted",
    ),
    pytest.param(
        "push",
        edited(PUSH, ref="refs/heads/feature/Login", deleted=True, after="0" * 40),
        [HELLO],
        [RemoveTag(service="hello", tag="branch-feature-login")],
        id="branch-deleted",
    ),
    pytest.param(
        "push",
        edited(PUSH, deleted=True, after="0" * 40),
        [HELLO],
        [
            Ignore(
                reason=f"deploy branch master of {REPO} was deleted: "
                "hello keeps serving its last revision"
            )
        ],
        id="deploy-branch-deleted",
    ),
    pytest.param(
        "pull_request",
        PR_OPENED,
        [HELLO, OTHER],
        [Deploy(service="hello", clone_url=CLONE, sha=PR_SHA, branch="", preview_tag="pr-2")],
        id="pr-opened",
    ),
    pytest.param(
        "pull_request",
        fixture("pull_request_synchronize.payload"),
        [HELLO],
        [Deploy(service="hello", clone_url=CLONE, sha=PR_SHA, branch="", preview_tag="pr-2")],
        id="pr-synchronize",
    ),
    pytest.param(
        "pull_request",
        edited(PR_OPENED, action="reopened"),
        [HELLO],
        [Deploy(service="hello", clone_url=CLONE, sha=PR_SHA, branch="", preview_tag="pr-2")],
        id="pr-reopened",
    ),
    pytest.param(
        "pull_request",
        fixture("pull_request_closed.payload"),
        [HELLO],
        [RemoveTag(service="hello", tag="pr-2")],
        id="pr-closed",
    ),
    pytest.param(
        "pull_request",
        edited(PR_OPENED, action="labeled"),
        [HELLO],
        [Ignore(reason="pull request pr-2 was labeled: nothing to build")],
        id="pr-labeled",
    ),
    pytest.param(
        "pull_request",
        PR_OPENED,
        [OTHER],
        [Ignore(reason=f"no service tracks the repository {REPO}")],
        id="pr-untracked-repo",
    ),
    pytest.param(
        "pull_request",
        edited(PR_OPENED, **FORKED),
        [HELLO],
        [
            Ignore(
                reason="pull request pr-2 comes from the fork mallory/Hello-World: hello does "
                "not build forks (annotation slipway.dev/preview-forks: 'true' allows it)"
            )
        ],
        id="pr-from-fork-off-by-default",
    ),
    pytest.param(
        "pull_request",
        edited(PR_OPENED, **FORKED),
        [service("hello", github=REPO, forks="true")],
        [
            Deploy(
                service="hello",
                clone_url="https://github.com/mallory/Hello-World.git",
                sha=PR_SHA,
                branch="",
                preview_tag="pr-2",
            )
        ],
        id="pr-from-fork-allowed",
    ),
    pytest.param(
        "pull_request",
        edited(PR_OPENED, **{"pull_request.head.repo": None}),
        [service("hello", github=REPO, forks="true")],
        [Ignore(reason="pull request pr-2: its source repository is gone")],
        id="pr-head-repo-deleted",
    ),
    pytest.param(
        "issues",
        PR_OPENED,
        [HELLO],
        [Ignore(reason="the 'issues' event does not trigger anything in Slipway")],
        id="other-event",
    ),
]


@pytest.mark.parametrize(("event", "payload", "services", "expected"), CASES)
def test_github_actions(
    event: str, payload: dict[str, Any], services: list[Service], expected: list[object]
) -> None:
    assert github_actions(event, payload, services) == expected


@pytest.mark.parametrize(
    ("event", "payload", "says"),
    [
        pytest.param("push", {"ref": "refs/heads/main"}, "repository", id="no-repository"),
        pytest.param("push", edited(PUSH, after="HEAD"), "not a full commit sha", id="bad-sha"),
        pytest.param(
            "pull_request", edited(PR_OPENED, pull_request={}), "pull_request.head", id="no-head"
        ),
    ],
)
def test_github_malformed_payloads(event: str, payload: dict[str, Any], says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        github_actions(event, payload, [HELLO])


# GitLab classification (inline payloads in GitLab's documented shapes) ------------------------
LAB = service("lab", gitlab="Group/App")
GL_SHA = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
GL_CLONE = "https://gitlab.example.com/group/app.git"
SELF_HOSTED = GitHosts(gitlab="https://gitlab.example.com")  # SLIPWAY_GITLAB_URL


def gl_push(ref: str = "refs/heads/main", after: str = GL_SHA) -> dict[str, Any]:
    deleted = after == "0" * 40
    return {
        "object_kind": "push",
        "event_name": "push",
        "before": "95790bf891e76fee5e1747ab589903a6a1f80f22",
        "after": after,
        "ref": ref,
        "checkout_sha": None if deleted else after,
        "project": {
            "id": 15,
            "name": "App",
            "path_with_namespace": "group/app",
            "default_branch": "main",
            "git_http_url": GL_CLONE,
            "git_ssh_url": "git@gitlab.example.com:group/app.git",
        },
        "commits": [],
        "total_commits_count": 0,
    }


def gl_mr(action: str, *, oldrev: str | None = None) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "iid": 7,
        "action": action,
        "state": "opened",
        "source_branch": "feature",
        "target_branch": "main",
        "last_commit": {"id": GL_SHA},
        "source": {"path_with_namespace": "group/app", "git_http_url": GL_CLONE},
        "target": {"path_with_namespace": "group/app", "git_http_url": GL_CLONE},
    }
    if oldrev:
        attrs["oldrev"] = oldrev
    return {
        "object_kind": "merge_request",
        "event_type": "merge_request",
        "project": {"path_with_namespace": "group/app", "git_http_url": GL_CLONE},
        "object_attributes": attrs,
    }


GITLAB_CASES = [
    pytest.param(
        "Push Hook",
        gl_push(),
        [Deploy(service="lab", clone_url=GL_CLONE, sha=GL_SHA, branch="main", preview_tag="")],
        id="push-deploy-branch",
    ),
    pytest.param(
        "Push Hook",
        gl_push("refs/heads/fix-1"),
        [
            Deploy(
                service="lab",
                clone_url=GL_CLONE,
                sha=GL_SHA,
                branch="fix-1",
                preview_tag="branch-fix-1",
            )
        ],
        id="push-preview-branch",
    ),
    pytest.param(
        "Push Hook",
        gl_push("refs/heads/fix-1", after="0" * 40),
        [RemoveTag(service="lab", tag="branch-fix-1")],
        id="branch-deleted",
    ),
    pytest.param(
        "Tag Push Hook",
        gl_push("refs/tags/v1.0"),
        [Ignore(reason="refs/tags/v1.0 is a tag: tags are stored, not built")],
        id="tag-push",
    ),
    pytest.param(
        "Push Hook",
        edited(gl_push(), **{"project.path_with_namespace": "elsewhere/app"}),
        [Ignore(reason="no service tracks the repository elsewhere/app")],
        id="untracked-project",
    ),
    pytest.param(
        "Merge Request Hook",
        gl_mr("open"),
        [Deploy(service="lab", clone_url=GL_CLONE, sha=GL_SHA, branch="", preview_tag="mr-7")],
        id="mr-open",
    ),
    pytest.param(
        "Merge Request Hook",
        gl_mr("update", oldrev="95790bf891e76fee5e1747ab589903a6a1f80f22"),
        [Deploy(service="lab", clone_url=GL_CLONE, sha=GL_SHA, branch="", preview_tag="mr-7")],
        id="mr-new-commits",
    ),
    pytest.param(
        "Merge Request Hook",
        gl_mr("update"),
        [Ignore(reason="merge request mr-7 changed without new commits")],
        id="mr-title-edit",
    ),
    pytest.param(
        "Merge Request Hook",
        gl_mr("merge"),
        [RemoveTag(service="lab", tag="mr-7")],
        id="mr-merged",
    ),
    pytest.param(
        "Merge Request Hook",
        edited(gl_mr("open"), **{"object_attributes.source.path_with_namespace": "eve/app"}),
        [
            Ignore(
                reason="merge request mr-7 comes from the fork eve/app: lab does not build "
                "forks (annotation slipway.dev/preview-forks: 'true' allows it)"
            )
        ],
        id="mr-from-fork",
    ),
    pytest.param(
        "Issue Hook",
        {},
        [Ignore(reason="the 'Issue Hook' event does not trigger anything in Slipway")],
        id="other-event",
    ),
]


@pytest.mark.parametrize(("event", "payload", "expected"), GITLAB_CASES)
def test_gitlab_actions(event: str, payload: dict[str, Any], expected: list[object]) -> None:
    assert gitlab_actions(event, payload, [LAB, HELLO], hosts=SELF_HOSTED) == expected
