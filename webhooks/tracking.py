"""Which repository a service follows: annotations on its Knative Service metadata.

    metadata:
      annotations:
        slipway.dev/github-repository: owner/name     # pushes and pull requests from GitHub
        slipway.dev/gitlab-project: group/name        # pushes and merge requests from GitLab
        slipway.dev/deploy-branch: main               # this branch serves; others are previews
        slipway.dev/preview-forks: "true"             # build pull requests from forks too
        slipway.dev/webhook-secret: shop-hook         # its own secret (`slipway secrets set
                                                      # shop-hook token=…`), not the platform's

The keys and their parsers are `core.annotations` (`git push` reads the deploy branch there
too). Pull requests from forks are off by default: their code is not the repository owner's, and
a preview build runs it on this machine.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.annotations import (
    DEFAULT_DEPLOY_BRANCH,
    deploy_branch,
    github_repository,
    gitlab_project,
    preview_forks,
    webhook_secret,
)
from pipeline.core.records import Service


@dataclass(frozen=True, kw_only=True)
class Tracking:
    service: str
    github: str = ""  # owner/name, lowercased ("" = not tracked)
    gitlab: str = ""  # group/name, lowercased
    branch: str = DEFAULT_DEPLOY_BRANCH
    preview_forks: bool = False
    secret: tuple[str, str] | None = None  # (secret, key): its own webhook secret


def tracking_of(service: Service) -> Tracking:
    metadata = service.spec.get("metadata") or {}
    found = metadata.get("annotations") or {}
    return Tracking(
        service=service.name,
        github=github_repository(found),
        gitlab=gitlab_project(found),
        branch=deploy_branch(found),
        preview_forks=preview_forks(found),
        secret=webhook_secret(found),
    )
