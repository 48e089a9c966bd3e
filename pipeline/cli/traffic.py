"""`slipway traffic` and `slipway rollback`: move traffic between existing revisions, never build.

The flags' own grammar (`NAME=VALUE` pairs separated by commas, names being revisions or tags,
which hold `-`) is parsed here; the split itself is decided by the API.
"""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.cli.output import call, fail, out, print_traffic


def traffic(
    name: str,
    to_revisions: Annotated[
        str,
        typer.Option(
            "--to-revisions",
            help="REV=PCT,... e.g. hello-00003=90,hello-00004=10. LATEST=PCT gives the latest "
            "ready revision a share that follows every later one.",
        ),
    ] = "",
    to_tags: Annotated[str, typer.Option("--to-tags", help="TAG=PCT,...")] = "",
    to_latest: Annotated[
        bool, typer.Option("--to-latest", help="The rest (or all) follows the latest revision.")
    ] = False,
    update_tags: Annotated[
        str,
        typer.Option(
            "--update-tags",
            help="TAG=REV,... adds or moves tag URLs; REV may be LATEST (follows the latest).",
        ),
    ] = "",
    set_tags: Annotated[str, typer.Option("--set-tags", help="Same as --update-tags.")] = "",
    remove_tags: Annotated[str, typer.Option("--remove-tags", help="TAG,...")] = "",
    clear_tags: Annotated[
        bool, typer.Option("--clear-tags", help="Remove every tag (before --update-tags).")
    ] = False,
) -> None:
    """Split traffic between revisions and manage tag URLs; never creates a revision."""
    body: dict[str, object] = {
        "to_revisions": _percents(to_revisions, "--to-revisions"),
        "to_tags": _percents(to_tags, "--to-tags"),
        "to_latest": to_latest,
        "set_tags": {**_pairs(set_tags, "--set-tags"), **_pairs(update_tags, "--update-tags")},
        "remove_tags": [t.strip() for t in remove_tags.split(",") if t.strip()],
    }
    if clear_tags:
        body["clear_tags"] = True
    print_traffic(call("POST", f"/v1/services/{name}/traffic", json=body))


def rollback(name: str) -> None:
    """Send all traffic back to the revision that served before the current one."""
    view = call("POST", f"/v1/services/{name}/rollback")
    out.print(f"Rolled back {name} to {view['rolled_back_to']}", highlight=False)
    print_traffic(view)


def _pairs(value: str, flag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in value.split(","))):
        key, sep, val = item.partition("=")
        if not sep or not key or not val:
            raise fail(f"{flag} takes NAME=VALUE pairs separated by commas, got {item!r}")
        pairs[key] = val
    return pairs


def _percents(value: str, flag: str) -> dict[str, int]:
    percents = {}
    for key, val in _pairs(value, flag).items():
        if not val.isdigit():
            raise fail(f"{flag}: {key}={val} is not a whole percent")
        percents[key] = int(val)
    return percents
