"""GitLab events to actions: reads GitLab's payload shapes, decides with `webhooks.actions`.

Payloads as documented at docs.gitlab.com/user/project/integrations/webhook_events
(`Push Hook`, `Tag Push Hook`, `Merge Request Hook`). A deleted branch is a push whose `after`
is all zeros. A service follows a project through `slipway.dev/gitlab-project`; clone URLs come
from `webhooks.hosts`, never from the payload.
"""

from __future__ import annotations

from typing import Any

from pipeline.core.records import Service
from webhooks.actions import (
    ZERO_SHA,
    Action,
    Ignore,
    field,
    push_actions,
    review_actions,
    text,
)
from webhooks.hosts import PUBLIC_HOSTS, GitHosts
from webhooks.tracking import Tracking, tracking_of

BUILD_ACTIONS = frozenset({"open", "reopen"})
CLOSE_ACTIONS = frozenset({"close", "merge"})


def gitlab_actions(
    event: str, payload: dict[str, Any], services: list[Service], *, hosts: GitHosts = PUBLIC_HOSTS
) -> list[Action]:
    if event in ("Push Hook", "Tag Push Hook"):
        project = text(payload, "project", "path_with_namespace")
        after = text(payload, "after")
        deleted = after == ZERO_SHA
        return push_actions(
            _trackers(services, project),
            repository=project,
            ref=text(payload, "ref"),
            # checkout_sha is the commit GitLab says to check out (null when deleted).
            sha=after if deleted else str(payload.get("checkout_sha") or after),
            deleted=deleted,
            clone_url=hosts.clone_url("gitlab", project),
        )
    if event == "Merge Request Hook":
        return _merge_request(payload, services, hosts)
    return [Ignore(reason=f"the {event!r} event does not trigger anything in Slipway")]


def _merge_request(
    payload: dict[str, Any], services: list[Service], hosts: GitHosts
) -> list[Action]:
    attrs = field(payload, "object_attributes")
    action = text(payload, "object_attributes", "action")
    tag = f"mr-{field(payload, 'object_attributes', 'iid')}"
    # "update" fires for title and label edits too; `oldrev` is only there when commits moved.
    build = action in BUILD_ACTIONS or (action == "update" and bool(attrs.get("oldrev")))
    close = action in CLOSE_ACTIONS
    if action == "update" and not build:
        return [Ignore(reason=f"merge request {tag} changed without new commits")]
    if not (build or close):
        return [Ignore(reason=f"merge request {tag} was {action}: nothing to build")]
    project = text(payload, "project", "path_with_namespace")
    source = attrs.get("source") if isinstance(attrs.get("source"), dict) else {}
    source_path = str(source.get("path_with_namespace") or "")
    fork = source_path if source_path and source_path.lower() != project.lower() else ""
    return review_actions(
        _trackers(services, project),
        repository=project,
        kind="merge request",
        tag=tag,
        build=build,
        close=close,
        sha=text(payload, "object_attributes", "last_commit", "id") if build else "",
        clone_url=hosts.clone_url("gitlab", source_path) if source_path else "",
        fork=fork,
    )


def _trackers(services: list[Service], project: str) -> list[Tracking]:
    wanted = project.lower()
    return [t for t in map(tracking_of, services) if t.gitlab and t.gitlab == wanted]
