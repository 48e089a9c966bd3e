"""Which requests may be sent to an instance a second time: one rule, followed by HAProxy
(`render`: `http-request disable-l7-retry unless HAPROXY_CONDITION`) and by the activator
(`activator._send`).

A connection that closes before any answer is either the race of a request sent on a keep-alive
connection the app is closing at that moment, or an app that crashed mid-request; the two look
the same. So only a request that may run twice is sent again: RFC 9110's idempotent methods, or
any request carrying an idempotency key, as Go's net/http decides (Knative's activator and
queue-proxy use it); nginx does not resend a POST, LOCK or PATCH either. A refused connection
sent nothing and is always tried again.
"""

from __future__ import annotations

from collections.abc import Mapping

IDEMPOTENT_METHODS = ("GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE")
KEY_HEADERS = ("idempotency-key", "x-idempotency-key")  # lower case: how both look them up

HAPROXY_CONDITION = " || ".join(
    [f"{{ method {' '.join(IDEMPOTENT_METHODS)} }}"]
    + [f"{{ req.hdr({name}) -m found }}" for name in KEY_HEADERS]
)


def may_run_twice(method: str, headers: Mapping[str, str]) -> bool:
    """`headers` must look names up case-insensitively (Starlette's and httpx's do). Methods
    are case-sensitive (RFC 9110), as HAProxy matches them."""
    return method in IDEMPOTENT_METHODS or any(name in headers for name in KEY_HEADERS)
