"""Which repository a service follows: annotations on its Knative Service metadata.

    metadata:
      annotations:
        slipway.dev/github-repository: owner/name     # pushes and pull requests from GitHub
        slipway.dev/gitlab-project: group/name        # pushes and merge requests from GitLab
        slipway.dev/deploy-branch: main               # this branch serves; others are previews
        slipway.dev/preview-forks: "true"             # build pull requests from forks too

Pull requests from forks are off by default: their code is not the repository owner's, and a
preview build runs it on this machine.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.records import Service

GITHUB_REPOSITORY = "slipway.dev/github-repository"
GITLAB_PROJECT = "slipway.dev/gitlab-project"
DEPLOY_BRANCH = "slipway.dev/deploy-branch"
PREVIEW_FORKS = "slipway.dev/preview-forks"
DEFAULT_BRANCH = "main"


@dataclass(frozen=True, kw_only=True)
class Tracking:
    service: str
    github: str = ""  # owner/name, lowercased ("" = not tracked)
    gitlab: str = ""  # group/name, lowercased
    branch: str = DEFAULT_BRANCH
    preview_forks: bool = False


def tracking_of(service: Service) -> Tracking:
    metadata = service.spec.get("metadata") or {}
    annotations = metadata.get("annotations") or {}

    def value(key: str) -> str:
        raw = annotations.get(key)
        return raw.strip() if isinstance(raw, str) else ""

    return Tracking(
        service=service.name,
        # GitHub and GitLab compare repository paths case-insensitively.
        github=value(GITHUB_REPOSITORY).lower(),
        gitlab=value(GITLAB_PROJECT).lower(),
        branch=value(DEPLOY_BRANCH) or DEFAULT_BRANCH,
        preview_forks=value(PREVIEW_FORKS).lower() == "true",
    )
