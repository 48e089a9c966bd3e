"""Identity tokens: who a caller is, as claims, and the signed JWT — pure but for the signature.

A caller is a *member*, the string invoker lists hold: `service:<svc>` for code running in a
service's instance, `user:<name>` for a human with the CLI. The token's `sub` is the member
itself, so HAProxy's invoker check is a map lookup of `<service>/<sub>`; `email` names the same
identity the way Google's tokens do (`<svc>@<domain>` for services, `<name>@users.<domain>` for
people, so a service and a user with the same name stay apart).

Tokens are RS256 with the signing key's `kid` in the header and live at most an hour.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import jwt

from pipeline.core.errors import InvalidInput

MAX_TTL_S = 3600
_SERVICE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_USER = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$")


@dataclass(frozen=True, kw_only=True)
class Identity:
    member: str  # "service:caller" | "user:alice"; also the token's `sub`
    email: str


def service_identity(service: str, *, domain: str) -> Identity:
    return Identity(member=f"service:{service}", email=f"{service}@{domain}")


def user_identity(name: str, *, domain: str) -> Identity:
    if not _USER.match(name):
        raise InvalidInput(
            f"invalid user name {name!r}: lowercase letters, digits, '.', '_' and '-'"
        )
    return Identity(member=f"user:{name}", email=f"{name}@users.{domain}")


def validate_member(member: str) -> str:
    """`service:<svc>` or `user:<name>`; anything else is refused with the accepted forms."""
    kind, _, name = member.partition(":")
    if (kind == "service" and _SERVICE.match(name)) or (kind == "user" and _USER.match(name)):
        return member
    raise InvalidInput(
        f"invalid invoker {member!r}: use service:<service name> or user:<name>, "
        "e.g. service:caller or user:alice"
    )


def is_member(member: str) -> bool:
    try:
        validate_member(member)
    except InvalidInput:
        return False
    return True


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
