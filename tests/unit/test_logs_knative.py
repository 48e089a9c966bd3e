"""`slipway logs` on the Knative engine, against the STAND-IN API server (tests/unit/kubestandin.py,
not Kubernetes: no real cluster runs here yet). What is asserted is the wire: which pods are
listed (Slipway's and the service's labels, the revision's), and the `pods/log` request made for
the app container (never Knative's queue-proxy) with timestamps, follow, sinceSeconds and
tailLines; and how its lines are read back."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3.exceptions

from pipeline.core.errors import NotFound
from pipeline.engines.logs import NS, LogLine
from pipeline.engines.logstreams import LogQuery, stream_logs
from pipeline.knative.apply import KubeApi
from pipeline.knative.engine import KnativeEngine
from pipeline.knative.logs import KnativeLogs, PodLog, source_of
from tests.unit import kubestandin
from tests.unit.kubestandin import StandIn

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


@pytest.fixture
def cluster() -> Iterator[tuple[StandIn, KnativeLogs]]:
    for state, api in kubestandin.serve():
        kube = KubeApi(api, namespace="apps", platform="prod")
        yield state, KnativeLogs(kube, clock=lambda: NOW)


def log_requests(state: StandIn) -> list[kubestandin.Request]:
    return [r for r in state.requests if r.path.endswith("/log")]


def test_the_engine_hands_out_its_log_reader() -> None:
    for _state, api in kubestandin.serve():
        engine = KnativeEngine(KubeApi(api, namespace="apps", platform="prod"))
        assert isinstance(engine.logs_reader(), KnativeLogs)


def test_pods_of_the_service_are_listed_by_label(cluster: tuple[StandIn, KnativeLogs]) -> None:
    state, reader = cluster
    state.put(PODS, pod("hello-00001-deployment-x1", revision="hello-00001"))
    state.put(PODS, pod("hello-00002-deployment-y2", revision="hello-00002"))
    state.put(PODS, pod("other-00001-deployment-z3", revision="other-00001", service="other"))
    state.put(PODS, pod("hello-00002-deployment-w4", revision="hello-00002", state="waiting"))
    sources = reader.sources(service="hello", revision="hello-00002")
    assert [(s.id, s.revision, s.container) for s in sources] == [
        ("hello-00002-deployment-y2", "hello-00002", "user-container")
    ], "the waiting pod has no log yet"
    (listing,) = [r for r in state.requests if r.path == PODS]
    assert listing.query["labelSelector"] == (
        "slipway.dev/platform=prod,slipway.dev/service=hello,"
        "serving.knative.dev/revision=hello-00002"
    )


@pytest.mark.parametrize(
    ("follow", "since", "tail", "query"),
    [
        pytest.param(
            False,
            None,
            None,
            {"container": "user-container", "follow": "false", "timestamps": "true"},
            id="history",
        ),
        pytest.param(
            True,
            NOW - 600,
            5,
            {
                "container": "user-container",
                "follow": "true",
                "timestamps": "true",
                "sinceSeconds": "600",
                "tailLines": "5",
            },
            id="follow-since-tail",
        ),
        pytest.param(
            False,
            NOW - 0.2,
            None,
            {
                "container": "user-container",
                "follow": "false",
                "timestamps": "true",
                "sinceSeconds": "1",
            },
            id="since-under-a-second-asks-for-one",
        ),
    ],
)
def test_the_pods_log_request(
    cluster: tuple[StandIn, KnativeLogs],
    follow: bool,
    since: float | None,
    tail: int | None,
    query: dict[str, str],
) -> None:
    state, reader = cluster
    (source,) = [s for s in [source_of(pod("p1", revision="hello-00001"))] if s]
    list(reader.open(source, stream="output", follow=follow, since=since, tail=tail))
    (request,) = log_requests(state)
    assert request.method == "GET"
    assert request.path == f"{PODS}/p1/log"
    assert request.query == query


def test_lines_are_read_with_their_times_and_since_is_exact(
    cluster: tuple[StandIn, KnativeLogs],
) -> None:
    state, reader = cluster
    state.put(PODS, pod("p1", revision="hello-00001"))
    state.logs[("p1", "user-container")] = [
        "2026-11-30T12:00:00.5Z too early for --since",
        "2026-11-30T12:01:00.000000001Z hello from the pod",
        "2026-11-30T12:01:01Z and stderr too, interleaved",
    ]
    lines: list[LogLine] = []
    stream_logs(
        reader,
        LogQuery(service="hello", since=1_796_040_060.0),
        emit=lambda x: lines.append(x) or True,
        stop=threading.Event(),
    )
    assert [(x.time_ns, x.revision, x.instance, x.stream, x.text) for x in lines] == [
        (1_796_040_060 * NS + 1, "hello-00001", "p1", "output", "hello from the pod"),
        (1_796_040_061 * NS, "hello-00001", "p1", "output", "and stderr too, interleaved"),
    ]


def test_a_pod_gone_since_it_was_listed_has_an_empty_log(
    cluster: tuple[StandIn, KnativeLogs], monkeypatch: pytest.MonkeyPatch
) -> None:
    _state, reader = cluster

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
