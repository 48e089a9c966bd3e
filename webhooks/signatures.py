"""Webhook authentication: the signature (GitHub) or shared token (GitLab) is the only auth.

Checked over the raw request body before anything parses it, compared in constant time. A
failure raises `SignatureError`, which the routes answer with 401 and nothing else.
"""

from __future__ import annotations

import hashlib
import hmac

from pipeline.core.errors import SlipwayError

GITHUB_HEADER = "X-Hub-Signature-256"
GITLAB_HEADER = "X-Gitlab-Token"
_PREFIX = "sha256="


class SignatureError(SlipwayError):
    """The request does not prove it comes from the configured webhook (HTTP 401)."""


def github_signature(secret: bytes, body: bytes) -> str:
    """The `X-Hub-Signature-256` value GitHub sends for `body`."""
    return _PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_github(secret: bytes, body: bytes, header: str | None) -> None:
    if not header:
        raise SignatureError(
            f"missing {GITHUB_HEADER} header: set the webhook's secret on GitHub "
            "(the same value Slipway has)"
        )
    if not header.startswith(_PREFIX):
        raise SignatureError(f"{GITHUB_HEADER} must look like sha256=<hex>")
    expected = github_signature(secret, body)
    if not hmac.compare_digest(expected.encode("ascii"), header.strip().encode("utf-8")):
        raise SignatureError(
            f"{GITHUB_HEADER} does not match the body: the webhook secret on GitHub differs "
            "from Slipway's, or the body was changed on the way"
        )


def verify_gitlab(secret: bytes, header: str | None) -> None:
    if not header:
        raise SignatureError(
            f"missing {GITLAB_HEADER} header: set the webhook's secret token on GitLab"
        )
    if not hmac.compare_digest(secret, header.encode("utf-8")):
        raise SignatureError(f"{GITLAB_HEADER} does not match Slipway's GitLab webhook secret")
