"""What the reconciler asks HAProxy: may a draining instance stop, which instances are down.

A request can be in flight in the current worker (its server's current sessions) or in an old
worker still finishing after a reload (those do not show in the new worker's stats). Either
keeps the instance alive, up to the grace period the reconciler enforces.
"""

from __future__ import annotations

from pipeline.autoscale.scaler import Load
from pipeline.core.errors import Unavailable
from pipeline.dataplane.model import DataPlane
from pipeline.dataplane.process import HAProxyManager
from pipeline.dataplane.procs import Procs
from pipeline.dataplane.runtime import stat_columns


class HAProxyDataPlane:
    """The reconciler's view of HAProxy: apply a plane, ask whether a server is busy."""

    def __init__(self, manager: HAProxyManager) -> None:
        self.manager = manager

    def apply(self, plane: DataPlane) -> str:
        return self.manager.apply(plane)

    def load(self) -> dict[str, Load]:
        """Requests in flight plus queued, and requests so far, per backend, in one `show stat`
        (the autoscaler's input)."""
        try:
            out = self.manager.runtime.socket.command("show stat -1 2 -1")
        except Unavailable:
            return {}
        if not out.startswith("# "):
            return {}
        rows = stat_columns(out, "pxname", "svname", "scur", "qcur", "req_tot")
        return {
            name: Load(in_flight=int(scur or 0) + int(qcur or 0), requests=int(total or 0))
            for name, svname, scur, qcur, total in rows
            if svname == "BACKEND"
        }

    def down(self) -> dict[str, set[str]]:
        """Per backend, the servers HAProxy's checks or observed errors have marked down (or in
        maintenance), in one command: the pass asked two per backend with ready instances."""
        try:
            return self.manager.runtime.servers_down()
        except Unavailable:
            return {}

    def busy(self, backend: str, server: str) -> bool:
        try:
            if self.manager.server_sessions(backend).get(server, 0) > 0:
                return True
            return Procs.parse(self.manager.master.command("show proc")).old_workers > 0
        except Unavailable:
            return False  # HAProxy is down: nothing can be in flight through it
