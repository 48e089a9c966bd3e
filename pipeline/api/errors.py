"""Slipway's error tree as HTTP answers: the one place a `SlipwayError` becomes a status code.

    InvalidInput (InvalidSpec, InvalidName, ...)  400
    NotFound                                      404
    Conflict                                      409
    BuildFailed, RevisionFailed                   422
    Unavailable                                   503
    anything else                                 500

A bad query parameter is bad input too (400, naming the parameter), as it was before the
deploy parameters became a typed model; a body that fails its model keeps FastAPI's 422.
Streamed deployments report the same mapping as an `error` event (`error_event`).
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from pipeline.core.errors import (
    BuildFailed,
    Conflict,
    InvalidInput,
    NotFound,
    RevisionFailed,
    SlipwayError,
    Unavailable,
)

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


def disk_full(error: BaseException) -> bool:
    """A write that failed for want of space: a file (ENOSPC), SQLite (SQLITE_FULL) or
    PostgreSQL (SQLSTATE 53100), the last two as SQLAlchemy wraps them."""
    if isinstance(error, OSError):
        return error.errno == errno.ENOSPC
    orig = getattr(error, "orig", None)
    if isinstance(orig, sqlite3.Error):
        return getattr(orig, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return getattr(orig, "sqlstate", None) == "53100"


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
    if disk_full(error):
        filename = getattr(error, "filename", None)
        where = f" (writing {filename})" if filename else ""
        return {
            "event": "error", "error": "DiskFull", "status": 507,
            "message": f"the disk is full{where}: nothing was deployed and what serves keeps "
            "serving; free space on the data dir's disk (`df -h`), then deploy again",
        }  # fmt: skip
    return {"event": "error", "error": "InternalError", "status": 500, "message": str(error)}


def query_problem(errors: Sequence[Any]) -> str | None:
    """What is wrong with the query, in words; None unless every error is in the query."""
    texts = []
    for error in errors:
        loc = tuple(error.get("loc") or ())
        if len(loc) < 2 or loc[0] != "query":
            return None
        name, given = str(loc[1]), error.get("input")
        texts.append(
            {
                "int_parsing": f"{name} must be a whole number, got {given!r}",
                "bool_parsing": f"{name} must be 0 or 1, got {given!r}",
                "extra_forbidden": f"unknown query parameter {name!r}",
            }.get(str(error.get("type")), f"{name}: {error.get('msg')}, got {given!r}")
        )
    return "; ".join(texts)


async def _slipway_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SlipwayError)
    # Messages quote what the client sent; a path of undecodable bytes arrives as surrogates,
    # which JSON cannot encode: escape them rather than answer 500.
    detail = exc.message.encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse(status_code=status_of(exc), content={"detail": detail})


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problem = query_problem(exc.errors())
    if problem is None:
        return await request_validation_exception_handler(request, exc)
    return JSONResponse(status_code=400, content={"detail": problem})


def install(app: FastAPI) -> None:
    app.add_exception_handler(SlipwayError, _slipway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
