"""Identity tokens: who a caller is, as claims, and the signed JWT — pure but for the signature.

A caller is a *member*, the string invoker lists hold (`core.annotations` has the grammar):
`service:<svc>` for code running in a service's instance, `user:<name>` for a human with the CLI.
The token's `sub` is the member itself (`core.names` spells it), so HAProxy's invoker check is a
map lookup of `<service>/<sub>` and Istio's is `<iss>/<sub>`; `email` names the same identity the
way Google's tokens do (`<svc>@<domain>` for services, `<name>@users.<domain>` for people, so a
service and a user with the same name stay apart).

Tokens are RS256 with the signing key's `kid` in the header and live at most an hour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt

from pipeline.core import names
from pipeline.core.annotations import is_user_name
from pipeline.core.errors import InvalidInput

MAX_TTL_S = 3600


@dataclass(frozen=True, kw_only=True)
class Identity:
    member: str  # "service:caller" | "user:alice"; also the token's `sub`
    email: str


def service_identity(service: str, *, domain: str) -> Identity:
    return Identity(member=names.identity_subject(service), email=f"{service}@{domain}")


def user_identity(name: str, *, domain: str) -> Identity:
    if not is_user_name(name):
        raise InvalidInput(
            f"invalid user name {name!r}: lowercase letters, digits, '.', '_' and '-'"
        )
    return Identity(member=names.user_subject(name), email=f"{name}@users.{domain}")


def claims(
    identity: Identity,
    *,
    issuer: str,
    audience: str,
    now: int,
    ttl_s: int = MAX_TTL_S,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    if not audience:
        raise InvalidInput("an identity token needs an audience: the URL of the service to call")
    if not 0 < ttl_s <= MAX_TTL_S:
        raise InvalidInput(f"token lifetime must be 1..{MAX_TTL_S} seconds, got {ttl_s}")
    return {
        "iss": issuer,
        "aud": audience,
        "sub": identity.member,
        "email": identity.email,
        "email_verified": True,
        "azp": identity.member,
        "iat": now,
        "exp": now + ttl_s,
        **(extra or {}),
    }


def mint(payload: dict[str, Any], *, kid: str, private_pem: bytes) -> str:
    return jwt.encode(payload, private_pem, algorithm="RS256", headers={"kid": kid})
