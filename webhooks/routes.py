"""POST /hooks/github and /hooks/gitlab: authenticate, classify, record, answer, build later.

The order matters: size is capped before the body is read whole, the signature is checked over
the raw bytes before any parsing, and the delivery id is recorded before anything runs, so a
replayed request builds nothing. Builds run in the `Runner`; the answer (202 with the actions,
or 200 with why nothing happens) comes well within GitHub's 10 s.

These routes are not behind the API's bearer token: the signature is the authentication.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from structlog.typing import FilteringBoundLogger

from pipeline.core.errors import InvalidInput
from pipeline.core.logs import get as get_log
from pipeline.core.records import Service
from pipeline.store.deliveries import DELIVERY_ID_MAX, Deliveries
from pipeline.store.state import Store
from webhooks import keys, signatures
from webhooks.actions import Action, Deploy, Ignore, RemoveTag, describe, summary
from webhooks.github import github_actions
from webhooks.gitlab import gitlab_actions
from webhooks.hosts import PUBLIC_HOSTS, GitHosts
from webhooks.runner import Runner
from webhooks.signatures import SignatureError
from webhooks.tracking import tracking_of

# GitHub caps webhook payloads at 25 MB; anything bigger is not from GitHub.
MAX_PAYLOAD_BYTES = 25 * 1024 * 1024

Secret = Callable[[], bytes | None]


class Classify(Protocol):
    def __call__(
        self, event: str, payload: dict[str, Any], services: list[Service], *, hosts: GitHosts
    ) -> list[Action]: ...


@dataclass(frozen=True, kw_only=True)
class _Provider:
    name: str
    event_header: str
    delivery_header: str
    classify: Classify
    verify: Callable[[bytes, bytes, Request], None]
    unconfigured: str


GITHUB = _Provider(
    name="github",
    event_header="X-GitHub-Event",
    delivery_header="X-GitHub-Delivery",
    classify=github_actions,
    verify=lambda secret, body, request: signatures.verify_github(
        secret, body, request.headers.get(signatures.GITHUB_HEADER)
    ),
    unconfigured=(
        "GitHub webhooks are off: no secret is configured. Set "
        "SLIPWAY_GITHUB_WEBHOOK_SECRET or write it to <data dir>/github-webhook-secret (or "
        "give a service its own with the annotation slipway.dev/webhook-secret), and give "
        "GitHub the same secret"
    ),
)
GITLAB = _Provider(
    name="gitlab",
    event_header="X-Gitlab-Event",
    delivery_header="X-Gitlab-Event-UUID",
    classify=gitlab_actions,
    verify=lambda secret, _body, request: signatures.verify_gitlab(
        secret, request.headers.get(signatures.GITLAB_HEADER)
    ),
    unconfigured=(
        "GitLab webhooks are off: no secret token is configured. Set "
        "SLIPWAY_GITLAB_WEBHOOK_SECRET or write it to <data dir>/gitlab-webhook-secret (or "
        "give a service its own with the annotation slipway.dev/webhook-secret), and give "
        "GitLab the same secret token"
    ),
)


@dataclass(frozen=True, kw_only=True)
class _Sinks:
    """Where an accepted delivery goes: recorded in `deliveries`, run by `runner`."""

    store: Store
    deliveries: Deliveries
    runner: Runner
    hosts: GitHosts  # where tracked repositories are cloned from
    secret_of: keys.SecretLookup  # a service's own webhook secret (slipway.dev/webhook-secret)


class _Refused(Exception):
    """The request is answered with this status and message; nothing is recorded or run."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def create_router(
    *,
    github_secret: Secret,
    gitlab_secret: Secret,
    store: Store,
    deliveries: Deliveries,
    runner: Runner,
    hosts: GitHosts = PUBLIC_HOSTS,
    secret_of: keys.SecretLookup = lambda _secret, _key: None,
) -> APIRouter:
    router = APIRouter()
    sinks = _Sinks(
        store=store, deliveries=deliveries, runner=runner, hosts=hosts, secret_of=secret_of
    )

    @router.post("/hooks/github")
    async def github_hook(request: Request) -> JSONResponse:
        return await _handle(GITHUB, github_secret(), request, sinks=sinks)

    @router.post("/hooks/gitlab")
    async def gitlab_hook(request: Request) -> JSONResponse:
        return await _handle(GITLAB, gitlab_secret(), request, sinks=sinks)

    return router


async def _handle(
    provider: _Provider, secret: bytes | None, request: Request, *, sinks: _Sinks
) -> JSONResponse:
    log = get_log(component="webhooks", provider=provider.name)
    try:
        services = await run_in_threadpool(sinks.store.list_services)
        trackers = [tracking_of(s) for s in services]
        candidates = await run_in_threadpool(keys.signers, secret, trackers, sinks.secret_of)
        body, matched = await _authentic_body(provider, candidates, request, log=log)
        event, delivery, payload = _delivery(provider, request, body)
        log = log.bind(delivery=delivery, event=event)
        try:
            actions = provider.classify(event, payload, services, hosts=sinks.hosts)
        except InvalidInput as e:
            log.warning("webhook_payload_invalid", reason=e.message)
            raise _Refused(400, e.message) from e
        actions = keys.screened(actions, trackers=trackers, matched=matched)
    except _Refused as refused:
        return _error(refused.status, refused.message)
    return await _record_and_run(
        provider, event=event, delivery=delivery, actions=actions, sinks=sinks, log=log
    )


async def _authentic_body(
    provider: _Provider,
    candidates: list[keys.Signer],
    request: Request,
    *,
    log: FilteringBoundLogger,
) -> tuple[bytes, list[keys.Signer]]:
    """The raw body, size-capped before it is read whole, and the secrets whose signature over
    it checks out (at least one), found before any parsing."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_PAYLOAD_BYTES):
        raise _too_large() if declared.isdigit() else _Refused(400, "bad Content-Length header")
    body = await _read_capped(request)
    if body is None:
        raise _too_large()
    if not candidates:
        raise _Refused(503, provider.unconfigured)
    matched, refusals = [], []
    for signer in candidates:
        try:
            provider.verify(signer.secret, body, request)
        except SignatureError as e:
            refusals.append(e.message)
        else:
            matched.append(signer)
    if not matched:
        log.warning("webhook_refused", reason=refusals[0])
        raise _Refused(401, refusals[0])
    return body, matched


def _delivery(
    provider: _Provider, request: Request, body: bytes
) -> tuple[str, str, dict[str, Any]]:
    """The event name, the delivery id and the JSON payload of an authentic request."""
    event = request.headers.get(provider.event_header, "")
    delivery = request.headers.get(provider.delivery_header, "")
    if not event:
        raise _Refused(400, f"missing {provider.event_header} header")
    if not delivery or len(delivery) > DELIVERY_ID_MAX:
        raise _Refused(400, f"missing or overlong {provider.delivery_header} header")
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise _Refused(
            400, "the body is not JSON: set the webhook's content type to application/json"
        ) from None
    if not isinstance(payload, dict):
        raise _Refused(400, "the body is JSON but not an object")
    return event, delivery, payload


async def _record_and_run(
    provider: _Provider,
    *,
    event: str,
    delivery: str,
    actions: list[Action],
    sinks: _Sinks,
    log: FilteringBoundLogger,
) -> JSONResponse:
    """Record the delivery (a replay builds nothing), answer, and start the work."""
    work = [a for a in actions if isinstance(a, Deploy | RemoveTag)]
    reasons = [a.reason for a in actions if isinstance(a, Ignore)]
    fresh = await run_in_threadpool(
        lambda: sinks.deliveries.record_new(
            id=delivery,
            provider=provider.name,
            event=event,
            service=", ".join(sorted({a.service for a in work})) or None,
            action="; ".join(summary(a) for a in actions),
            outcome="accepted" if work else "ignored: " + "; ".join(reasons),
        )
    )
    if not fresh:
        log.info("webhook_duplicate")
        content = {"delivery": delivery, "duplicate": True,
                   "message": "duplicate delivery, not built again"}  # fmt: skip
        return JSONResponse(status_code=200, content=content)
    described = [describe(a) for a in actions]
    if not work:
        log.info("webhook_ignored", reasons=reasons)
        return JSONResponse(
            status_code=200,
            content={"delivery": delivery, "ignored": "; ".join(reasons), "actions": described},
        )
    log.info("webhook_accepted", actions=[summary(a) for a in work])
    sinks.runner.submit(delivery, actions)
    return JSONResponse(status_code=202, content={"delivery": delivery, "actions": described})


async def _read_capped(request: Request) -> bytes | None:
    """The raw body, or None once it passes the cap (a lying or absent Content-Length)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_PAYLOAD_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large() -> _Refused:
    limit = MAX_PAYLOAD_BYTES // (1024 * 1024)
    return _Refused(413, f"payload over {limit} MB: GitHub and GitLab never send more")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": message})
