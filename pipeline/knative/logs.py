"""The Knative engine's `LogReader`: `pods/log` of a service's pods, through the API server.

Where this sits: `KnativeEngine.logs_reader()` hands this out; `engines.logstreams` drives it
exactly as it drives the Docker one. A service's pods carry Slipway's labels (the revision
template has them, `knative.render`) and Knative's revision label; the app container is the one
that is not Knative's `queue-proxy`. Kubernetes keeps one log per container, stdout and stderr
interleaved, so every line is on the stream "output". A pod is listed once its app container has
started (before that the API server has no log to give); a pod Knative has deleted is gone with
its log, as a removed container is on the embedded engine.

`sinceSeconds` is relative and whole: the reader asks for a little more and drops lines before
`since` itself, so `--since` means the same on both engines.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import urllib3.exceptions

from pipeline.core.annotations import KNATIVE_REVISION_LABEL, PLATFORM_LABEL, SERVICE_LABEL
from pipeline.core.errors import InvalidSpec, NotFound
from pipeline.engines.logs import LINE_MAX, NS, OpenLog, Source, clip, split_stamp
from pipeline.knative.apply import KubeApi

STREAMS = ("output",)
DISCOVER_EVERY_S = 1.0  # one pod LIST per follow per second: new pods show within it
QUEUE_PROXY = "queue-proxy"  # Knative's sidecar in every revision pod


class KnativeLogs:
    streams = STREAMS
    discover_every_s = DISCOVER_EVERY_S

    def __init__(self, api: KubeApi, *, clock: Callable[[], float] = time.time) -> None:
        self._api = api
        self._clock = clock

    def sources(self, *, service: str, revision: str = "") -> list[Source]:
        selector = f"{PLATFORM_LABEL}={self._api.platform},{SERVICE_LABEL}={service}"
        if revision:
            selector += f",{KNATIVE_REVISION_LABEL}={revision}"
        found = [source_of(pod) for pod in self._api.list_pods(selector=selector)]
        return sorted((s for s in found if s), key=lambda s: (s.revision, s.instance))

    def open(
        self, source: Source, *, stream: str, follow: bool, since: float | None, tail: int | None
    ) -> OpenLog:
        since_seconds = None if since is None else max(1, math.ceil(self._clock() - since))
        try:
            response = self._api.open_log(
                source.id,
                container=source.container,
                follow=follow,
                since_seconds=since_seconds,
                tail_lines=tail,
            )
        except (NotFound, InvalidSpec):  # deleted since listed, or its container went away
            return PodLog(None)
        return PodLog(response, since_ns=None if since is None else int(since * NS))


def source_of(pod: dict[str, Any]) -> Source | None:
    """A pod whose app container has started (running or exited), as a log source."""
    meta: dict[str, Any] = pod.get("metadata") or {}
    labels: dict[str, str] = meta.get("labels") or {}
    spec: dict[str, Any] = pod.get("spec") or {}
    app = next(
        (str(c["name"]) for c in spec.get("containers") or [] if c.get("name") != QUEUE_PROXY),
        "",
    )
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    state = next((s.get("state") or {} for s in statuses if s.get("name") == app), {})
    if not app or not ("running" in state or "terminated" in state):
        return None
    return Source(
        id=str(meta.get("name", "")),
        revision=labels.get(KNATIVE_REVISION_LABEL, ""),
        instance=str(meta.get("name", "")),
        container=app,
    )


class PodLog:
    """A raw pods/log response as (time_ns, text) lines."""

    def __init__(self, response: Any, *, since_ns: int | None = None) -> None:
        self._response = response
        self._since_ns = since_ns
        self._closed = False
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[tuple[int, str]]:
        if self._response is None:
            return
        pending = b""
        try:
            for chunk in self._response.stream(4096):
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    yield from self._line(raw)
                pending = pending[: LINE_MAX * 4]  # a line without end stays bounded
        except (urllib3.exceptions.HTTPError, OSError):
            return  # closed under us (the reader went away), or the stream broke off
        if pending:
            yield from self._line(pending)

    def _line(self, raw: bytes) -> Iterator[tuple[int, str]]:
        parsed = split_stamp(raw.decode("utf-8", errors="replace").rstrip("\r"))
        if parsed is None or (self._since_ns is not None and parsed[0] < self._since_ns):
            return
        yield parsed[0], clip(parsed[1])

    def close(self) -> None:
        with self._lock:
            if self._closed or self._response is None:
                return
            self._closed = True
        # shutdown() (urllib3 2.3+) wakes a read blocked in another thread; it refuses once the
        # response was read to its end and its connection went back to the pool.
        shutdown = getattr(self._response, "shutdown", None)
        if shutdown is not None:
            with contextlib.suppress(ValueError, RuntimeError, OSError):
                shutdown()
        self._response.release_conn()
