"""What a webhook event asks for, decided purely: event values in, actions out.

`github.py` and `gitlab.py` read their provider's payload shape and call the two rules here:
a branch moved (`push_actions`) or a review request changed (`review_actions`). The runner
applies the result; nothing here touches the store, the network or the clock.

    push to the deploy branch          Deploy (serves at the service URL)
    push to another branch             Deploy, preview under `branch-<slug>` at 0% traffic
    branch deleted                     RemoveTag(branch-<slug>); the deploy branch is left alone
    tag pushed                         Ignore: tags are stored, not built
    pull/merge request opened/updated  Deploy, preview under `pr-<n>` / `mr-<n>`
    pull/merge request closed/merged   RemoveTag(pr-<n> / mr-<n>)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.core import names
from pipeline.core.errors import InvalidInput
from webhooks.tracking import Tracking

ZERO_SHA = "0" * 40


@dataclass(frozen=True, kw_only=True)
class Deploy:
    service: str
    clone_url: str
    sha: str
    branch: str  # the pushed branch; "" for a pull/merge request head
    preview_tag: str  # "" deploys to the service URL


@dataclass(frozen=True, kw_only=True)
class RemoveTag:
    service: str
    tag: str


@dataclass(frozen=True, kw_only=True)
class Ignore:
    reason: str


Action = Deploy | RemoveTag | Ignore


def describe(action: Action) -> dict[str, str]:
    """The JSON shape of an action in webhook responses and the deliveries table."""
    if isinstance(action, Deploy):
        return {
            "action": "deploy",
            "service": action.service,
            "sha": action.sha,
            "branch": action.branch,
            "tag": action.preview_tag,
        }
    if isinstance(action, RemoveTag):
        return {"action": "remove-tag", "service": action.service, "tag": action.tag}
    return {"action": "ignore", "reason": action.reason}


def summary(action: Action) -> str:
    """One line for logs and the deliveries table."""
    if isinstance(action, Deploy):
        where = f"tag {action.preview_tag}" if action.preview_tag else "the service URL"
        return f"deploy {action.sha[:7]} to {action.service} ({where})"
    if isinstance(action, RemoveTag):
        return f"remove tag {action.tag} from {action.service}"
    return f"ignore: {action.reason}"


def push_actions(
    trackers: list[Tracking],
    *,
    repository: str,
    ref: str,
    sha: str,
    deleted: bool,
    clone_url: str,
) -> list[Action]:
    """A ref of `repository` moved to `sha` (or was deleted); `trackers` follow that repo."""
    if ref.startswith("refs/tags/"):
        return [Ignore(reason=f"{ref} is a tag: tags are stored, not built")]
    if not ref.startswith("refs/heads/"):
        return [Ignore(reason=f"{ref} is not a branch")]
    branch = ref.removeprefix("refs/heads/")
    if not trackers:
        return [Ignore(reason=f"no service tracks the repository {repository}")]
    actions: list[Action] = []
    for t in trackers:
        serving = branch == t.branch
        if deleted:
            if serving:
                actions.append(
                    Ignore(
                        reason=f"deploy branch {branch} of {repository} was deleted: "
                        f"{t.service} keeps serving its last revision"
                    )
                )
            else:
                actions.append(
                    RemoveTag(service=t.service, tag=names.branch_tag(branch, service=t.service))
                )
            continue
        actions.append(
            Deploy(
                service=t.service,
                clone_url=clone_url,
                sha=_sha(sha, what="after"),
                branch=branch,
                preview_tag="" if serving else names.branch_tag(branch, service=t.service),
            )
        )
    return actions


def review_actions(
    trackers: list[Tracking],
    *,
    repository: str,
    kind: str,  # "pull request" or "merge request"
    tag: str,  # pr-<n> / mr-<n>
    build: bool,  # opened or new commits
    close: bool,  # closed or merged
    sha: str,
    clone_url: str,
    fork: str,  # the head repository when it is not `repository`, else ""
) -> list[Action]:
    if not trackers:
        return [Ignore(reason=f"no service tracks the repository {repository}")]
    actions: list[Action] = []
    for t in trackers:
        if close:
            actions.append(RemoveTag(service=t.service, tag=tag))
        elif not build:
            actions.append(Ignore(reason=f"{kind} {tag} changed without new commits"))
        elif fork and not t.preview_forks:
            actions.append(
                Ignore(
                    reason=f"{kind} {tag} comes from the fork {fork}: {t.service} does not "
                    "build forks (annotation slipway.dev/preview-forks: 'true' allows it)"
                )
            )
        elif not clone_url:
            actions.append(Ignore(reason=f"{kind} {tag}: its source repository is gone"))
        else:
            actions.append(
                Deploy(
                    service=t.service,
                    clone_url=clone_url,
                    sha=_sha(sha, what="head sha"),
                    branch="",
                    preview_tag=tag,
                )
            )
    return actions


def field(payload: dict[str, Any], *path: str) -> Any:
    """payload[path[0]][path[1]]…, or InvalidInput naming the missing field."""
    value: Any = payload
    for i, key in enumerate(path):
        if not isinstance(value, dict) or key not in value:
            raise InvalidInput(f"the payload has no {'.'.join(path[: i + 1])}")
        value = value[key]
    return value


def text(payload: dict[str, Any], *path: str) -> str:
    value = field(payload, *path)
    if not isinstance(value, str):
        raise InvalidInput(f"the payload's {'.'.join(path)} is not a string")
    return value


def _sha(value: str, *, what: str) -> str:
    if len(value) != 40 or any(c not in "0123456789abcdef" for c in value):
        raise InvalidInput(f"the payload's {what} {value!r} is not a full commit sha")
    return value
