"""Edits of a service's traffic block, pure: list of Knative traffic entries in, new list out.

Used by deployments (tag a commit, pin traffic for a preview, drop a deleted branch's tag) and by
the traffic commands (split, tags, rollback). `entries_of` is the one way the deployer reads a
stored manifest's traffic block. Validation stays with the spec: callers re-parse the result.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.core.errors import InvalidInput
from pipeline.core.records import Revision

Entry = dict[str, Any]
COMMIT_PREFIX = "commit-"
# gcloud's name for the latest ready revision in --to-revisions and --update-tags: the entry
# follows every future revision (Knative's `latestRevision: true`), it is never pinned.
LATEST = "LATEST"


def entries_of(manifest: Mapping[str, Any]) -> list[Entry]:
    """A Service manifest's traffic block as written; [] when it has none (routing reads that
    as all traffic to the latest ready revision)."""
    return list(manifest["spec"].get("traffic") or [])


def with_entries(manifest: Mapping[str, Any], entries: list[Entry]) -> dict[str, Any]:
    """A copy of the manifest with this traffic block; callers re-parse it to validate."""
    out = copy.deepcopy(dict(manifest))
    out["spec"]["traffic"] = entries
    return out


def follows_latest(entries: list[Entry]) -> bool:
    """Every entry that carries traffic follows the latest ready revision."""
    return all(e.get("latestRevision") for e in entries if e.get("percent"))


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


@dataclass(frozen=True, kw_only=True)
class Change:
    """A traffic edit in gcloud / kn vocabulary; every field optional."""

    to_revisions: dict[str, int] = field(default_factory=dict)
    to_tags: dict[str, int] = field(default_factory=dict)
    to_latest: bool = False
    set_tags: dict[str, str] = field(default_factory=dict)  # tag -> revision or LATEST
    remove_tags: tuple[str, ...] = ()
    clear_tags: bool = False  # every tag goes, before set_tags adds any

    @property
    def moves_traffic(self) -> bool:
        return bool(self.to_revisions or self.to_tags or self.to_latest)


def change(entries: list[Entry], edit: Change, *, revisions: list[Revision]) -> list[Entry]:
    """Apply `edit` to a traffic block. Raises InvalidInput naming the problem and the fix.

    Percents given with --to-revisions/--to-tags replace the whole split and must sum to 100,
    unless --to-latest takes the rest. Tags not mentioned keep pointing where they did.
    """
    usable = _usable_check({r.name: r for r in revisions})
    tags = _edited_tags(entries, edit, usable=usable)
    if edit.moves_traffic:
        carrying = _split(edit, usable=usable)
    else:
        carrying = [_still_tagged(e, tags) for e in entries if e.get("percent")]
    placed = {e.get("tag") for e in carrying}
    tagged = [
        {"tag": tag, **target, "percent": _percent(edit.to_tags.get(tag, 0))}
        for tag, target in tags.items()
        if tag not in placed
    ]
    return carrying + tagged


def _still_tagged(entry: Entry, tags: dict[str, Entry]) -> Entry:
    """A carrying entry keeps its tag while the tag still names its target: editing another tag
    must not split a 5% `canary` into an untagged 5% and a 0% `canary`."""
    tag = entry.get("tag")
    if tag is not None and tags.get(str(tag)) == _target(entry):
        return dict(entry)
    return {k: v for k, v in entry.items() if k != "tag"}


def _target(entry: Entry) -> Entry:
    if entry.get("latestRevision"):
        return {"latestRevision": True}
    return {"revisionName": entry.get("revisionName")}


def _usable_check(by_name: dict[str, Revision]) -> Callable[[str, str], str]:
    """`usable(name, flag)`: the name, if that revision exists and may take traffic."""

    def usable(name: str, flag: str) -> str:
        rev = by_name.get(name)
        if rev is None:
            known = ", ".join(sorted(by_name)) or "none yet"
            raise InvalidInput(f"{flag}: no revision {name!r} (revisions: {known})")
        if rev.status == "Failed":
            raise InvalidInput(
                f"{flag}: traffic to a failed revision is refused: {name} failed ({rev.reason})"
            )
        return name

    return usable


def _edited_tags(
    entries: list[Entry], edit: Change, *, usable: Callable[[str, str], str]
) -> dict[str, Entry]:
    """Current tags (tag -> target), then the edits to them."""
    tags: dict[str, Entry] = {}
    for e in entries:
        if e.get("tag"):
            tags[str(e["tag"])] = _target(e)
    if edit.clear_tags and edit.remove_tags:
        raise InvalidInput("--clear-tags already removes every tag: drop --remove-tags")
    for tag in edit.remove_tags:
        if tag not in tags:
            raise InvalidInput(f"--remove-tags: no tag {tag!r} (tags: {', '.join(tags) or 'none'})")
        del tags[tag]
    if edit.clear_tags:
        tags.clear()
    for tag, name in edit.set_tags.items():
        tags[tag] = (
            {"latestRevision": True}
            if name == LATEST
            else {"revisionName": usable(name, "--update-tags")}
        )
    for tag in edit.to_tags:
        if tag not in tags:
            raise InvalidInput(f"--to-tags: no tag {tag!r}; set it first with --update-tags")
    return tags


def _split(edit: Change, *, usable: Callable[[str, str], str]) -> list[Entry]:
    """The untagged entries that carry traffic, from --to-revisions, --to-tags, --to-latest."""
    split: dict[str, int] = {}
    revisions = {k: v for k, v in edit.to_revisions.items() if k != LATEST}
    for name, pct in revisions.items():
        split[usable(name, "--to-revisions")] = split.get(name, 0) + _percent(pct)
    latest = _percent(edit.to_revisions.get(LATEST, 0))
    if edit.to_latest and LATEST in edit.to_revisions:
        raise InvalidInput(
            f"--to-latest and {LATEST}= in --to-revisions both give the latest revision its "
            f"share: use one ({LATEST}=N for a part, --to-latest for the rest)"
        )
    total = sum(split.values()) + latest + sum(_percent(p) for p in edit.to_tags.values())
    if edit.to_latest:
        if total > 100:
            raise InvalidInput(f"percents sum to {total}, over 100")
        latest = 100 - total
    elif total != 100:
        raise InvalidInput(
            f"percents sum to {total}, want 100 (or add --to-latest to send the rest to "
            "the latest ready revision)"
        )
    carrying: list[Entry] = []
    if latest:
        carrying.append({"latestRevision": True, "percent": latest})
    carrying.extend({"revisionName": n, "percent": p} for n, p in split.items() if p)
    return carrying


def _percent(value: int) -> int:
    if not 0 <= value <= 100:
        raise InvalidInput(f"a percent must be between 0 and 100, got {value}")
    return value


def previous_serving(entries: list[Entry], *, revisions: list[Revision]) -> str:
    """The revision to roll back to: the newest ready one older than what serves now."""
    latest = max(
        (r for r in revisions if r.status == "Ready"), key=lambda r: r.number, default=None
    )
    serving_numbers = []
    for e in entries:
        if not e.get("percent"):
            continue
        if e.get("latestRevision"):
            if latest is not None:
                serving_numbers.append(latest.number)
        else:
            serving_numbers.extend(r.number for r in revisions if r.name == e.get("revisionName"))
    if not serving_numbers:
        raise InvalidInput("nothing serves yet, so there is nothing to roll back from")
    newest = max(serving_numbers)
    older = [r for r in revisions if r.status == "Ready" and r.number < newest]
    if not older:
        raise InvalidInput("no previous ready revision to roll back to")
    return max(older, key=lambda r: r.number).name


def collectable(entries: list[Entry], *, revisions: list[Revision], keep: int) -> list[str]:
    """Revisions to garbage-collect: beyond the newest `keep` that neither serve nor carry a
    tag, oldest first. A revision with traffic or a tag, or not settled yet, is never one."""
    ready = [r for r in revisions if r.status == "Ready"]
    latest = max(ready, key=lambda r: r.number, default=None)
    referenced = {str(e.get("revisionName")) for e in entries if e.get("revisionName")}
    if latest is not None and any(e.get("latestRevision") for e in entries):
        referenced.add(latest.name)
    idle = [
        r for r in sorted(revisions, key=lambda r: r.number)
        if r.name not in referenced and r.status != "Pending"
    ]  # fmt: skip
    return [r.name for r in idle[: max(0, len(idle) - keep)]]
