"""Short-lived tokens that let one build Job download its own source, and nothing else.

An in-cluster build fetches `GET <Slipway>/v1/builds/<id>/source` from an init container. It
must not carry the admin token, so it gets `<expiry>.<hmac>`: HMAC-SHA256 over the build id and
the expiry, keyed with a secret only the control plane holds. A token names one build and
expires (10 minutes by default); checking it needs no state.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

DEFAULT_TTL_S = 600


def ensure_key(path: Path) -> bytes:
    """The signing key, created (0600) on first use; replicas share it through the data dir."""
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its key
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex() + "\n")
    return key


def _signature(key: bytes, build_id: str, expires: int) -> str:
    return hmac.new(key, f"source:{build_id}:{expires}".encode(), hashlib.sha256).hexdigest()


def mint(key: bytes, build_id: str, *, now: float, ttl_s: float = DEFAULT_TTL_S) -> str:
    expires = int(now + ttl_s)
    return f"{expires}.{_signature(key, build_id, expires)}"


def verify(key: bytes, build_id: str, token: str, *, now: float) -> bool:
    """True if `token` was minted for `build_id` with `key` and has not expired."""
    raw_expires, _, signature = token.partition(".")
    if not raw_expires.isdigit() or not signature:
        return False
    expires = int(raw_expires)
    expected = _signature(key, build_id, expires)
    return hmac.compare_digest(signature, expected) and now < expires
