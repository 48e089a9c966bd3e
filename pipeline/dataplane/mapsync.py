"""Bring HAProxy's map files to a plane: the routes maps and the invokers map, as files a start or
reload reads and as `add map` / `set map` / `del map` for the running worker.

The manager (`process`) calls `write` before every start, reload or runtime change, so a later
reload loads what the runtime API was given, and `sync` when the structure is unchanged. The
entries come from `render.route_maps` and `jwt.invokers_map`; which commands, from `changes`
(pure), against what the running worker reports, so a restarted control plane adopts it. Routes
are why a deploy costs one reload, not two: the new revision's backend reloads, and moving the
service's host to it later is a `set map`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pipeline.dataplane import jwt
from pipeline.dataplane.changes import Change, invoker_changes, route_changes
from pipeline.dataplane.model import DataPlane, Site
from pipeline.dataplane.render import route_maps
from pipeline.dataplane.runtime import Runtime


class MapSync:
    def __init__(self, *, site: Site, runtime: Runtime) -> None:
        self.site = site
        self.runtime = runtime

    def write(self, plane: DataPlane) -> None:
        write_maps(plane, site=self.site)

    def sync(self, plane: DataPlane) -> int:
        """Routes set, added and removed, then invokers granted and revoked (those only when
        the config uses their map, i.e. some route is private); how many commands were sent."""
        changes: list[Change] = []
        for path, wanted in route_maps(plane, site=self.site).items():
            changes += route_changes(str(path), wanted, self.runtime.show_map(path))
        if any(r.private for r in plane.routes):
            live = self.runtime.show_map(self.site.invokers_map)
            changes += invoker_changes(_invokers(plane), live)
        for change in changes:
            self._send(change)
        return len(changes)

    def _send(self, change: Change) -> None:
        path, key, value = Path(change.map), change.key, change.value
        match change.op:
            case "route" if change.replace:
                self.runtime.set_map(path, key, value)
            case "route":
                self.runtime.add_map(path, key, value)
            case "unroute":
                self.runtime.del_map(path, key)
            case "grant":
                self.runtime.add_map(self.site.invokers_map, key, value)
            case "revoke":
                self.runtime.del_map(self.site.invokers_map, key)
            case _:
                raise ValueError(f"not a map change: {change}")


def write_maps(plane: DataPlane, *, site: Site) -> None:
    """Every map file the config of `plane` reads, where HAProxy reads it (changed ones only)."""
    maps = {**route_maps(plane, site=site), site.invokers_map: _invokers(plane)}
    for path, entries in maps.items():
        text = jwt.map_text(entries)
        if read_text(path) != text or not path.exists():
            write_atomically(path, text)


def _invokers(plane: DataPlane) -> dict[str, str]:
    return jwt.invokers_map(plane.invokers)


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}-", delete=False
    ) as tmp:
        tmp.write(text)
        tmp.flush()
        os.fsync(tmp.fileno())
    os.replace(tmp.name, path)


def read_text(path: Path) -> str:
    """The file's text, "" when there is none."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
