"""`slipway logs` on the Knative engine, the parts that need no API server: which pods are log
sources (the app container, never Knative's queue-proxy, once it has started), a pod gone since it
was listed, and a followed log closed while a read blocks on it.

Listing a service's pods by label and reading their logs from the kubelet (with timestamps,
`--since` exact, a followed log closed) run against the real cluster in
tests/knative/test_kubeapi.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3.exceptions
from kubernetes import client as k8s

from pipeline.core.errors import NotFound
from pipeline.knative.apply import KubeApi
from pipeline.knative.engine import KnativeEngine
from pipeline.knative.logs import KnativeLogs, PodLog, source_of

PODS = "/api/v1/namespaces/apps/pods"
NOW = 1_796_040_100.0  # 2026-11-30T12:01:40Z


def pod(name: str, *, revision: str, service: str = "hello", state: str = "running") -> Any:
    return {
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {
                "slipway.dev/platform": "prod",
                "slipway.dev/service": service,
                "serving.knative.dev/revision": revision,
            },
        },
        "spec": {"containers": [{"name": "user-container"}, {"name": "queue-proxy"}]},
        "status": {
            "containerStatuses": [
                {"name": "queue-proxy", "state": {"running": {}}},
                {"name": "user-container", "state": {state: {}}},
            ]
        },
    }


def offline_api() -> KubeApi:
    """A client for an API server that is never called: these tests stop before any request."""
    return KubeApi(k8s.ApiClient(), namespace="apps", platform="prod")


def test_the_engine_hands_out_its_log_reader() -> None:
    assert isinstance(KnativeEngine(offline_api()).logs_reader(), KnativeLogs)


@pytest.mark.parametrize(
    ("state", "listed"),
    [("running", True), ("terminated", True), ("waiting", False)],
)
def test_a_pod_is_a_log_source_once_its_app_container_started(state: str, listed: bool) -> None:
    source = source_of(pod("hello-00002-deployment-y2", revision="hello-00002", state=state))
    if not listed:
        assert source is None, "a waiting container has no log yet"
        return
    assert source is not None
    assert (source.id, source.revision, source.container) == (
        "hello-00002-deployment-y2", "hello-00002", "user-container"
    )  # fmt: skip


def test_a_pod_gone_since_it_was_listed_has_an_empty_log(monkeypatch: pytest.MonkeyPatch) -> None:
    reader = KnativeLogs(offline_api(), clock=lambda: NOW)

    def gone(*_args: Any, **_kwargs: Any) -> Any:
        raise NotFound("pods 'p1' not found in namespace apps")

    monkeypatch.setattr(KubeApi, "open_log", gone)
    (source,) = [s for s in [source_of(pod("p1", revision="hello-00001"))] if s]
    assert list(reader.open(source, stream="output", follow=True, since=None, tail=None)) == []


class Blocking:
    """A followed pods/log response: one line, then nothing until shut down."""

    def __init__(self) -> None:
        self.shut = threading.Event()
        self.released = False

    def stream(self, _amount: int) -> Iterator[bytes]:
        yield b"2026-11-30T12:00:00Z first\n"
        self.shut.wait(10)
        raise urllib3.exceptions.ProtocolError("connection shut down")

    def shutdown(self) -> None:
        self.shut.set()

    def release_conn(self) -> None:
        self.released = True


def test_closing_a_followed_log_ends_a_read_blocked_on_it() -> None:
    response = Blocking()
    log = PodLog(response)
    read: list[tuple[int, str]] = []
    reading = threading.Thread(target=lambda: read.extend(log))
    reading.start()
    log.close()
    reading.join(timeout=5)
    assert not reading.is_alive() and response.released
    assert [text for _, text in read] == ["first"]
    log.close()  # twice is fine
