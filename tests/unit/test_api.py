"""The /v1 routes alone: each router mounted on its own app with a stand-in platform, so the
HTTP contract (auth, bad input → status and text, what reaches the deployer, the OpenAPI
document) is checked without Docker, a registry or a store."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from pipeline.api import deployments, errors
from pipeline.api.app import V1_ROUTERS
from pipeline.core.errors import NotFound
from pipeline.deploy.manifests import Flags, Placement
from pipeline.deploy.params import DeployParams
from pipeline.deploy.rollout import Outcome
from tests.unit.factories import revision

TOKEN = "slw_test"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class RecordingDeployer:
    """Stand-in for the Deployer: records what each deploy was asked, deploys nothing."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def _record(self, kind: str, **kwargs: Any) -> Outcome:
        emit = kwargs.pop("emit")
        self.calls.append((kind, kwargs))
        emit({"event": "stage", "text": f"{kind} recorded", "seconds": 0})
        return Outcome(service="hello", revision=revision("hello", 1), created=True, urls=[])

    def deploy_source(self, name: str, **kwargs: Any) -> Outcome:
        return self._record("source", name=name, **kwargs)

    def deploy_image(self, name: str, **kwargs: Any) -> Outcome:
        return self._record("image", name=name, **kwargs)

    def deploy_git(self, name: str, **kwargs: Any) -> Outcome:
        return self._record("git", name=name, **kwargs)


def missing(name: str) -> Any:
    raise NotFound(f"service {name!r} not found")


def app_with(deployer: RecordingDeployer) -> FastAPI:
    app = FastAPI()
    app.state.platform = SimpleNamespace(
        token=TOKEN, deployer=deployer, store=SimpleNamespace(get_service=missing)
    )
    errors.install(app)
    for router in V1_ROUTERS:
        app.include_router(router)
    return app


def call(app: FastAPI, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://slipway") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(send())


def events(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


DEPLOY = "/v1/services/hello/deployments"


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        pytest.param({}, "missing bearer token", id="no-token"),
        pytest.param({"Authorization": "Bearer nope"}, "invalid token", id="wrong-token"),
        pytest.param({"Authorization": f"Basic {TOKEN}"}, "missing bearer token", id="basic"),
    ],
)  # fmt: skip
def test_v1_needs_the_admin_token(headers: dict[str, str], detail: str) -> None:
    reply = call(app_with(RecordingDeployer()), "POST", DEPLOY, params={"image": "r/x:1"},
                 headers=headers)  # fmt: skip
    assert reply.status_code == 401
    assert reply.json()["detail"].startswith(detail)
    assert reply.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("params", "kwargs", "detail"),
    [
        pytest.param({"env": "A"}, {}, "env 'A' (no '=') must look like NAME=value",
                     id="env-no-equals"),
        pytest.param({"env": "1A=x"}, {}, "env '1A'=… must look like NAME=value",
                     id="env-not-a-posix-name"),
        pytest.param({"secret": "DB=db"}, {}, "secret 'DB=db' must look like ENV=SECRET:KEY",
                     id="secret-without-key"),
        pytest.param({"concurrency": "x"}, {}, "concurrency must be a whole number, got 'x'",
                     id="concurrency-not-a-number"),
        pytest.param({"timeout": "-1"}, {}, "timeout: Input should be greater than or equal to 1",
                     id="timeout-below-one"),
        pytest.param({"allow_unauthenticated": "maybe"}, {},
                     "allow_unauthenticated must be 0 or 1, got 'maybe'", id="not-a-boolean"),
        pytest.param({"colour": "blue"}, {}, "unknown query parameter 'colour'",
                     id="unknown-parameter"),
        pytest.param({"build_arg": "=x", "image": "r/x:1"}, {}, "build arg ''=… must look like",
                     id="bad-build-arg"),
        pytest.param({}, {}, "send a source archive (gzip tar) as the body", id="no-body"),
        pytest.param({}, {"content": b"{", "headers": {"content-type": "application/json"}},
                     "the JSON body does not parse", id="json-does-not-parse"),
        pytest.param({}, {"json": {"builder": "pack"}}, 'a JSON body needs {"git"',
                     id="json-without-git-or-image"),
        pytest.param({}, {"json": {"image": "r/x:1", "build_args": ["A=1"]}},
                     '"build_args" must be an object of NAME: value', id="build-args-not-object"),
        pytest.param({}, {"json": {"git": "https://example.com/x.git"}},
                     "the JSON body's git: ", id="git-not-an-object"),
    ],
)  # fmt: skip
def test_bad_deploy_requests_are_400_and_say_why(
    params: dict[str, str], kwargs: dict[str, Any], detail: str
) -> None:
    deployer = RecordingDeployer()
    headers = {**AUTH, **kwargs.pop("headers", {})}
    reply = call(app_with(deployer), "POST", DEPLOY, params=params, headers=headers, **kwargs)
    assert reply.status_code == 400, reply.text
    assert detail in reply.json()["detail"]
    assert deployer.calls == []


def test_query_parameters_reach_the_deployer_as_flags_and_placement() -> None:
    deployer = RecordingDeployer()
    query = DeployParams(
        image="r/x:1", env=["A=1", "B=x=y"], remove_env=["OLD"], secret=["DB=db:password"],
        tag="canary", no_traffic=True, concurrency=4, timeout=30, min_instances=1,
        max_instances=3, allow_unauthenticated=False,
    ).to_query()  # fmt: skip
    reply = call(app_with(deployer), "POST", DEPLOY, params=query, headers=AUTH)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/x-ndjson"
    assert [e["event"] for e in events(reply)] == ["stage", "done"]
    [(kind, got)] = deployer.calls
    assert kind == "image"
    assert got == {
        "name": "hello", "image": "r/x:1", "env": {"A": "1", "B": "x=y"},
        "placement": Placement(tags=("canary",), traffic="none"),
        "flags": Flags(remove_env=("OLD",), secret_env=(("DB", "db", "password"),),
                       concurrency=4, timeout_s=30, min_scale=1, max_scale=3, private=True),
    }  # fmt: skip


def test_blank_query_values_count_as_unset() -> None:
    deployer = RecordingDeployer()
    params = {"image": "r/x:1", "timeout": "", "allow_unauthenticated": "", "no_traffic": ""}
    reply = call(app_with(deployer), "POST", DEPLOY, params=params, headers=AUTH)
    assert reply.status_code == 200, reply.text
    assert deployer.calls[0][1]["flags"] == Flags()
    assert deployer.calls[0][1]["placement"] == Placement()


def test_a_source_archive_is_built_with_query_and_header_settings() -> None:
    deployer = RecordingDeployer()
    reply = call(
        app_with(deployer), "POST", DEPLOY, content=b"\x1f\x8bsource",
        params=[("builder", "pack"), ("build_arg", "A=1")],
        headers=[*AUTH.items(), ("Content-Type", "application/gzip"),
                 ("X-Slipway-Build-Secret", "TOKEN=s3cret"), ("X-Slipway-Build-Secret", "B=2")],
    )  # fmt: skip
    assert reply.status_code == 200
    [(kind, got)] = deployer.calls
    assert kind == "source" and got["source"] == b"\x1f\x8bsource"
    assert got["build"].builder == "pack"
    assert got["build"].build_args == (("A", "1"),)
    assert got["build"].secrets == (("TOKEN", "s3cret"), ("B", "2"))


def test_a_json_git_body_clones_with_the_body_settings() -> None:
    deployer = RecordingDeployer()
    body = {"git": {"url": "https://git.example/app.git"}, "dockerfile": "ops/Dockerfile",
            "build_args": {"N": 1}, "build_secrets": {"TOKEN": "s3cret"}, "unknown": True}
    reply = call(app_with(deployer), "POST", DEPLOY, json=body, params={"build_arg": "A=1"},
                 headers=AUTH)  # fmt: skip
    assert reply.status_code == 200, reply.text
    [(kind, got)] = deployer.calls
    assert (kind, got["url"], got["ref"]) == ("git", "https://git.example/app.git", "HEAD")
    assert got["build"].dockerfile == "ops/Dockerfile"
    assert got["build"].build_args == (("A", "1"), ("N", "1"))
    assert got["build"].secrets == (("TOKEN", "s3cret"),)


def test_a_deploy_error_is_the_last_event_with_its_status() -> None:
    class Failing(RecordingDeployer):
        def deploy_image(self, name: str, **kwargs: Any) -> Outcome:
            raise NotFound("no such image")

    reply = call(app_with(Failing()), "POST", DEPLOY, params={"image": "r/x:1"}, headers=AUTH)
    assert events(reply)[-1] == {
        "event": "error", "error": "NotFound", "status": 404, "message": "no such image",
    }  # fmt: skip


def test_slipway_errors_map_to_their_status() -> None:
    reply = call(app_with(RecordingDeployer()), "GET", "/v1/services/ghost", headers=AUTH)
    assert reply.status_code == 404
    assert reply.json() == {"detail": "service 'ghost' not found"}


def test_openapi_documents_the_deploy_parameters_bodies_and_token() -> None:
    app = FastAPI()
    for router in V1_ROUTERS:
        app.include_router(router)
    doc = app.openapi()
    operation = doc["paths"][DEPLOY.replace("hello", "{name}")]["post"]
    query = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
    assert query == set(DeployParams.model_fields)
    headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
    assert headers == {deployments.SECRET_HEADER}
    content = operation["requestBody"]["content"]
    assert set(content) == {"application/gzip", "application/json"}
    schema = content["application/json"]["schema"]
    assert set(schema["properties"]) >= {"git", "image", "builder", "build_args", "build_secrets"}
    assert "$ref" not in json.dumps(schema)
    scheme = doc["components"]["securitySchemes"]["AdminToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert "admin-token" in scheme["description"]
    assert operation["security"] == [{"AdminToken": []}]
    put = doc["paths"]["/v1/services/{name}"]["put"]
    assert set(put["requestBody"]["content"]) == {"application/yaml", "application/json"}
