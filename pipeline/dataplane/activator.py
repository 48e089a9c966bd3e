"""The activator: where a request goes when its revision has no instance that can take it.

Every revision backend in HAProxy has the activator as its `backup` server, named after the
revision; HAProxy sends the chosen server's name in a header (`render.SERVER_HEADER`), which is
how a request here says which revision it is for. It is its own long-lived process (`slipway
activator`, composed in `pipeline.app.activatorserver`, started and restarted by the control
plane like the resolver and the metadata server), so it outlives control-plane restarts: a
request held here, and a WebSocket relayed through here, are not cut when the control plane
dies.

`wait_for_instance(revision, timeout)` finds the instance. While the control plane is up it is
asked over a unix socket (`wakeups`) and does what it always did: a frozen instance (paused, see
`pipeline.autoscale.freezing`) is thawed and handed back at once; otherwise the held request
counts as in flight on that revision in HAProxy, the reconciler (woken at once) sees demand and
starts an instance, and its address comes back once it is ready. When the control plane does
not answer, the activator acts alone (`lonestarts`) from the desired state it last wrote
(`desiredcache`): it thaws, uses or starts an instance itself and probes it ready. Either way
the request is then forwarded straight to that instance, body and streamed response intact. As
soon as the instance is in the backend (the control plane adds it), HAProxy stops using the
backup: the activator is only on the path from zero. Bounded: a request waits at most the
readiness timeout, then gets a 503 saying why.

WebSocket upgrades are carried too (`relay_websocket`): the handshake waits like a request, is
repeated against the instance with the client's subprotocols and end-to-end headers, and only
then accepted towards the client with the subprotocol the app chose; messages and the close
code are relayed both ways. Such a session stays on the activator for its whole life (HAProxy
keeps counting it on the revision, so it keeps an instance up), across control-plane restarts.

The routes (`activate`, `activate_websocket`) are plain module-level functions; what they need
(`Activation`: wake the loop, wait for an instance, the forwarding client) is on
`app.state.activation`, set by `create_app`, so each route mounts and tests on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import anyio.to_thread
import httpx
import websockets.asyncio.client
import websockets.exceptions
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from structlog.typing import FilteringBoundLogger

from pipeline.core import names
from pipeline.core.logs import get as get_log
from pipeline.dataplane import resends
from pipeline.dataplane.activationcounts import ActivationCounts
from pipeline.dataplane.render import SERVER_HEADER

# Content-Length stays: the body is passed through byte for byte (raw, not re-encoded), and a
# request body forwarded without it would go out chunked, which some servers do not decode.
HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailers", "transfer-encoding", "upgrade",
    }
)  # fmt: skip


def forwarded_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Pure: the end-to-end headers of a request or response."""
    return [
        (k, v)
        for k, v in headers
        if k.lower() not in HOP_BY_HOP and k.lower() != SERVER_HEADER.lower()
    ]


def revision_of(headers: Headers) -> str:
    """Pure: the revision a request that HAProxy sent here is for ("" if none is named)."""
    return names.revision_of_activator_server(headers.get(SERVER_HEADER, ""))


# The handshake's own headers: the activator makes a new handshake with the instance.
HANDSHAKE = frozenset(
    {
        "host", "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
        "sec-websocket-protocol", "content-length",
    }
)  # fmt: skip


def handshake_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Pure: what of a client's WebSocket handshake is repeated to the instance (cookies,
    authorization, origin, X-Forwarded-*), without what belongs to one hop or one handshake."""
    return [(k, v) for k, v in forwarded_headers(headers) if k.lower() not in HANDSHAKE]


@dataclass(frozen=True, kw_only=True)
class Activation:
    """What the routes need, kept on `app.state.activation` (see `create_app`)."""

    wake: Callable[[], None]  # start a reconcile pass now (a no-op where asking wakes it)
    # Blocks until a ready instance's host:port exists for the revision, or returns None.
    wait_for_instance: Callable[[str, float], str | None]
    timeout_s: float
    client: httpx.AsyncClient  # forwards plain requests to instances
    log: FilteringBoundLogger
    # A line per wake-up and then counts, not a line per request (see activationcounts).
    counts: ActivationCounts = field(
        default_factory=lambda: ActivationCounts(get_log(component="activator"))
    )
    websocket_counts: ActivationCounts = field(
        default_factory=lambda: ActivationCounts(get_log(component="activator"), what="websocket")
    )

    async def instance(self, headers: Headers) -> str | Response:
        """The address of a ready instance of the request's revision, or the refusal to send:
        400 when no revision is named, 503 when no instance came within the timeout."""
        revision = revision_of(headers)
        if not revision:
            return PlainTextResponse("slipway: activator reached without a revision\n", 400)
        self.wake()  # HAProxy already counts this request as demand: decide now, not in a second
        address = await anyio.to_thread.run_sync(self.wait_for_instance, revision, self.timeout_s)
        if address is None:
            self.log.warning("activation_timed_out", revision=revision, timeout_s=self.timeout_s)
            return PlainTextResponse(_no_instance(revision, self.timeout_s), 503)
        return address


def create_app(
    *,
    wait_for_instance: Callable[[str, float], str | None],
    timeout_s: float,
    wake: Callable[[], None] = lambda: None,
) -> Starlette:
    """`wait_for_instance(revision, timeout)` blocks until a ready instance's host:port exists.
    `wake` is for an activator inside the control plane (tests); the process asks instead."""
    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    app = Starlette(
        routes=[
            Route("/{path:path}", activate, methods=methods),
            WebSocketRoute("/{path:path}", activate_websocket),
        ],
        lifespan=_counts_flushed,
    )
    log = get_log(component="activator")
    app.state.activation = Activation(
        wake=wake,
        wait_for_instance=wait_for_instance,
        timeout_s=timeout_s,
        client=httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, read=None)),
        log=log,
        counts=ActivationCounts(log),
        websocket_counts=ActivationCounts(log, what="websocket"),
    )
    return app


@contextlib.asynccontextmanager
async def _counts_flushed(app: Starlette) -> AsyncIterator[None]:
    """Requests counted but not yet logged are logged when the activator stops."""
    yield
    activation: Activation = app.state.activation
    activation.counts.flush()
    activation.websocket_counts.flush()


async def activate(request: Request) -> Response:
    """A plain request: wait for an instance, then forward it there, body streamed both ways."""
    activation: Activation = request.app.state.activation
    address = await activation.instance(request.headers)
    if isinstance(address, Response):
        return address
    revision = revision_of(request.headers)
    url = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    client = activation.client
    bodyless = _bodyless(request)
    outgoing = client.build_request(
        request.method,
        f"http://{address}{url}",
        headers=forwarded_headers(list(request.headers.items())),
        content=b"" if bodyless else request.stream(),  # bytes can be sent again, a stream not
    )
    resend = bodyless and resends.may_run_twice(request.method, request.headers)
    try:
        upstream = await _send(client, outgoing, resend=resend)
    except httpx.HTTPError as e:
        activation.log.warning("activation_forward_failed", revision=revision, instance=address,
                               error=e.__class__.__name__)  # fmt: skip
        return PlainTextResponse(f"slipway: revision {revision}: {e.__class__.__name__}\n", 502)
    activation.counts.activated(revision, address)
    response = StreamingResponse(
        upstream.aiter_raw(),
        status_code=upstream.status_code,
        background=BackgroundTask(upstream.aclose),
    )
    # Raw pairs, so repeated headers (several Set-Cookie) all reach the client.
    response.raw_headers = [
        (k.encode("latin-1"), v.encode("latin-1"))
        for k, v in forwarded_headers(list(upstream.headers.multi_items()))
    ]
    return response


CONNECT_RETRIES = (0.05, 0.1, 0.2, 0.4, 0.8)


async def _send(
    client: httpx.AsyncClient, outgoing: httpx.Request, *, resend: bool
) -> httpx.Response:
    """Send to a freshly started instance. A burst held at zero arrives all at once, and an app
    with a short accept backlog (busybox httpd listens with 9) refuses or resets some
    connections before it reads them. A refused connect sent nothing: always tried again. A
    reset after sending is tried again only if `resend`: a request without a body (a streamed
    one cannot be sent again) that may run twice, as the app may have acted on it before the
    reset (`resends`; HAProxy follows the same rule)."""
    retryable: tuple[type[Exception], ...] = (httpx.ConnectError,)
    if resend:
        retryable += (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)
    for delay in CONNECT_RETRIES:
        try:
            return await client.send(outgoing, stream=True)
        except retryable:
            await anyio.sleep(delay)
    return await client.send(outgoing, stream=True)


def _bodyless(request: Request) -> bool:
    headers = request.headers
    return "transfer-encoding" not in headers and headers.get("content-length", "0") == "0"


async def activate_websocket(client: WebSocket) -> None:
    """A WebSocket handshake: wait for an instance, repeat the handshake there, then relay.
    Refusals are HTTP responses to the handshake (ASGI's websocket.http.response), as the
    plain-request path gives them: a client sees 503 and why, or the app's own refusal."""
    activation: Activation = client.app.state.activation
    address = await activation.instance(client.headers)
    if isinstance(address, Response):
        await client.send_denial_response(address)
        return
    upstream = await _handshake(client, address, activation=activation)
    if isinstance(upstream, Response):
        await client.send_denial_response(upstream)
        return
    revision = revision_of(client.headers)
    activation.websocket_counts.activated(revision, address)
    await client.accept(subprotocol=upstream.subprotocol)
    await relay_websocket(client, upstream)


async def _handshake(
    client: WebSocket, address: str, *, activation: Activation
) -> websockets.asyncio.client.ClientConnection | Response:
    """The client's handshake repeated against the instance; a refusal becomes the response to
    pass on (the app's own answer, or a 502 naming what failed)."""
    query = f"?{client.url.query}" if client.url.query else ""
    try:
        return await websockets.asyncio.client.connect(
            f"ws://{address}{client.url.path}{query}",
            subprotocols=[websockets.Subprotocol(p) for p in client.scope["subprotocols"]],
            additional_headers=handshake_headers(list(client.headers.items())),
            compression=None,  # each hop negotiates its own; relay messages as they are
            max_size=None,  # the client side (uvicorn) already bounds message size
            ping_interval=None,  # the app and the client keep their session alive
            open_timeout=activation.timeout_s,
        )
    except websockets.exceptions.InvalidStatus as e:  # the app said no: pass its answer on
        body = bytes(e.response.body or b"")
        denial = Response(body, status_code=e.response.status_code)
        denial.raw_headers = [
            *(
                (k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in forwarded_headers(list(e.response.headers.raw_items()))
                if k.lower() != "content-length"
            ),
            (b"content-length", str(len(body)).encode()),
        ]
        return denial
    except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as e:
        revision = revision_of(client.headers)
        activation.log.warning("websocket_refused", revision=revision, error=e.__class__.__name__)
        return PlainTextResponse(f"slipway: revision {revision}: {e.__class__.__name__}\n", 502)


async def relay_websocket(
    client: WebSocket, upstream: websockets.asyncio.client.ClientConnection
) -> None:
    """Messages both ways until one side closes; its close code goes to the other side."""

    async def to_upstream() -> None:
        try:
            while True:
                message = await client.receive()
                if message["type"] == "websocket.disconnect":
                    await upstream.close(code=_sendable(message.get("code")))
                    return
                data = message.get("text")
                await upstream.send(data if data is not None else message.get("bytes") or b"")
        except websockets.exceptions.ConnectionClosed:
            return

    async def to_client() -> None:
        try:
            async for data in upstream:
                if isinstance(data, str):
                    await client.send_text(data)
                else:
                    await client.send_bytes(data)
        except websockets.exceptions.ConnectionClosed:
            pass
        except WebSocketDisconnect:
            return
        with contextlib.suppress(RuntimeError):  # the client went first: nothing to tell it
            await client.close(
                code=_sendable(upstream.close_code), reason=upstream.close_reason or ""
            )

    tasks = [asyncio.create_task(to_upstream()), asyncio.create_task(to_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await upstream.close()


def _sendable(code: int | None) -> int:
    """1005 (no code given) and 1006 (no close frame) are reported, never sent (RFC 6455 7.4.1)."""
    return 1000 if code is None or code in (1005, 1006) else code


def _no_instance(revision: str, timeout_s: float) -> str:
    return f"slipway: revision {revision} got no ready instance within {timeout_s:.0f}s\n"
