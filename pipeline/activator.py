"""The activator: where a request goes when its revision has no instance that can take it.

Every revision backend in HAProxy has the activator as its `backup` server, with the revision
named in a header. While the request is held here, HAProxy counts it as in flight on that
revision, so the next reconcile pass (woken at once) sees demand and starts an instance; the
request is then forwarded straight to that instance, body and streamed response intact. As soon
as the instance is in the backend, HAProxy stops using the backup: the activator is only on the
path from zero. Bounded: a request waits at most the readiness timeout, then gets a 503 saying
why. WebSocket upgrades are not carried through the activator (they work once an instance is up).
"""

from __future__ import annotations

from collections.abc import Callable

import anyio.to_thread
import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from pipeline.dataplane.render import REVISION_HEADER
from pipeline.logs import get as get_log

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
        if k.lower() not in HOP_BY_HOP and k.lower() != REVISION_HEADER.lower()
    ]


def create_app(
    *,
    wake: Callable[[], None],
    wait_for_instance: Callable[[str, float], str | None],
    timeout_s: float,
) -> Starlette:
    """`wait_for_instance(revision, timeout)` blocks until a ready instance's host:port exists."""
    log = get_log(component="activator")
    client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, read=None))

    async def activate(request: Request) -> Response:
        revision = request.headers.get(REVISION_HEADER, "")
        if not revision:
            return PlainTextResponse("slipway: activator reached without a revision\n", 400)
        wake()  # HAProxy already counts this request as demand: decide now, not in a second
        address = await anyio.to_thread.run_sync(wait_for_instance, revision, timeout_s)
        if address is None:
            log.warning("activation_timed_out", revision=revision, timeout_s=timeout_s)
            return PlainTextResponse(
                f"slipway: revision {revision} got no ready instance within {timeout_s:.0f}s\n",
                503,
            )
        url = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        outgoing = client.build_request(
            request.method,
            f"http://{address}{url}",
            headers=forwarded_headers(list(request.headers.items())),
            content=request.stream(),
        )
        try:
            upstream = await client.send(outgoing, stream=True)
        except httpx.HTTPError as e:
            return PlainTextResponse(f"slipway: revision {revision}: {e.__class__.__name__}\n", 502)
        log.info("request_activated", revision=revision, instance=address)
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

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return Starlette(routes=[Route("/{path:path}", activate, methods=methods)])
