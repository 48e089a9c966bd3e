"""Property-based fuzzing of the API from its own OpenAPI document (schemathesis).

Every operation the document describes is called with generated parameters and bodies against
a real control plane, with the admin token, on a bounded budget (FUZZ_EXAMPLES per operation;
`SLIPWAY_FUZZ_EXAMPLES` raises it). Three properties: no 5xx, no call that hangs past
CALL_TIMEOUT_S, and no response that carries a secret value the platform holds. The document
has to describe every body and parameter for this to reach anything, which test_api.py checks.
"""

from __future__ import annotations

import os

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import BaseSchema, Case

from tests.integration.conftest import Slipway

pytestmark = pytest.mark.integration
FUZZ_EXAMPLES = int(os.environ.get("SLIPWAY_FUZZ_EXAMPLES", "20"))
CALL_TIMEOUT_S = 60.0
SECRET_VALUE = "fuzz-canary-7c1f0e5b9a"  # held in a Slipway secret; must never come back


@pytest.fixture(scope="module")
def api_schema(slipway: Slipway) -> BaseSchema:
    answer = httpx.put(
        f"http://127.0.0.1:{slipway.api_port}/v1/secrets/canary",
        json={"data": {"token": SECRET_VALUE}},
        headers={"Authorization": f"Bearer {slipway.token}"}, timeout=30,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{slipway.api_port}/openapi.json")
    return schema


def test_the_api_survives_what_its_own_document_allows(
    api_schema: BaseSchema, slipway: Slipway
) -> None:
    problems: list[str] = []
    calls = 0
    # The webhook routes authenticate by signature, which a fuzzer cannot make: every call would
    # stop at the signature check (test_webhooks.py covers them, forged and replayed).
    operations = [op for op in (result.ok() for result in api_schema.get_all_operations())
                  if not op.path.startswith("/hooks/")]  # fmt: skip
    assert len(operations) > 10, "the OpenAPI document lists too few operations to fuzz"
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
            suppress_health_check=list(HealthCheck),
        )  # fmt: skip
        def call(case: Case) -> None:
            nonlocal calls
            calls += 1
            response = case.call(
                base_url=f"http://127.0.0.1:{slipway.api_port}",
                headers={"Authorization": f"Bearer {slipway.token}"},
                timeout=CALL_TIMEOUT_S,
            )
            assert response.status_code < 500, response.text[:300]
            assert SECRET_VALUE not in response.text, "a secret value came back"

        try:
            call()
        except Exception as e:  # collect every operation's failure, then report them all
            problems.append(f"{operation.label}: {type(e).__name__}: {str(e)[:400]}")
    assert problems == [], "\n".join(problems)
    assert calls >= 2 * len(operations), f"only {calls} calls for {len(operations)} operations"
