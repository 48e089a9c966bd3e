"""The container cache's bookkeeping: when a read lists everything, when it re-reads only what
changed, and what it does when dockerd's stream or a listing fails.

dockerd is not here: `FakeEvents` stands for docker-py's `APIClient.events` stream (a generator
with `close()`), fed by the test, and the listings are functions over a dict the test changes.
The same cache against the real dockerd is tests/integration/test_docker_events.py.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.engines.dockerwatch import ContainerCache

_END = object()


class FakeEvents:
    def __init__(self) -> None:
        self.q: queue.Queue[Any] = queue.Queue()
        self.subscriptions = 0

    def events(self, *, filters: dict[str, Any], decode: bool) -> FakeStream:
        assert filters["type"] == ["container"] and decode
        self.subscriptions += 1
        return FakeStream(self.q)


class FakeStream:
    def __init__(self, q: queue.Queue[Any]) -> None:
        self.q = q

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while (item := self.q.get()) is not _END:
            yield item

    def close(self) -> None:
        self.q.put(_END)


class FakeClient:
    def __init__(self) -> None:
        self.api = FakeEvents()


class Dockerd:
    """The containers, and every listing call made of them."""

    def __init__(self) -> None:
        self.containers: dict[str, dict[str, Any]] = {}
        self.full = 0
        self.by_id: list[list[str]] = []
        self.fail = False

    def list_all(self) -> list[dict[str, Any]]:
        self.full += 1
        return [dict(c) for c in self.containers.values()]

    def list_ids(self, ids: list[str]) -> list[dict[str, Any]]:
        if self.fail:
            raise ConnectionError("dockerd went away")
        self.by_id.append(ids)
        return [dict(self.containers[i]) for i in ids if i in self.containers]

    def put(self, ident: str, state: str) -> None:
        self.containers[ident] = {"Id": ident, "State": state}


def states(entries: list[dict[str, Any]]) -> dict[str, str]:
    return {e["Id"]: e["State"] for e in entries}


def wait_until(check: Any) -> None:
    deadline = time.monotonic() + 5
    while not check():
        assert time.monotonic() < deadline, "not within 5 s"
        time.sleep(0.01)


@pytest.fixture
def dockerd() -> Dockerd:
    d = Dockerd()
    d.put("a", "running")
    d.put("b", "paused")
    return d


@pytest.fixture
def following() -> Iterator[tuple[ContainerCache, FakeClient, list[float]]]:
    client = FakeClient()
    now = [100.0]
    cache = ContainerCache(client, ["l=1"], full_every_s=30, clock=lambda: now[0])  # type: ignore[arg-type]
    cache.start()
    wait_until(lambda: cache.following)
    yield cache, client, now
    cache.close()


def read(cache: ContainerCache, d: Dockerd) -> dict[str, str]:
    return states(cache.read(d.list_all, d.list_ids))


def test_before_the_stream_is_followed_every_read_lists_everything(dockerd: Dockerd) -> None:
    cache = ContainerCache(FakeClient(), ["l=1"])  # type: ignore[arg-type]  # never started
    assert read(cache, dockerd) == {"a": "running", "b": "paused"}
    dockerd.put("a", "exited")
    assert read(cache, dockerd) == {"a": "exited", "b": "paused"}
    assert (dockerd.full, dockerd.by_id) == (2, [])


def test_while_followed_only_what_changed_is_read_again(
    following: tuple[ContainerCache, FakeClient, list[float]], dockerd: Dockerd
) -> None:
    cache, client, _ = following
    assert read(cache, dockerd) == {"a": "running", "b": "paused"}  # the first read: in full
    assert read(cache, dockerd) == {"a": "running", "b": "paused"}
    assert (dockerd.full, dockerd.by_id) == (1, [])  # nothing happened: dockerd not asked

    cache.mark("b")  # the engine thawed b
    dockerd.put("b", "running")
    assert read(cache, dockerd) == {"a": "running", "b": "running"}
    assert dockerd.by_id == [["b"]]

    dockerd.put("c", "running")  # created by hand: dockerd says so on the stream
    client.api.q.put({"Type": "container", "Action": "create", "id": "c"})
    del dockerd.containers["a"]
    client.api.q.put({"Type": "container", "Action": "destroy", "Actor": {"ID": "a"}})
    wait_until(lambda: read(cache, dockerd) == {"b": "running", "c": "running"})
    assert dockerd.full == 1


def test_a_failed_re_read_is_asked_again_and_the_safety_listing_comes_on_time(
    following: tuple[ContainerCache, FakeClient, list[float]], dockerd: Dockerd
) -> None:
    cache, _, now = following
    read(cache, dockerd)
    cache.mark("a")
    dockerd.put("a", "exited")
    dockerd.fail = True
    with pytest.raises(ConnectionError):
        read(cache, dockerd)
    dockerd.fail = False
    assert read(cache, dockerd) == {"a": "exited", "b": "paused"}  # a was not forgotten
    assert dockerd.full == 1

    dockerd.containers["z"] = {"Id": "z", "State": "running"}  # missed somehow: no event, no mark
    now[0] += 29
    assert "z" not in read(cache, dockerd)
    now[0] += 1
    assert read(cache, dockerd)["z"] == "running"  # the listing every 30 s
    assert dockerd.full == 2


def test_a_lost_stream_means_full_listings_until_it_is_followed_again(
    following: tuple[ContainerCache, FakeClient, list[float]], dockerd: Dockerd
) -> None:
    cache, client, _ = following
    read(cache, dockerd)
    client.api.q.put(_END)  # dockerd restarted: the stream ends
    # Until it reconnects (0.5 s later) every read lists in full; events from before the new
    # subscription are unknown, so its first read after is a full one too.
    wait_until(lambda: client.api.subscriptions == 2 and cache.following)
    before = dockerd.full
    dockerd.put("a", "exited")
    assert read(cache, dockerd)["a"] == "exited"
    assert dockerd.full == before + 1
    read(cache, dockerd)
    assert dockerd.full == before + 1  # followed again: back to the cache
