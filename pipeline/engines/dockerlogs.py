"""The embedded engine's `LogReader`: instance containers' stdout and stderr from Docker.

Where this sits: `DockerEngine.logs_reader()` hands this out; `engines.logstreams` drives it.
Instances are found by the platform's labels (`core.names`), stopped ones included: Docker keeps a
container's log until the container is removed. One container's stream is read per `open`
(stdout or stderr: the API says which stream a line came from only when asked for one), with
Docker's timestamps on. Docker sends each log message as one frame; a message longer than 16 KiB
arrives as several frames of which only the last ends in a newline, and is joined back here.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import docker
import docker.errors
import requests.exceptions

from pipeline.core import names
from pipeline.core.errors import Unavailable
from pipeline.engines.logs import LINE_MAX, OpenLog, Source, clip, split_stamp

STREAMS = ("stdout", "stderr")
# A follow looks for new instances this often: a scale-up shows in the log within this.
DISCOVER_EVERY_S = 0.5
_DOCKER_DOWN = (docker.errors.APIError, requests.exceptions.ConnectionError)


class DockerLogs:
    streams = STREAMS
    discover_every_s = DISCOVER_EVERY_S

    def __init__(self, client: docker.DockerClient, *, platform: str) -> None:
        self._client = client
        self._platform = platform

    def sources(self, *, service: str, revision: str = "") -> list[Source]:
        labels = [
            f"{names.LABEL_MANAGED}=true",
            f"{names.LABEL_PLATFORM}={self._platform}",
            f"{names.LABEL_SERVICE}={service}",
        ]
        if revision:
            labels.append(f"{names.LABEL_REVISION}={revision}")
        try:
            # The plain list call: one request, where `containers.list` inspects each container.
            rows: list[dict[str, Any]] = self._client.api.containers(
                all=True, filters={"label": labels}
            )
        except _DOCKER_DOWN as e:
            raise Unavailable(f"cannot list the instances of {service}: {e}") from e
        return sorted((source_of(row) for row in rows), key=lambda s: (s.revision, s.instance))

    def open(
        self, source: Source, *, stream: str, follow: bool, since: float | None, tail: int | None
    ) -> OpenLog:
        try:
            raw = self._client.api.logs(
                source.id,
                stdout=stream == "stdout",
                stderr=stream == "stderr",
                stream=True,
                follow=follow,
                timestamps=True,
                since=since if since is not None and since > 0 else None,
                tail=tail if tail is not None else "all",
            )
        except docker.errors.NotFound:
            return DockerLog(())  # removed since it was listed: nothing left to read
        except _DOCKER_DOWN as e:
            raise Unavailable(f"cannot read the log of {source.instance}: {e}") from e
        return DockerLog(raw, closer=raw.close)


def source_of(row: dict[str, Any]) -> Source:
    labels: dict[str, str] = row.get("Labels") or {}
    return Source(
        id=str(row["Id"]),
        revision=labels.get(names.LABEL_REVISION, ""),
        instance=names.server_name(labels.get(names.LABEL_INSTANCE, "")),
    )


class DockerLog:
    """Frames of one container stream as (time_ns, text) lines."""

    def __init__(self, frames: Iterable[bytes], *, closer: Any = None) -> None:
        self._frames = frames
        self._closer = closer
        self._closed = False
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[tuple[int, str]]:
        yield from frame_lines(self._frames)

    def close(self) -> None:
        with self._lock:
            if self._closed or self._closer is None:
                return
            self._closed = True
        # Shuts the socket down, so a read blocked on it returns; Docker may have closed the
        # stream already at its end.
        with contextlib.suppress(OSError, AttributeError, docker.errors.DockerException):
            self._closer()


def frame_lines(frames: Iterable[bytes]) -> Iterator[tuple[int, str]]:
    """`<time> <text>` frames as lines; a message split over frames is joined (cut at
    LINE_MAX), a frame without a readable time continues the line before it."""
    pending: tuple[int, str] | None = None
    last_ns = 0
    for frame in frames:
        raw = frame.decode("utf-8", errors="replace")
        time_ns, text = split_stamp(raw) or (last_ns, raw)
        last_ns = time_ns
        if pending is not None:
            time_ns, text = pending[0], _joined(pending[1], text)
        if text.endswith("\n"):
            pending = None
            yield time_ns, clip(text.rstrip("\r\n"))
        else:
            pending = (time_ns, text)
    if pending is not None:
        yield pending[0], clip(pending[1])


def _joined(head: str, tail: str) -> str:
    if len(head) > LINE_MAX:  # cut at yield anyway: keep only whether the message ended
        return head + ("\n" if tail.endswith("\n") else "")
    return head + tail
