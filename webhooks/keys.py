"""Which secrets may sign a delivery, and which services a signature speaks for. Pure.

The platform's secret (SLIPWAY_GITHUB_WEBHOOK_SECRET …) speaks for every service that has no
secret of its own. A service with `slipway.dev/webhook-secret` is moved only by a delivery signed
with *its* secret: one leaked platform secret, or another team's, cannot deploy it. The body is
checked against each candidate secret before it is parsed, so which services a delivery may
move is known before anything in it is believed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from webhooks.actions import Action, Deploy, Ignore, RemoveTag
from webhooks.tracking import Tracking

SecretLookup = Callable[[str, str], bytes | None]  # (secret, key) -> value, None if missing


@dataclass(frozen=True, kw_only=True)
class Signer:
    secret: bytes
    services: frozenset[str] | None  # None: the platform's secret, for services without one


def signers(
    platform_secret: bytes | None, trackers: Sequence[Tracking], lookup: SecretLookup
) -> list[Signer]:
    """Every secret that may have signed a delivery: the platform's, and each service's own."""
    own: dict[bytes, set[str]] = {}
    for t in trackers:
        if t.secret is not None:
            value = lookup(*t.secret)
            if value:
                own.setdefault(value, set()).add(t.service)
    found = [Signer(secret=v, services=frozenset(s)) for v, s in own.items()]
    if platform_secret:
        found.insert(0, Signer(secret=platform_secret, services=None))
    return found


def screened(
    actions: Sequence[Action], *, trackers: Sequence[Tracking], matched: Sequence[Signer]
) -> list[Action]:
    """The actions the matching signatures may take; the others become an Ignore saying why."""
    own = {t.service for t in trackers if t.secret is not None}
    platform = any(s.services is None for s in matched)
    allowed = {svc for s in matched for svc in (s.services or ())}
    out: list[Action] = []
    for action in actions:
        if isinstance(action, Deploy | RemoveTag):
            service = action.service
            if (service in own and service not in allowed) or (service not in own and not platform):
                out.append(Ignore(reason=f"{service}: not signed with its webhook secret"))
                continue
        out.append(action)
    return out
