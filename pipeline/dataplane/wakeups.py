"""The activator asks the control plane for an instance: a small app on a unix socket.

While the control plane is up it stays the one owner of instance starts: the activator process
(`activator`) does not start anything itself but asks here, and the control plane does what the
activator did when it ran inside it: wake the reconciler, thaw a frozen instance or wait for a
started one (`Reconciler.instance_for`), and answer host:port. No double start is possible.

The socket sits in the control plane's run dir, mode 0600, and is not the public API: only a
process of the same user reaches it, and it can do no more than a request through HAProxy
could (ask for an instance of a revision). `ask` is the activator's client: `ControlPlaneDown`
when nothing listens (the activator then acts alone, `lonestarts`).
"""

from __future__ import annotations

import http.client
import os
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import anyio.to_thread
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

SOCKET_NAME = "activation.sock"
CONNECT_TIMEOUT_S = 1.0
ANSWER_MARGIN_S = 5.0  # past the wait asked for, a silent control plane counts as down


class ControlPlaneDown(Exception):
    """Nothing answers on the socket, or it went away before answering."""


def socket_path(run_dir: Path) -> Path:
    return run_dir / SOCKET_NAME


def create_app(
    *, wake: Callable[[], None], instance_for: Callable[[str, float], str | None]
) -> Starlette:
    """`GET /instances/<revision>?timeout_s=N`: 200 host:port, or 503 when none came in time.
    `instance_for` wakes the loop itself when it has to wait for a start; the pass that puts a
    thawed instance back into HAProxy is woken here, once the answer is out: started earlier,
    it would hold the interpreter while the answer waits (a few ms of a thaw's ~20), and a pass
    that listed containers before the thaw would take the instance out of HAProxy first."""

    async def instance(request: Request) -> Response:
        revision = request.path_params["revision"]
        try:
            timeout_s = float(request.query_params.get("timeout_s", "60"))
        except ValueError:
            return PlainTextResponse("timeout_s: not a number\n", 400)
        address = await anyio.to_thread.run_sync(instance_for, revision, timeout_s)
        woken = BackgroundTask(wake)
        if address is None:
            return PlainTextResponse("", 503, background=woken)
        return PlainTextResponse(address, background=woken)

    return Starlette(routes=[Route("/instances/{revision}", instance)])


def bind(path: Path) -> socket.socket:
    """The listening socket, 0600. The umask is not touched (it is the process's, and other
    threads create files meanwhile): the control plane's umask (077) already leaves other users
    out from the start, and the run dir is private. A stale one from a killed process is
    replaced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    os.chmod(path, 0o600)
    sock.listen(256)
    return sock


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over the unix socket; a connect that fails closes its socket (one per ask: asks
    come only for requests at zero, so no pool is worth keeping)."""

    def __init__(self, path: Path, *, read_timeout_s: float) -> None:
        super().__init__("control-plane")
        self._path = path
        self._read_timeout_s = read_timeout_s

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(CONNECT_TIMEOUT_S)  # a dead control plane costs one refused connect
            sock.connect(str(self._path))
        except OSError:
            sock.close()
            raise
        sock.settimeout(self._read_timeout_s)
        self.sock = sock


def ask(path: Path, revision: str, timeout_s: float) -> str | None:
    """host:port of a ready instance the control plane found (or started) for `revision`; None
    if none came within `timeout_s`. `ControlPlaneDown` if it is not there or died meanwhile
    (or hangs well past the time asked for)."""
    conn = _UnixConnection(path, read_timeout_s=timeout_s + ANSWER_MARGIN_S)
    try:
        conn.request("GET", f"/instances/{quote(revision, safe='')}?timeout_s={timeout_s:.3f}")
        reply = conn.getresponse()
        body = reply.read().decode()
    except (OSError, http.client.HTTPException) as e:  # refused, no file, killed mid-answer
        raise ControlPlaneDown(e.__class__.__name__) from e
    finally:
        conn.close()
    return body if reply.status == 200 and body else None
