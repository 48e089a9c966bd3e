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

import os
import socket
from collections.abc import Callable
from pathlib import Path

import anyio.to_thread
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

SOCKET_NAME = "activation.sock"


class ControlPlaneDown(Exception):
    """Nothing answers on the socket, or it went away before answering."""


def socket_path(run_dir: Path) -> Path:
    return run_dir / SOCKET_NAME


def create_app(
    *, wake: Callable[[], None], instance_for: Callable[[str, float], str | None]
) -> Starlette:
    """`GET /instances/<revision>?timeout_s=N`: 200 host:port, or 503 when none came in time."""

    async def instance(request: Request) -> Response:
        revision = request.path_params["revision"]
        try:
            timeout_s = float(request.query_params.get("timeout_s", "60"))
        except ValueError:
            return PlainTextResponse("timeout_s: not a number\n", 400)
        wake()  # HAProxy already counts the held request as demand: decide now
        address = await anyio.to_thread.run_sync(instance_for, revision, timeout_s)
        if address is None:
            return PlainTextResponse("", 503)
        return PlainTextResponse(address)

    return Starlette(routes=[Route("/instances/{revision}", instance)])


def bind(path: Path) -> socket.socket:
    """The listening socket, 0600 from the start (bound under a umask, not chmod-ed after: no
    moment where another user could connect). A stale one from a killed process is replaced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    sock.listen(256)
    return sock


def client(path: Path) -> httpx.Client:
    """The activator's client: no overall timeout (an ask waits as long as it asks to), but a
    connect that fails fast, so a dead control plane costs one refused connect."""
    return httpx.Client(
        transport=httpx.HTTPTransport(uds=str(path)),
        timeout=httpx.Timeout(None, connect=1.0),
    )


def ask(http: httpx.Client, revision: str, timeout_s: float) -> str | None:
    """host:port of a ready instance the control plane found (or started) for `revision`; None
    if none came within `timeout_s`. `ControlPlaneDown` if it is not there or died meanwhile."""
    try:
        reply = http.get(
            f"http://control-plane/instances/{revision}", params={"timeout_s": f"{timeout_s:.3f}"}
        )
    except httpx.TransportError as e:  # refused, no socket file, or killed mid-answer
        raise ControlPlaneDown(e.__class__.__name__) from e
    if reply.status_code == 200 and reply.text:
        return reply.text
    return None
