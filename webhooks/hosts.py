"""Where a tracked repository is cloned from: the configured git host, never the payload.

A signed payload still only says *which* repository moved; the URL is built here from the host
the operator configured (`SLIPWAY_GITHUB_URL`, `SLIPWAY_GITLAB_URL`; github.com and gitlab.com
by default) and a repository path checked to be a plain `owner/name` (GitLab: `group/…/name`).
So a payload whose `clone_url` is a local path, `file://` or another host is not followed: one
leaked webhook secret cannot make Slipway deploy a repository from the machine itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pipeline.core.errors import InvalidInput

Provider = Literal["github", "gitlab"]
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
_PATHS = {
    "github": re.compile(rf"{_SEGMENT}/{_SEGMENT}"),
    "gitlab": re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})+"),
}


@dataclass(frozen=True, kw_only=True)
class GitHosts:
    github: str = "https://github.com"
    gitlab: str = "https://gitlab.com"

    def clone_url(self, provider: Provider, path: str) -> str:
        """`<host>/<path>.git` for a repository path the payload named."""
        if not _PATHS[provider].fullmatch(path) or ".." in path:
            raise InvalidInput(f"the payload names the repository {path!r}, not an owner/name path")
        base = self.github if provider == "github" else self.gitlab
        return f"{base.rstrip('/')}/{path.removesuffix('.git')}.git"

PUBLIC_HOSTS = GitHosts()  # github.com and gitlab.com
