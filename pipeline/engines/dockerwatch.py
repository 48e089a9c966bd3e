"""This platform's containers as dockerd last listed them, kept current by dockerd's event stream.

Listing every container is most of a reconcile pass at scale: dockerd takes 40 ms for 500
containers on an idle 2-core machine and 70-160 ms under load, nearly all of it in dockerd, and
almost every container (frozen, or serving untouched) is the same as one pass before. So a pass
re-reads only the containers something happened to, in one call filtered by their ids:
- those the engine itself changed (`mark`, called in the changing thread before the call returns:
  the next pass never waits on an event to see its own work), and
- those dockerd reported an event for (a crash, an OOM kill, `docker pause` by hand), recorded
  by a follower thread; a read that runs before the event arrives sees what a listing begun just
  before the change would have seen, as polling did.
Everything is listed again when the stream is not followed (not yet connected, or lost with
dockerd: events in the gap would be missed), and every `full_every_s` as a safety net.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import docker

from pipeline.core.logs import get as get_log

Entry = dict[str, Any]  # one container as GET /containers/json describes it
# Events that change what a listing says of a container (its state, address, name, existence).
LIFECYCLE_EVENTS = (
    "create", "start", "restart", "die", "oom", "stop", "pause", "unpause", "destroy",
    "rename", "update",
)  # fmt: skip
FULL_EVERY_S = 30.0
RECONNECT_MAX_S = 10.0


class ContainerCache:
    def __init__(
        self,
        client: docker.DockerClient,
        labels: list[str],
        *,
        full_every_s: float = FULL_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._labels = labels
        self._full_every_s = full_every_s
        self._clock = clock
        self._lock = threading.Lock()  # guards the fields below; never held calling dockerd
        self._reading = threading.Lock()  # one read at a time: two would race on _entries
        self._entries: dict[str, Entry] = {}
        self._dirty: set[str] = set()
        self._following = False  # the stream is connected: events are being recorded
        self._valid = False  # _entries are a full listing made while following, plus events since
        self._listed_at = float("-inf")
        self._stream: Any = None
        self._closed = False
        self._log = get_log(component="docker-events")
        self.full_listings = 0  # how many reads listed everything (for tests and benches)

    def start(self) -> None:
        threading.Thread(target=self._follow, name="docker-events", daemon=True).start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            stream = self._stream
        if stream is not None:
            stream.close()  # docker-py's CancellableStream: closes the socket under the reader

    @property
    def following(self) -> bool:
        """The event stream is connected (reads may use the cache)."""
        with self._lock:
            return self._following

    def mark(self, ident: str) -> None:
        """The engine changed this container: the next read asks dockerd about it."""
        with self._lock:
            self._dirty.add(ident)

    def read(
        self,
        list_all: Callable[[], list[Entry]],
        list_ids: Callable[[list[str]], list[Entry]],
    ) -> list[Entry]:
        """Every container: listed again in full, or the cached ones with the changed re-read."""
        with self._reading:
            with self._lock:
                now = self._clock()
                full = (
                    not self._following
                    or not self._valid
                    or now - self._listed_at >= self._full_every_s
                )
                dirty, self._dirty = self._dirty, set()
                if full:
                    # Set before listing: losing the stream during the listing clears it again.
                    self._valid = self._following
            try:
                if full:
                    entries = {str(e["Id"]): e for e in list_all()}
                else:
                    entries = dict(self._entries)
                    for ident, entry in _reread(dirty, list_ids).items():
                        if entry is None:
                            entries.pop(ident, None)
                        else:
                            entries[ident] = entry
            except Exception:
                with self._lock:
                    self._dirty |= dirty  # asked again on the next read
                    if full:
                        self._valid = False
                raise
            with self._lock:
                self._entries = entries
                if full:
                    self._listed_at = now
                    self.full_listings += 1
            return list(entries.values())

    def _follow(self) -> None:
        backoff = 0.5
        while True:
            with self._lock:
                if self._closed:
                    return
            try:
                stream = self._client.api.events(
                    filters={
                        "type": ["container"],
                        "label": self._labels,
                        "event": list(LIFECYCLE_EVENTS),
                    },
                    decode=True,
                )
                with self._lock:
                    self._stream = stream
                    self._following = True
                    self._valid = False  # what happened before the subscription is unknown
                    closed = self._closed
                if closed:
                    stream.close()
                    return
                backoff = 0.5
                for event in stream:
                    self._record(event)
            except Exception as e:  # dockerd gone or restarting: list in full until back
                self._log.warning("docker_events_lost", error=str(e)[:200])
            with self._lock:
                self._following = False
                self._valid = False
                self._stream = None
                if self._closed:
                    return
            time.sleep(backoff)
            backoff = min(backoff * 2, RECONNECT_MAX_S)

    def _record(self, event: dict[str, Any]) -> None:
        ident = event.get("id") or (event.get("Actor") or {}).get("ID")
        if ident:
            with self._lock:
                self._dirty.add(str(ident))


def _reread(
    dirty: Iterable[str], list_ids: Callable[[list[str]], list[Entry]]
) -> dict[str, Entry | None]:
    """The dirty containers as dockerd lists them now; None for each it no longer has."""
    ids = sorted(dirty)
    if not ids:
        return {}
    found = {str(e["Id"]): e for e in list_ids(ids)}
    return {ident: found.get(ident) for ident in ids}
