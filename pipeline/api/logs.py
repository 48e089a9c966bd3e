"""`GET /v1/services/{name}/logs`: a service's app logs (every instance's stdout and stderr) or,
with `requests=1`, its request logs, streamed as NDJSON; `follow=1` keeps the stream open.

Where this sits: the route checks the query and returns at once; a producer thread of its own
does the reading (`engines.logstreams` through the engine's log reader, or the request rings of
`dataplane.requestlogs`) into a `Feed`, and the response's async generator only awaits the feed.
A follow that runs for hours therefore holds a thread, never the event loop nor a worker of the
shared thread pool. When the client goes away the generator is closed, which sets the feed's
stop: the producer returns and every Docker or Kubernetes stream it opened is closed.

Lines: `{"event": "log", "time", "revision", "instance", "stream", "line"}` or
`{"event": "request", "time", "revision", "instance", "method", "path", "status",
"duration_ms"}`; times are RFC 3339 UTC with nanoseconds. A blank line is sent after
`KEEPALIVE_S` of silence (so proxies keep the stream and a departed client is noticed); the
stream may end with an `error` event, and `{"event": "dropped", "lines": N}` says a follower fell
that far behind the request log.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from pipeline.api.dependencies import ADMIN, PlatformDep, ServiceName
from pipeline.api.errors import error_event
from pipeline.core.errors import InvalidInput, NotFound, SlipwayError
from pipeline.core.logs import get as get_log
from pipeline.dataplane.requestlogs import RequestLine, RequestLogs
from pipeline.engines.logs import LogLine, LogReader, check_tail, format_time, parse_since
from pipeline.engines.logstreams import LogQuery, stream_logs

router = APIRouter(prefix="/v1/services/{name}", tags=["logs"], dependencies=ADMIN)

MEDIA_TYPE = "application/x-ndjson"
KEEPALIVE_S = 5.0
FEED_MAX = 1000  # lines waiting for a slow client; past it, producers wait (app logs)
BATCH_MAX = 256  # lines per chunk written to the client
NOT_HERE = (
    "request logs come from Slipway's HAProxy, which the Knative engine does not run: read "
    "them where Knative's ingress or queue-proxy logs requests"
)

STREAMED_LOGS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "NDJSON: log or request lines, blank keep-alive lines, maybe an error.",
        "content": {MEDIA_TYPE: {"schema": {"type": "string"}}},
    }
}


@router.get("/logs", responses=STREAMED_LOGS)
def service_logs(
    name: ServiceName,
    platform: PlatformDep,
    revision: Annotated[str, Query(description="Only this revision's instances.")] = "",
    follow: Annotated[bool, Query(description="Keep streaming new lines as they come.")] = False,
    since: Annotated[
        str, Query(description="Only lines newer than this: a duration (10m, 2h) or a time.")
    ] = "",
    tail: Annotated[
        int | None, Query(description="Only the last N lines (before following).")
    ] = None,
    requests: Annotated[
        bool, Query(description="The requests HAProxy passed to the service, not app output.")
    ] = False,
) -> StreamingResponse:
    """Every instance's stdout and stderr merged in time order, stopped instances included until
    they are removed; with `requests=1`, the requests HAProxy passed to the service."""
    platform.store.get_service(name)
    if revision and revision not in {r.name for r in platform.store.list_revisions(name)}:
        raise NotFound(f"service {name!r} has no revision {revision!r}")
    query = LogQuery(
        service=name,
        revision=revision,
        since=parse_since(since, now=time.time()) if since else None,
        tail=check_tail(tail),
        follow=follow,
    )
    if requests:
        if platform.request_logs is None:
            raise InvalidInput(NOT_HERE)
        rings = platform.request_logs
        return _streamed(lambda feed: request_lines(rings, query, feed=feed))
    reader: LogReader = platform.engine.logs_reader()
    return _streamed(lambda feed: app_lines(reader, query, feed=feed))


def _streamed(produce: Callable[[Feed], None]) -> StreamingResponse:
    return StreamingResponse(feed_lines(produce), media_type=MEDIA_TYPE)


# --- producers (on their own thread) -------------------------------------------------------


def app_lines(reader: LogReader, query: LogQuery, *, feed: Feed) -> None:
    stream_logs(reader, query, emit=lambda line: feed.put(log_event(line)), stop=feed.stop)


def request_lines(rings: RequestLogs, query: LogQuery, *, feed: Feed) -> None:
    # HAProxy's lines arrive on the receiving thread, which must never wait for a client: they
    # queue here (bounded, drops counted) and this thread passes them on after the history.
    live: queue.Queue[RequestLine] = queue.Queue(FEED_MAX)
    dropped = [0]

    def on_line(line: RequestLine) -> None:
        try:
            live.put_nowait(line)
        except queue.Full:
            dropped[0] += 1

    kept, cancel = rings.watch(
        query.service,
        revision=query.revision,
        since_ms=None if query.since is None else int(query.since * 1000),
        tail=query.tail,
        on_line=on_line if query.follow else None,
    )
    try:
        for line in kept:
            if not feed.put(request_event(line)):
                return
        reported = 0
        while query.follow and not feed.stop.is_set():
            if dropped[0] > reported:
                feed.put({"event": "dropped", "lines": dropped[0] - reported})
                reported = dropped[0]
            try:
                feed.put(request_event(live.get(timeout=0.5)))
            except queue.Empty:
                continue
    finally:
        cancel()


def log_event(line: LogLine) -> dict[str, Any]:
    return {
        "event": "log",
        "time": format_time(line.time_ns),
        "revision": line.revision,
        "instance": line.instance,
        "stream": line.stream,
        "line": line.text,
    }


def request_event(line: RequestLine) -> dict[str, Any]:
    return {
        "event": "request",
        "time": format_time(line.time_ms * 10**6),
        "revision": line.revision,
        "instance": line.instance,
        "method": line.method,
        "path": line.path,
        "status": line.status,
        "duration_ms": line.duration_ms,
    }


# --- from the producer thread to the event loop ---------------------------------------------


class Feed:
    """Events from a producer thread to the response: bounded, and stoppable from either side."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, size: int = FEED_MAX) -> None:
        self._items: queue.Queue[bytes | None] = queue.Queue(size)
        self._loop = loop
        self._ready = asyncio.Event()
        self.stop = threading.Event()  # set when the client is gone: producers return

    def put(self, event: dict[str, Any]) -> bool:
        """Queue one event, waiting while the client is behind; False once it is gone."""
        return self._put((json.dumps(event) + "\n").encode())

    def finish(self) -> None:
        self._put(None)

    def _put(self, item: bytes | None) -> bool:
        while not self.stop.is_set():
            try:
                self._items.put(item, timeout=0.2)
            except queue.Full:
                continue
            try:
                self._loop.call_soon_threadsafe(self._ready.set)
            except RuntimeError:  # the loop is closed: nobody will read
                self.stop.set()
                return False
            return True
        return False

    async def chunks(self) -> AsyncIterator[bytes]:
        """What to write, as it comes; a blank line after `KEEPALIVE_S` of silence."""
        while True:
            self._ready.clear()  # before draining: a put after the drain sets it again
            batch: list[bytes] = []
            while len(batch) < BATCH_MAX:
                try:
                    item = self._items.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    if batch:
                        yield b"".join(batch)
                    return
                batch.append(item)
            if batch:
                yield b"".join(batch)
                continue
            try:
                await asyncio.wait_for(self._ready.wait(), KEEPALIVE_S)
            except TimeoutError:
                yield b"\n"


async def feed_lines(produce: Callable[[Feed], None]) -> AsyncIterator[bytes]:
    feed = Feed(asyncio.get_running_loop())
    threading.Thread(target=_produce, args=(produce, feed), name="logs", daemon=True).start()
    try:
        async for chunk in feed.chunks():
            yield chunk
    finally:
        feed.stop.set()  # done, or the client went away: the producer and its streams stop


def _produce(produce: Callable[[Feed], None], feed: Feed) -> None:
    try:
        produce(feed)
    except Exception as e:
        if not isinstance(e, SlipwayError):
            get_log(component="api").exception("logs_crashed")
        feed.put(error_event(e))
    finally:
        feed.finish()
