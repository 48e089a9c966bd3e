"""A container listing read into what the engine reports: pure functions of the entries of one
`GET /containers/json` (what `DockerEngine.list_instances` reads, from dockerd or its cache).

An instance in a network sandbox (`engines.sandboxes`) has no network of its own: its address is
its sandbox's, found in the same listing, and one whose sandbox is gone is reported exited.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pipeline.core import names
from pipeline.engines.base import Instance
from pipeline.engines.sandboxes import LABEL_DNS, LABEL_SANDBOX, is_sandbox

Entry = dict[str, Any]  # one container of the listing, as dockerd returns it
# Listing states in which inspect says `Running: true` (a paused container is still running).
LIVE_STATES = frozenset({"running", "paused", "restarting"})


def labels_of(entry: Entry) -> dict[str, str]:
    labels: dict[str, str] = entry.get("Labels") or {}
    return labels


def sandboxes_of(listed: Iterable[Entry]) -> dict[str, Entry]:
    """The sandboxes of a listing, by id."""
    return {str(e["Id"]): e for e in listed if is_sandbox(labels_of(e))}


def named_sandboxes(listed: Iterable[Entry]) -> list[str]:
    """The sandbox ids the containers of a listing name ("" for those in none)."""
    return [labels_of(e).get(LABEL_SANDBOX, "") for e in listed]


def spares_left(listed: list[Entry]) -> dict[str, str]:
    """Sandboxes no container names (spares a previous control plane made): id -> the resolver
    each was made with, for the pool to take over."""
    named = set(named_sandboxes(listed))
    return {i: labels_of(e).get(LABEL_DNS, "") for i, e in sandboxes_of(listed).items()
            if i not in named}  # fmt: skip


def is_live(entry: Entry) -> bool:
    return str(entry.get("State")) in LIVE_STATES


def live_instances(listed: list[Entry], *, network: str) -> list[tuple[Entry, Instance]]:
    """The running (or paused) instances of a listing, sandboxes left out, each with its entry."""
    sandboxes = sandboxes_of(listed)
    return [(e, live_instance(e, sandboxes, network=network)) for e in listed
            if str(e["Id"]) not in sandboxes and is_live(e)]  # fmt: skip


def address(entry: Entry, sandboxes: dict[str, Entry], *, network: str) -> str:
    """A listed container's address on `network`: its own, or its running sandbox's."""
    labels = labels_of(entry)
    if LABEL_SANDBOX in labels:
        sandbox = sandboxes.get(labels[LABEL_SANDBOX])
        if sandbox is None or sandbox.get("State") != "running":
            return ""  # the namespace it ran in is gone: it has no address
        entry = sandbox
    nets: dict[str, Any] = (entry.get("NetworkSettings") or {}).get("Networks") or {}
    return str((nets.get(network) or {}).get("IPAddress") or "")


def live_instance(entry: Entry, sandboxes: dict[str, Entry], *, network: str) -> Instance:
    """A running (or paused) container from the listing's own fields."""
    labels = labels_of(entry)
    names_: list[str] = entry.get("Names") or []
    found = address(entry, sandboxes, network=network)
    # Its sandbox gone (removed by hand), the app runs on with no network at all: it is
    # reported exited, so the reconciler removes it and starts another, as after a crash.
    cut_off = LABEL_SANDBOX in labels and not found
    return Instance(
        id=str(entry["Id"]),
        name=names_[0].lstrip("/") if names_ else "",
        service=labels.get(names.LABEL_SERVICE, ""),
        revision=labels.get(names.LABEL_REVISION, ""),
        instance=labels.get(names.LABEL_INSTANCE, ""),
        address=found,
        running=not cut_off,
        frozen=not cut_off and entry.get("State") == "paused",
        exit_code=-1 if cut_off else None,
        error=f"its network sandbox {labels.get(LABEL_SANDBOX, '')[:12]} is gone"
        if cut_off
        else "",
    )
