"""The runtime changes that bring a running HAProxy to a plane, decided purely.

When the structure is unchanged, the manager (`process`) reads what HAProxy reports — each
backend's servers, the invokers map — and these functions compare it with the plane: what comes
back is a list of `Change` values, in the order they are to be sent, one runtime command each.
Comparing with what HAProxy itself reports (not with what Slipway last sent) is what lets a
restarted control plane adopt a running HAProxy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Literal

from pipeline.dataplane.model import Backend
from pipeline.dataplane.render import server_args
from pipeline.dataplane.runtime import ServerState

Op = Literal[
    "add",  # add server, with `args` (it starts in maintenance)
    "health",  # enable its health checks (dynamic servers start without)
    "ready",
    "drain",
    "maint",
    "weight",  # set weight `number`
    "maxconn",  # set maxconn `number`
    "address",  # set addr `address` port `port`
    "delete",  # refused while connections remain: deleted on a later apply
    "grant",  # invokers map: add `key` -> `value`
    "revoke",  # invokers map: del `key`
    "route",  # routes map `map`: add or set `key` (a host) -> `value` (its backend)
    "unroute",  # routes map `map`: del `key`
]


@dataclass(frozen=True, kw_only=True)
class Change:
    op: Op
    backend: str = ""
    server: str = ""
    args: str = ""
    address: str = ""
    port: int = 0
    number: int = 0
    key: str = ""
    value: str = ""
    map: str = ""  # the map file of "route" and "unroute"
    replace: bool = False  # "route": the host has an entry to change (`set map`, not `add map`)


def server_changes(backend: Backend, running: Mapping[str, ServerState]) -> list[Change]:
    """Wanted servers added or brought in line, then unwanted ones put in maintenance and
    deleted. `running`: the backend's instance servers as HAProxy has them, by name."""
    changes: list[Change] = []
    for server in sorted(backend.servers, key=lambda s: s.name):
        at = partial(Change, backend=backend.name, server=server.name)
        have = running.get(server.name)
        if have is None:
            changes += [
                at(op="add", args=server_args(server)),
                at(op="health"),
                at(op="drain" if server.draining else "ready"),
            ]
            continue
        if (have.address, have.port) != (server.address, server.port):
            changes.append(at(op="address", address=server.address, port=server.port))
        if have.maxconn != server.maxconn:
            changes.append(at(op="maxconn", number=server.maxconn))
        if server.draining and not have.draining:
            changes.append(at(op="drain"))
        elif not server.draining and (have.draining or have.admin == "maint"):
            if have.weight == 0:
                changes.append(at(op="weight", number=1))
            changes.append(at(op="ready"))
    for name in sorted(running.keys() - {s.name for s in backend.servers}):
        if running[name].admin != "maint":
            changes.append(Change(op="maint", backend=backend.name, server=name))
        changes.append(Change(op="delete", backend=backend.name, server=name))
    return changes


def invoker_changes(wanted: Mapping[str, str], live: Mapping[str, str]) -> list[Change]:
    """Map entries revoked, then granted, so the running worker's map equals `wanted`."""
    revoked = [Change(op="revoke", key=key) for key in sorted(live.keys() - wanted.keys())]
    granted = [
        Change(op="grant", key=key, value=wanted[key])
        for key in sorted(wanted.keys() - live.keys())
    ]
    return revoked + granted


def route_changes(path: str, wanted: Mapping[str, str], live: Mapping[str, str]) -> list[Change]:
    """Routes map entries set or added first, then the hosts no longer routed removed: a host
    that moves to a new revision never misses from the map in between."""
    at = partial(Change, map=path)
    routed = [
        at(op="route", key=host, value=backend, replace=host in live)
        for host, backend in sorted(wanted.items())
        if live.get(host) != backend
    ]
    return routed + [at(op="unroute", key=host) for host in sorted(live.keys() - wanted.keys())]
