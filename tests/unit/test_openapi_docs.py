"""/docs and /redoc work without internet, and the OpenAPI document behind them is complete.

The whole app (`create_app`) on a stand-in platform: the pages, the assets they load and the
document are what a browser gets, and none of them needs the platform.
"""

from __future__ import annotations

import asyncio
import re
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from pipeline.api.app import create_app

# Routes that take no admin token: discovery for token verifiers, webhooks signed by the host.
PUBLIC = {
    ("get", "/.well-known/openid-configuration"),
    ("get", "/.well-known/jwks.json"),
    ("post", "/hooks/github"),
    ("post", "/hooks/gitlab"),
}
ASSET_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


@pytest.fixture(scope="module")
def app() -> FastAPI:
    settings = SimpleNamespace(
        github_url="https://github.com", gitlab_url="https://gitlab.com", webhook_secret=str
    )
    platform = SimpleNamespace(
        settings=settings, store=None, deliveries=None, runner=None, secrets=None, token="t"
    )
    return create_app(platform)  # type: ignore[arg-type]


def get(app: FastAPI, path: str) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://slipway") as client:
            return await client.get(path)

    return asyncio.run(go())


def referenced(html: str) -> list[str]:
    """Every URL the page loads: script and link sources, and the spec URL of either page."""
    found = re.findall(r'(?:src|href|spec-url)="([^"]+)"', html)
    found += re.findall(r"url: '([^']+)'", html)
    return found


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_pages_load_only_what_this_server_serves(app: FastAPI, page: str) -> None:
    reply = get(app, page)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/html")
    urls = referenced(reply.text)
    assert len(urls) >= 3, urls  # a script, the favicon, the document (and Swagger UI's CSS)
    assert not re.search(r"https?://", reply.text), "the page names a remote URL"
    for url in urls:
        assert url.startswith("/"), url
        asset = get(app, url)
        assert asset.status_code == 200, url
        if url == "/openapi.json":
            assert asset.json()["openapi"].startswith("3.")
            continue
        suffix = url[url.rindex(".") :]
        assert ASSET_TYPES[suffix] in asset.headers["content-type"], url
        assert len(asset.content) > 1000, url


def test_the_swagger_bundle_is_the_real_one(app: FastAPI) -> None:
    bundle = get(app, "/docs/assets/swagger-ui-bundle.js").text
    assert "SwaggerUIBundle" in bundle
    assert "Redoc" in get(app, "/docs/assets/redoc.standalone.js").text


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
    ]  # fmt: skip


def test_every_authenticated_operation_declares_the_bearer_scheme(app: FastAPI) -> None:
    doc = app.openapi()
    scheme = doc["components"]["securitySchemes"]["AdminToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    ops = operations(doc)
    assert len(ops) > 30
    unsecured = [f"{m} {p}" for m, p, op in ops if (m, p) not in PUBLIC and not op.get("security")]
    assert unsecured == []
    for m, p, op in ops:
        if (m, p) in PUBLIC:
            assert not op.get("security"), f"{m} {p} is public but claims a token"
        else:
            assert op["security"] == [{"AdminToken": []}], f"{m} {p}"


def test_every_parameter_and_body_is_described(app: FastAPI) -> None:
    undescribed = []
    for method, path, op in operations(app.openapi()):
        for param in op.get("parameters", []):
            if not param.get("description"):
                undescribed.append(f"{method} {path}: parameter {param['name']}")
        body = op.get("requestBody")
        if body is not None and not body.get("description"):
            undescribed.append(f"{method} {path}: request body")
    assert undescribed == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("put", "/v1/services/{name}"),
        ("post", "/v1/services/{name}/deployments"),
        ("put", "/v1/domainmappings/{host}"),
        ("post", "/v1/services/{name}/traffic"),
        ("put", "/v1/secrets/{name}"),
    ],
)
def test_routes_that_take_a_body_declare_it(app: FastAPI, method: str, path: str) -> None:
    body = app.openapi()["paths"][path][method]["requestBody"]
    assert body["description"] and body["content"]
