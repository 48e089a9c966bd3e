"""Bearer-token authentication for every API call.

The admin token lives in the data dir (0600); `app.platform.ensure_token` creates it on first
start. Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request


def check(request: Request, expected: str) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(
            status_code=401,
            detail="missing bearer token: send 'Authorization: Bearer <token>' "
            "(the admin token is in the data dir, file admin-token)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise HTTPException(
            status_code=401,
            detail="invalid token",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
