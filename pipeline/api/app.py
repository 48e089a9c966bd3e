"""Routes under /v1: services, revisions, deployments, builds. Errors map to HTTP here.

Deployments stream their progress as NDJSON (one JSON event per line) while the deployment runs
in a worker thread: the client sees build output as it happens, and a client that goes away does
not stop the deployment.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from pipeline.api import auth, git, identity, metrics_route, sources_route, views
from pipeline.app.platform import Platform
from pipeline.build import logfiles as buildlogs
from pipeline.build.builders import BuildSettings
from pipeline.core import names, traffic
from pipeline.core.errors import (
    BuildFailed,
    Conflict,
    InvalidInput,
    NotFound,
    RevisionFailed,
    SlipwayError,
    Unavailable,
)
from pipeline.core.logs import get as get_log
from pipeline.core.pairs import parse_pairs
from pipeline.deploy.manifests import Flags, Placement
from pipeline.deploy.rollout import Outcome
from pipeline.reconcile.routing import resolve_traffic
from webhooks import routes as webhook_routes

STATUS = [
    (InvalidInput, 400),
    (NotFound, 404),
    (Conflict, 409),
    (BuildFailed, 422),
    (RevisionFailed, 422),
    (Unavailable, 503),
]


def status_of(error: SlipwayError) -> int:
    return next((code for cls, code in STATUS if isinstance(error, cls)), 500)


def error_event(error: Exception) -> dict[str, Any]:
    if isinstance(error, SlipwayError):
        event: dict[str, Any] = {
            "event": "error",
            "error": type(error).__name__,
            "status": status_of(error),
            "message": error.message,
        }
        if isinstance(error, BuildFailed) and error.log_tail:
            event["log_tail"] = error.log_tail
        return event
    return {"event": "error", "error": "InternalError", "status": 500, "message": str(error)}


class SecretBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: dict[str, str]


class TrafficEdit(BaseModel):
    """Body of POST /v1/services/{name}/traffic; every field optional."""

    model_config = ConfigDict(extra="forbid")

    to_revisions: dict[str, int] = Field(default_factory=dict)
    to_tags: dict[str, int] = Field(default_factory=dict)
    to_latest: bool = False
    set_tags: dict[str, str] = Field(default_factory=dict)
    remove_tags: list[str] = Field(default_factory=list)


def create_app(platform: Platform) -> FastAPI:
    app = FastAPI(title="Slipway", version="0.1.0", description="Source to URL on your machine")
    log = get_log(component="api")

    def authed(request: Request) -> None:
        auth.check(request, platform.token)

    app.include_router(git.create_router(platform))
    app.include_router(metrics_route.create_router(platform))  # no token: Prometheus scrapes
    # Build Jobs fetch their source with a per-build token, not the API token.
    app.include_router(
        sources_route.create_router(
            sources_dir=platform.settings.sources_dir,
            key=lambda: platform.source_token_key,
            admin_token=platform.token,
        )
    )
    # Discovery (no auth, as OIDC requires) and the identity routes under /v1 (admin token).
    app.include_router(identity.create_router(platform, authed=authed))
    # Webhooks authenticate by signature (GitHub) or token (GitLab), not by the API token.
    app.include_router(
        webhook_routes.create_router(
            github_secret=lambda: platform.settings.webhook_secret("github"),
            gitlab_secret=lambda: platform.settings.webhook_secret("gitlab"),
            store=platform.store,
            deliveries=platform.deliveries,
            runner=platform.runner,
        )
    )

    @app.exception_handler(SlipwayError)
    async def _slipway_error(_request: Request, exc: SlipwayError) -> JSONResponse:
        return JSONResponse(status_code=status_of(exc), content={"detail": exc.message})

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    v1 = [Depends(authed)]

    @app.get("/v1/services", dependencies=v1)
    def list_services() -> list[dict[str, Any]]:
        instances = platform.engine.list_instances()
        return [
            _summary(views.service_view(
                s, platform.store.list_revisions(s.name), instances,
                domain=platform.settings.domain, port=platform.settings.ingress_port,
            ))
            for s in platform.store.list_services()
        ]  # fmt: skip

    @app.get("/v1/services/{name}", dependencies=v1)
    def describe_service(name: str) -> dict[str, Any]:
        svc = platform.store.get_service(name)
        view = views.service_view(
            svc,
            platform.store.list_revisions(name),
            platform.engine.list_instances(),
            domain=platform.settings.domain,
            port=platform.settings.ingress_port,
        )
        autoscaler = getattr(platform.reconciler, "autoscaler_view", None)
        for rev in view["revisions"]:
            rev["autoscaler"] = autoscaler(rev["name"]) if autoscaler else None
        return views.with_published_urls(view, platform.deployer.urls(name))

    @app.delete("/v1/services/{name}", dependencies=v1)
    def delete_service(name: str) -> dict[str, str]:
        platform.store.delete_service(name)
        platform.reconciler.wake()
        log.info("service_deleted", service=name)
        return {"deleted": name}

    @app.post("/v1/services/{name}/traffic", dependencies=v1)
    def set_traffic(name: str, body: TrafficEdit) -> dict[str, Any]:
        """Change the split and tags (gcloud/kn vocabulary). Never creates a revision."""
        platform.deployer.set_traffic(
            name,
            traffic.Change(
                to_revisions=body.to_revisions,
                to_tags=body.to_tags,
                to_latest=body.to_latest,
                set_tags=body.set_tags,
                remove_tags=tuple(body.remove_tags),
            ),
        )
        return describe_service(name)

    @app.post("/v1/services/{name}/rollback", dependencies=v1)
    def rollback(name: str) -> dict[str, Any]:
        """All traffic back to the revision that served before the current one."""
        target = platform.deployer.rollback(name)
        return {"rolled_back_to": target, **describe_service(name)}

    @app.get("/v1/services/{name}/revisions", dependencies=v1)
    def list_revisions(name: str) -> list[dict[str, Any]]:
        svc = platform.store.get_service(name)
        instances = platform.engine.list_instances()
        revisions = platform.store.list_revisions(name)
        targets = resolve_traffic(svc, revisions)
        return [views.revision_view(r, instances, targets) for r in reversed(revisions)]

    @app.put("/v1/services/{name}", dependencies=v1)
    async def replace_service(name: str, request: Request) -> StreamingResponse:
        body = await request.body()
        return _stream(lambda emit: platform.deployer.replace(body, name=name, emit=emit))

    @app.post("/v1/services/{name}/deployments", dependencies=v1)
    async def deploy(name: str, request: Request) -> StreamingResponse:
        names.validate_service_name(name)
        env = _env(request.query_params.getlist("env"))
        placement = Placement.of(
            None,
            tag=request.query_params.get("tag", ""),
            no_traffic=request.query_params.get("no_traffic", "") in ("1", "true"),
        )
        flags = Flags(
            remove_env=tuple(request.query_params.getlist("remove_env")),
            concurrency=_int_param(request, "concurrency"),
            secret_env=tuple(_secret_ref(v) for v in request.query_params.getlist("secret")),
            timeout_s=_int_param(request, "timeout"),
            min_scale=_int_param(request, "min_instances"),
            max_scale=_int_param(request, "max_instances"),
            private=_private_param(request),
        )
        image = request.query_params.get("image")
        build = _build_settings(request, body={})
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                body = json.loads(await request.body() or b"{}")
            except ValueError as e:
                raise InvalidInput(f"the JSON body does not parse: {e}") from e
            git_source = body.get("git") if isinstance(body, dict) else None
            image = (body.get("image") if isinstance(body, dict) else None) or image
            if isinstance(body, dict):
                build = _build_settings(request, body=body)
            if isinstance(git_source, dict) and git_source.get("url"):
                url, ref = str(git_source["url"]), str(git_source.get("ref") or "HEAD")
                return _stream(
                    lambda emit: platform.deployer.deploy_git(
                        name, url=url, ref=ref, env=env, emit=emit, build=build
                    )
                )
            if not image:
                raise InvalidInput(
                    'a JSON body needs {"git": {"url": ..., "ref": ...}} or {"image": ...}'
                )
        if image:
            return _stream(
                lambda emit: platform.deployer.deploy_image(
                    name, image=image, env=env, emit=emit, placement=placement, flags=flags
                )
            )
        source = await request.body()
        if not source:
            raise InvalidInput(
                "send a source archive (gzip tar) as the body, or ?image=REGISTRY/REPO:TAG"
            )
        return _stream(
            lambda emit: platform.deployer.deploy_source(
                name,
                source=source,
                env=env,
                emit=emit,
                placement=placement,
                flags=flags,
                build=build,
            )
        )

    @app.get("/v1/secrets", dependencies=v1)
    def list_secrets() -> list[dict[str, Any]]:
        """Names, versions and keys; never values."""
        return [
            {"name": i.name, "version": i.version, "keys": list(i.keys)}
            for i in platform.secrets.list()
        ]

    @app.put("/v1/secrets/{name}", dependencies=v1)
    def put_secret(name: str, body: SecretBody) -> dict[str, Any]:
        """A new version of the secret; revisions created from now on use it."""
        version = platform.secrets.put(name, body.data)
        log.info("secret_stored", secret=name, version=version, keys=sorted(body.data))
        return {"name": name, "version": version, "keys": sorted(body.data)}

    @app.delete("/v1/secrets/{name}", dependencies=v1)
    def delete_secret(name: str) -> dict[str, str]:
        platform.secrets.delete(name)
        return {"deleted": name}

    @app.get("/v1/deliveries", dependencies=v1)
    def list_deliveries() -> list[dict[str, Any]]:
        """Webhook deliveries and what came of them (built, ignored and why, failed)."""
        return [
            {
                "id": d.id,
                "provider": d.provider,
                "event": d.event,
                "received": d.received_at.isoformat(),
                "service": d.service,
                "action": d.action,
                "outcome": d.outcome,
                "build": d.build_id,
            }
            for d in platform.deliveries.recent()
        ]

    @app.get("/v1/builds", dependencies=v1)
    def list_builds(service: str | None = None) -> list[dict[str, Any]]:
        return [views.build_view(b) for b in platform.store.list_builds(service=service)]

    @app.get("/v1/builds/{build_id}", dependencies=v1)
    def get_build(build_id: str) -> dict[str, Any]:
        return views.build_view(platform.store.get_build(build_id))

    @app.post("/v1/builds/{build_id}/cancel", dependencies=v1)
    def cancel_build(build_id: str) -> dict[str, Any]:
        """Stop a queued or running build (the process is killed); no revision is made."""
        platform.deployer.cancel_build(build_id)
        log.info("build_cancel_requested", build=build_id)
        return views.build_view(platform.store.get_build(build_id))

    @app.get("/v1/builds/{build_id}/log", dependencies=v1)
    def build_log(build_id: str, follow: bool = False) -> StreamingResponse:
        """The stored build log; with `follow=1`, kept open and streamed until the build ends."""
        platform.store.get_build(build_id)
        path = platform.settings.builds_dir / f"{build_id}.log"
        return StreamingResponse(
            buildlogs.follow(path, running=lambda: platform.store.get_build(build_id).unfinished)
            if follow
            else buildlogs.read(path),
            media_type="text/plain; charset=utf-8",
        )

    return app


SECRET_HEADER = "x-slipway-build-secret"


def _build_settings(request: Request, *, body: dict[str, Any]) -> BuildSettings:
    """Builder, Dockerfile and build args from the query (or JSON body); secrets only from
    `X-Slipway-Build-Secret: NAME=value` headers or the JSON body, never the URL (URLs get
    logged)."""
    q = request.query_params
    args = list(parse_pairs(q.getlist("build_arg"), what="build arg"))
    secrets = list(parse_pairs(request.headers.getlist(SECRET_HEADER), what="build secret"))
    for key, into in (("build_args", args), ("build_secrets", secrets)):
        given = body.get(key) or {}
        if not isinstance(given, dict):
            raise InvalidInput(f'"{key}" must be an object of NAME: value')
        into.extend(parse_pairs([f"{k}={v}" for k, v in given.items()], what=key))
    return BuildSettings(
        builder=str(body.get("builder") or q.get("builder") or ""),
        dockerfile=str(body.get("dockerfile") or q.get("dockerfile") or ""),
        base_image=str(body.get("base_image") or q.get("base_image") or ""),
        build_args=tuple(args),
        secrets=tuple(secrets),
    )


def _summary(view: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "url", "ready", "latest_created_revision", "latest_ready_revision", "traffic")
    return {k: view[k] for k in keys}


def _secret_ref(value: str) -> tuple[str, str, str]:
    env, _, ref = value.partition("=")
    secret, _, key = ref.partition(":")
    if not (env and secret and key):
        raise InvalidInput(f"secret {value!r} must look like ENV=SECRET:KEY")
    return env, secret, key


def _private_param(request: Request) -> bool | None:
    """`allow_unauthenticated=0` makes the service private, `=1` public; absent: unchanged."""
    value = request.query_params.get("allow_unauthenticated")
    if value is None or value == "":
        return None
    if value not in ("0", "1", "true", "false"):
        raise InvalidInput(f"allow_unauthenticated must be 0 or 1, got {value!r}")
    return value in ("0", "false")


def _int_param(request: Request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    if not value.isdigit():
        raise InvalidInput(f"{name} must be a whole number, got {value!r}")
    return int(value)


def _env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"env {pair!r} must look like NAME=value")
        env[key] = value
    return env


def _stream(work: Callable[[Callable[[dict[str, Any]], None]], Outcome]) -> StreamingResponse:
    events: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def run() -> None:
        try:
            outcome = work(events.put)
            events.put(
                {
                    "event": "done",
                    "service": outcome.service,
                    "revision": outcome.revision.name,
                    "created": outcome.created,
                    "urls": outcome.urls,
                }
            )
        except Exception as e:
            if not isinstance(e, SlipwayError):
                get_log(component="api").exception("deployment_crashed")
            events.put(error_event(e))
        finally:
            events.put(None)

    threading.Thread(target=run, name="deployment", daemon=True).start()

    def lines() -> Iterator[bytes]:
        while (event := events.get()) is not None:
            yield (json.dumps(event) + "\n").encode()

    return StreamingResponse(lines(), media_type="application/x-ndjson")
