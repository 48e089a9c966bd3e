"""Routes for service identity: OIDC discovery and JWKS, signing keys, invokers, user tokens.

Discovery and the JWKS answer without authentication (any OIDC library fetches them); everything
else needs the admin token. An identity token is never an API credential: `/v1` compares the
bearer token with the admin token only, so a JWT gets 401 there.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict

from pipeline.api.dependencies import ADMIN, PlatformDep, ServiceName, body_described
from pipeline.app.platform import Platform
from pipeline.core.annotations import parse_member
from pipeline.identity import access, keys, tokens


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    audience: str
    user: str = "admin"
    ttl_s: int = tokens.MAX_TTL_S


class MemberBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    member: str


class AccessBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    private: bool


router = APIRouter(tags=["identity"])


@router.get("/.well-known/openid-configuration")
def discovery(platform: PlatformDep) -> dict[str, Any]:
    issuer = platform.settings.ingress_url
    return {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "claims_supported": ["aud", "email", "email_verified", "exp", "iat", "iss", "sub"],
    }


@router.get("/.well-known/jwks.json")
def jwks(platform: PlatformDep) -> dict[str, Any]:
    return keys.jwks(platform.keys.live())


@router.get("/v1/keys", dependencies=ADMIN)
def list_keys(platform: PlatformDep) -> list[dict[str, Any]]:
    signing = platform.keys.signing().kid
    return [
        {"kid": k.kid, "created": k.created, "signing": k.kid == signing}
        for k in platform.keys.live()
    ]


@router.post("/v1/keys/rotate", dependencies=ADMIN)
def rotate(platform: PlatformDep) -> list[dict[str, Any]]:
    """A new signing key; older ones verify until their last token expired (≤ 1 h)."""
    platform.keys.rotate()
    platform.reconciler.wake()
    platform.reconciler.wait_for_pass(timeout_s=30)  # HAProxy knows the new kid on return
    return list_keys(platform)


@router.post(
    "/v1/auth/identity-token",
    dependencies=ADMIN,
    openapi_extra=body_described(
        "Who the token is for: the audience (a service URL), the user, the lifetime."
    ),
)
def identity_token(body: TokenRequest, platform: PlatformDep) -> dict[str, Any]:
    """An identity token for a human caller (`user:<name>`), like `gcloud auth
    print-identity-token`; the admin token holder may mint it for any user name."""
    settings = platform.settings
    identity = tokens.user_identity(body.user, domain=settings.domain)
    payload = tokens.claims(
        identity,
        issuer=settings.ingress_url,
        audience=body.audience,
        now=int(time.time()),
        ttl_s=body.ttl_s,
    )
    key = platform.keys.signing()
    token = tokens.mint(payload, kid=key.kid, private_pem=key.private_pem())
    return {"token": token, "member": identity.member, "expires": payload["exp"]}


@router.get("/v1/services/{name}/access", dependencies=ADMIN)
def get_access(name: ServiceName, platform: PlatformDep) -> dict[str, Any]:
    return _access(platform, name)


@router.put(
    "/v1/services/{name}/access",
    dependencies=ADMIN,
    openapi_extra=body_described(
        "Whether the service is private (callers need an identity token)."
    ),
)
def set_access(name: ServiceName, body: AccessBody, platform: PlatformDep) -> dict[str, Any]:
    platform.deployer.update_access(name, private=body.private)
    platform.reconciler.wait_for_pass(timeout_s=30)
    return _access(platform, name)


@router.post(
    "/v1/services/{name}/invokers",
    dependencies=ADMIN,
    openapi_extra=body_described("The member allowed to call the private service."),
)
def add_invoker(name: ServiceName, body: MemberBody, platform: PlatformDep) -> dict[str, Any]:
    platform.deployer.update_access(name, add=(parse_member(body.member),))
    platform.reconciler.wait_for_pass(timeout_s=30)  # in HAProxy's map on return
    return _access(platform, name)


@router.delete("/v1/services/{name}/invokers/{member}", dependencies=ADMIN)
def remove_invoker(
    name: ServiceName,
    member: Annotated[
        str, Path(description="The invoker to remove, e.g. user:alice or service:caller.")
    ],
    platform: PlatformDep,
) -> dict[str, Any]:
    platform.deployer.update_access(name, remove=(member,))
    platform.reconciler.wait_for_pass(timeout_s=30)
    return _access(platform, name)


def _access(platform: Platform, name: str) -> dict[str, Any]:
    svc = platform.store.get_service(name)
    return {
        "name": name,
        "private": access.is_private(svc.spec),
        "invokers": access.invokers(svc.spec),
    }
