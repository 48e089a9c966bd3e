"""One bad name must not freeze routing for every service (issue 13, item 3).

Through the real API: a name or tag with a trailing newline, a service name holding the tag
separator '--', and a tag whose host is another service's are refused when written, naming the
fix. State a store can still hold from before those refusals (a service `t--web` beside tag `t` of
`web`, a tag "t\\n") is planted in the database: the data plane leaves out only the routes it
cannot take, says so on their service, and every other service keeps serving while new deploys
route.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import docker
import httpx
import pytest

from pipeline.reconcile.rejections import REASON
from pipeline.store import db
from pipeline.store.state import Store
from tests.integration.conftest import Slipway, httpd_app, push_image

pytestmark = pytest.mark.integration


def _api(slipway: Slipway, method: str, path: str, **kwargs: Any) -> tuple[int, str]:
    """Status and message of a call; a streamed deployment's status is its last event's."""
    answer = httpx.request(
        method, f"http://127.0.0.1:{slipway.api_port}{path}",
        headers={"Authorization": f"Bearer {slipway.token}", **kwargs.pop("headers", {})},
        timeout=120, **kwargs,
    )  # fmt: skip
    if answer.headers.get("content-type", "").startswith("application/x-ndjson"):
        last = json.loads(answer.text.strip().splitlines()[-1])
        return int(last.get("status", 200)), str(last.get("message", last))
    body = answer.json()
    return answer.status_code, str(body.get("detail", body) if isinstance(body, dict) else body)


def _eventually(check: Callable[[], bool], *, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "the platform did not get there in time"
        time.sleep(0.3)


@contextmanager
def _database(slipway: Slipway) -> Iterator[Store]:
    """The control plane's own store, as state written before the refusals existed."""
    engine = db.make_engine(f"sqlite:///{slipway.data_dir / 'slipway.db'}")
    try:
        yield Store(db.session_factory(engine))
    finally:
        engine.dispose()


def _document(name: str, image: str, traffic: list[dict[str, Any]] | None = None) -> str:
    spec: dict[str, Any] = {"template": {"spec": {"containers": [{"image": image}]}}}
    if traffic is not None:
        spec["traffic"] = traffic
    doc = {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
           "metadata": {"name": name}, "spec": spec}  # fmt: skip
    return json.dumps(doc)


@pytest.fixture(scope="module")
def image(slipway: Slipway, docker_client: docker.DockerClient,
          tmp_path_factory: pytest.TempPathFactory) -> str:  # fmt: skip
    ref = f"{slipway.env['SLIPWAY_REGISTRY']}/names/app:1"
    push_image(docker_client, httpd_app(tmp_path_factory.mktemp("names"), "hi\n"), ref)
    for service in ("web", "api"):
        slipway.cli("deploy", service, "--image", ref)
    assert slipway.get("web").text == slipway.get("api").text == "hi\n"
    return ref


def _serving(slipway: Slipway, *services: str) -> bool:
    return all(slipway.get(s).status_code == 200 for s in services)


@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [
        pytest.param("POST", "/v1/services/sec-nl%0A/deployments?image={image}", None,
                     "invalid service name 'sec-nl\\n'", id="service-name-newline"),
        pytest.param("POST", "/v1/services/t--web/deployments?image={image}", None,
                     "would take the URL of tag 't' of service 'web'", id="service-name-dashes"),
        pytest.param("POST", "/v1/services/web/deployments?image={image}&tag=t%0A", None,
                     "invalid traffic tag 't\\n'", id="deploy-tag-newline"),
        pytest.param("PUT", "/v1/services/t--web", ("t--web", None),
                     "would take the URL of tag 't' of service 'web'", id="replace-dashes"),
        pytest.param("PUT", "/v1/services/web", ("web", [{"latestRevision": True, "percent": 100},
                                                         {"latestRevision": True, "tag": "t\n"}]),
                     "invalid traffic tag 't\\n'", id="replace-tag-newline"),
        pytest.param("POST", "/v1/services/web/traffic", {"set_tags": {"t\n": "web-00001"}},
                     "invalid traffic tag 't\\n'", id="traffic-tag-newline"),
    ],
)  # fmt: skip
def test_bad_names_are_refused_when_written(
    slipway: Slipway, image: str, method: str, path: str, body: Any, message: str
) -> None:
    kwargs: dict[str, Any] = {}
    if isinstance(body, tuple):
        kwargs = {"content": _document(body[0], image, body[1]),
                  "headers": {"content-type": "application/json"}}  # fmt: skip
    elif body is not None:
        kwargs = {"json": body}

    status, text = _api(slipway, method, path.format(image=image), **kwargs)

    assert status == 400, text
    assert message in text
    assert _serving(slipway, "web", "api")
    assert slipway.api_get("/v1/services/t--web").status_code == 404


def test_a_tag_on_another_services_host_is_refused_naming_both(
    slipway: Slipway, image: str
) -> None:
    with _database(slipway) as store:  # `t--web`, stored before '--' was refused
        store.put_service("t--web", spec=json.loads(_document("t--web", image)))
    try:
        status, text = _api(slipway, "POST", "/v1/services/web/traffic",
                            json={"set_tags": {"t": "web-00001"}})  # fmt: skip
        assert status == 400, text
        assert "tag 't' of service 'web' would answer on 't--web.localhost'" in text
        assert "service 't--web'" in text and "pick another tag" in text

        status, text = _api(slipway, "POST", f"/v1/services/web/deployments?image={image}&tag=t")
        assert status == 400 and "service 't--web'" in text, text
        assert [t.get("tag") for t in slipway.api_get("/v1/services/web").json()["traffic"]] == [
            None
        ]
    finally:
        _api(slipway, "DELETE", "/v1/services/t--web")


def test_a_route_the_data_plane_cannot_take_never_freezes_the_others(
    slipway: Slipway, image: str
) -> None:
    """The state of the issue: a service `t--web`, tag `t` of `web`, and a tag "t\\n" on `api`,
    all written before the refusals. Only their routes go; `web` and `api` keep serving."""
    with _database(slipway) as store:
        store.put_service("t--web", spec=json.loads(_document("t--web", image)))
        legacy = store.create_revision(
            "t--web", image=store.get_revision("web-00001").image,
            template=store.get_revision("web-00001").template, template_hash="legacy",
        )  # fmt: skip
        tagged = [
            {"latestRevision": True, "percent": 100},
            {"revisionName": "web-00001", "tag": "t"},
        ]
        store.put_service("web", spec=json.loads(_document("web", image, tagged)))
        newline = [
            {"latestRevision": True, "percent": 100},
            {"revisionName": "api-00001", "tag": "t\n"},
        ]
        store.put_service("api", spec=json.loads(_document("api", image, newline)))

    def rejected(service: str) -> dict[str, Any]:
        answer = slipway.api_get(f"/v1/services/{service}")
        for _ in range(10):
            if answer.status_code != 503:
                break
            # Docker lists containers by inspecting each: one removed meanwhile (the deleted
            # service's) makes the listing fail, and describe answers 503. Ask again.
            time.sleep(0.3)
            answer = slipway.api_get(f"/v1/services/{service}")
        assert answer.status_code == 200, answer.text
        (rev,) = [r for r in answer.json()["revisions"] if r["reason"] == REASON] or [{}]
        return rev

    # The legacy revision turns Ready (its instance started), then all three conditions show.
    _eventually(lambda: all(rejected(s) for s in ("web", "api", "t--web")), timeout_s=40)
    shared = "'t--web.localhost' is not served: service 't--web' answers on it too"
    assert shared in rejected("web")["message"]
    assert "service 'web' answers on it too" in rejected("t--web")["message"]
    assert "'t\\n--api.localhost' is not a lowercase DNS name" in rejected("api")["message"]
    assert rejected("t--web")["name"] == legacy.name

    # Every other route still applies: the services serve, the shared host goes to neither.
    assert _serving(slipway, "web", "api")
    assert slipway.get("t--web.localhost").status_code == 404
    log = slipway.log_path.read_text()
    assert "route_rejected" in log and "reconcile_failed" not in log

    # A new deploy routes and says ready.
    out = slipway.cli("deploy", "fresh", "--image", image).stdout
    assert "fresh-00001 ready" in out
    assert slipway.get("fresh").text == "hi\n"

    # Deleting the legacy service frees the host: the tag answers, the condition clears.
    slipway.cli("services", "delete", "t--web")
    _eventually(lambda: slipway.get("t--web.localhost").status_code == 200)
    _eventually(lambda: not rejected("web"))
    assert rejected("api")  # its own bad tag is still left out
