"""GitHub events to actions: reads GitHub's payload shapes, decides with `webhooks.actions`.

Payloads as documented at docs.github.com/webhooks/webhook-events-and-payloads (`push`,
`pull_request`, `ping`). A service follows a repository through the
`slipway.dev/github-repository` annotation (see `webhooks.tracking`). Clone URLs come from
`webhooks.hosts`, never from the payload's `clone_url`.
"""

from __future__ import annotations

from typing import Any

from pipeline.core.records import Service
from webhooks.actions import Action, Ignore, field, push_actions, review_actions, text
from webhooks.hosts import PUBLIC_HOSTS, GitHosts
from webhooks.tracking import Tracking, tracking_of

BUILD_ACTIONS = frozenset({"opened", "synchronize", "reopened"})


def github_actions(
    event: str, payload: dict[str, Any], services: list[Service], *, hosts: GitHosts = PUBLIC_HOSTS
) -> list[Action]:
    if event == "ping":
        return [Ignore(reason="pong")]
    if event == "push":
        repository = text(payload, "repository", "full_name")
        return push_actions(
            _trackers(services, repository),
            repository=repository,
            ref=text(payload, "ref"),
            sha=text(payload, "after"),
            deleted=bool(payload.get("deleted")),
            clone_url=hosts.clone_url("github", repository),
        )
    if event == "pull_request":
        return _pull_request(payload, services, hosts)
    return [Ignore(reason=f"the {event!r} event does not trigger anything in Slipway")]


def _pull_request(
    payload: dict[str, Any], services: list[Service], hosts: GitHosts
) -> list[Action]:
    action = text(payload, "action")
    number = field(payload, "number")
    tag = f"pr-{number}"
    build = action in BUILD_ACTIONS
    close = action == "closed"
    if not (build or close):
        return [Ignore(reason=f"pull request {tag} was {action}: nothing to build")]
    repository = text(payload, "repository", "full_name")
    head = field(payload, "pull_request", "head")
    head_repo = head.get("repo") if isinstance(head, dict) else None
    # A deleted fork leaves `head.repo` null: nothing left to clone.
    head_name = head_repo.get("full_name", "") if isinstance(head_repo, dict) else ""
    clone_url = hosts.clone_url("github", head_name) if head_name else ""
    fork = head_name if head_name.lower() != repository.lower() else ""
    return review_actions(
        _trackers(services, repository),
        repository=repository,
        kind="pull request",
        tag=tag,
        build=build,
        close=close,
        sha=text(payload, "pull_request", "head", "sha") if build else "",
        clone_url=clone_url,
        fork=fork,
    )


def _trackers(services: list[Service], repository: str) -> list[Tracking]:
    wanted = repository.lower()
    return [t for t in map(tracking_of, services) if t.github and t.github == wanted]
