"""Edits of a service's traffic block, pure: list of Knative traffic entries in, new list out.

Used by deployments (tag a commit, pin traffic for a preview, drop a deleted branch's tag) and,
later, by the traffic commands. Validation stays with the spec: callers re-parse the result.
"""

from __future__ import annotations

from typing import Any

from pipeline.state import Revision

Entry = dict[str, Any]
COMMIT_PREFIX = "commit-"


def pin_latest(entries: list[Entry], *, latest_ready: Revision | None) -> list[Entry]:
    """Replace `latestRevision` targets with the revision they resolve to now."""
    if latest_ready is None:
        return [dict(e) for e in entries]
    pinned = []
    for e in entries:
        e = dict(e)
        if e.get("latestRevision"):
            e.pop("latestRevision")
            e["revisionName"] = latest_ready.name
        pinned.append(e)
    return pinned


def without_tags(entries: list[Entry], tags: set[str]) -> list[Entry]:
    """Drop these tags: a 0% entry goes away, a carrying entry keeps its percent untagged."""
    out = []
    for e in entries:
        if e.get("tag") in tags:
            if not e.get("percent"):
                continue
            e = {k: v for k, v in e.items() if k != "tag"}
        out.append(dict(e))
    return out


def retag(
    entries: list[Entry],
    *,
    revision: str,
    tags: list[str],
    promote: bool,
    keep_commit_tags: int,
) -> list[Entry]:
    """Point `tags` at `revision` (0%); with `promote`, send all traffic to the latest revision.

    Only the newest `keep_commit_tags` commit tags survive, newest last.
    """
    out = without_tags(entries, set(tags))
    if promote:
        out = [e for e in out if not e.get("percent")]
        out.insert(0, {"latestRevision": True, "percent": 100})
    out.extend({"tag": t, "revisionName": revision, "percent": 0} for t in tags)
    commit_entries = [e for e in out if str(e.get("tag", "")).startswith(COMMIT_PREFIX)]
    stale = commit_entries[: max(0, len(commit_entries) - keep_commit_tags)]
    return without_tags(out, {str(e["tag"]) for e in stale})
