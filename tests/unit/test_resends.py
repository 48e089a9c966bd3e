"""The one rule for sending a request to an instance again (pipeline.dataplane.resends), as
the activator reads it and as HAProxy is told it."""

from __future__ import annotations

import pytest
from starlette.datastructures import Headers

from pipeline.dataplane import resends


@pytest.mark.parametrize(
    ("method", "headers", "twice"),
    [
        ("GET", {}, True),
        ("HEAD", {}, True),
        ("PUT", {}, True),
        ("DELETE", {}, True),
        ("OPTIONS", {}, True),
        ("POST", {}, False),
        ("PATCH", {}, False),
        ("get", {}, False),  # methods are case-sensitive: not GET
        ("POST", {"Idempotency-Key": "a1"}, True),
        ("PATCH", {"x-idempotency-key": "a1"}, True),
        ("POST", {"Idempotency": "a1"}, False),
    ],
)
def test_which_requests_may_run_twice(method: str, headers: dict[str, str], twice: bool) -> None:
    assert resends.may_run_twice(method, Headers(headers)) is twice


def test_haproxy_is_told_the_same_rule() -> None:
    assert resends.HAPROXY_CONDITION == (
        "{ method GET HEAD PUT DELETE OPTIONS TRACE } || { req.hdr(idempotency-key) -m found } "
        "|| { req.hdr(x-idempotency-key) -m found }"
    )
