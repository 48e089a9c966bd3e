"""`POST /v1/services/{name}/deployments`: one deploy, streamed as NDJSON while it runs.

The query is `DeployParams` (the model the CLI sends, so the OpenAPI document lists every
parameter); the body is a source archive (gzip tar), or JSON (`DeployBody`) naming a git
repository or an image. Build secrets come from `X-Slipway-Build-Secret: NAME=value` headers or
the JSON body, never the URL.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from pipeline.api.dependencies import ADMIN, PlatformDep, ServiceName
from pipeline.api.streams import STREAMED, stream
from pipeline.core import names
from pipeline.core.errors import InvalidInput
from pipeline.deploy.params import DeployBody, DeployParams, parse_body

router = APIRouter(tags=["deployments"], dependencies=ADMIN)

SECRET_HEADER = "X-Slipway-Build-Secret"


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its `$defs` inlined: an operation's own requestBody
    cannot point into the document's components."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    inlined: dict[str, Any] = resolve(schema)
    return inlined


BODIES = {
    "requestBody": {
        "required": False,
        "description": "A source archive to build (gzip tar, `slipway deploy --source`), or "
        "JSON naming a git repository or an image. No body with ?image=.",
        "content": {
            "application/gzip": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": inline_schema(DeployBody)},
        },
    }
}


@router.post("/v1/services/{name}/deployments", openapi_extra=BODIES, responses=STREAMED)
async def deploy(
    name: ServiceName,
    request: Request,
    platform: PlatformDep,
    params: Annotated[DeployParams, Query()],
    build_secrets: Annotated[
        list[str] | None, Header(alias=SECRET_HEADER, description="NAME=value, repeatable.")
    ] = None,
) -> StreamingResponse:
    """Build (or take an image) and deploy it as a new revision; traffic moves when ready."""
    names.validate_service_name(name)
    env = params.env_vars()
    placement, flags = params.placement(), params.flags()
    raw = await request.body()
    is_json = request.headers.get("content-type", "").startswith("application/json")
    body = parse_body(raw) if is_json else DeployBody()
    build = params.build_settings(body, secrets=build_secrets or [])
    image = body.image or params.image
    deployer = platform.deployer
    if body.git is not None and body.git.url:
        # Like a push to the deploy branch (the commit's tag, all traffic when ready), unless
        # the query says --tag/--no-traffic; the other flags edit the revision as usual.
        url, ref = body.git.url, body.git.ref or "HEAD"
        tag, no_traffic = params.tag, params.no_traffic
        return stream(
            lambda emit: deployer.deploy_git(
                name, url=url, ref=ref, env=env, emit=emit, build=build, tag=tag,
                no_traffic=no_traffic, flags=flags,
            )
        )
    if is_json and not image:
        raise InvalidInput('a JSON body needs {"git": {"url": ..., "ref": ...}} or {"image": ...}')
    if image:
        pinned = image
        return stream(
            lambda emit: deployer.deploy_image(
                name, image=pinned, env=env, emit=emit, placement=placement, flags=flags
            )
        )
    if not raw:
        raise InvalidInput(
            "send a source archive (gzip tar) as the body, or ?image=REGISTRY/REPO:TAG"
        )
    return stream(
        lambda emit: deployer.deploy_source(
            name, source=raw, env=env, emit=emit, placement=placement, flags=flags, build=build
        )
    )
