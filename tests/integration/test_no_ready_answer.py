"""A service that exists but has no ready revision says so through the real HAProxy: 503 with
the service's name and why (still starting, or failed and how), not "no service answers"."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import BUSYBOX, Slipway, write_app

pytestmark = pytest.mark.integration

# The app's own output reaches the failure message: quotes, `$`, `%` and a backslash must not
# break the HAProxy config the message is written into.
NOISY_EXIT = r"""["sh", "-c", "echo 'booting \"now\" $HOME 100% a\\b'; exit 3"]"""


def app_with(folder: Path, cmd: str) -> Path:
    return write_app(folder, body="x", dockerfile=f"FROM {BUSYBOX}\nCMD {cmd}\n")


def answer_once(slipway: Slipway, host: str, *, saying: str) -> httpx.Response:
    """The host's answer once it says `saying`, or the last one after a bound: the data plane
    follows a revision's status at the reconciler's next pass."""
    deadline = time.monotonic() + 15
    reply = slipway.get(host)
    while saying not in reply.text and time.monotonic() < deadline:
        time.sleep(0.3)
        reply = slipway.get(host)
    return reply


def test_a_failed_first_revision_is_named_with_its_reason(slipway: Slipway, tmp_path: Path) -> None:
    result = slipway.cli("deploy", "doomed", "--source", str(app_with(tmp_path, NOISY_EXIT)),
                         check=False)  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    reply = answer_once(slipway, "doomed", saying="failed")

    assert reply.status_code == 503, reply.text
    assert reply.text.startswith("slipway: service doomed exists but has no ready revision: ")
    assert "revision doomed-00001 failed: ExitCode" in reply.text
    assert "code 3" in reply.text and "listened on  PORT" in reply.text  # `$` made a space
    if "booting" in reply.text:  # the app's output, when the engine had read it by then
        assert "booting  now   HOME 100  a b" in reply.text
    assert "`slipway services describe doomed` shows more" in reply.text
    unknown = slipway.get("nobody-here")
    assert unknown.status_code == 404
    assert "no service answers to host 'nobody-here." in unknown.text
    # The API and other services are untouched by the rule.
    assert slipway.api_get("/v1/services/doomed").status_code == 200


def test_a_revision_still_starting_says_so_then_why_it_failed(
    slipway: Slipway, tmp_path: Path
) -> None:
    never = app_with(tmp_path, '["sleep", "600"]')  # never listens: readiness times out
    deploy = threading.Thread(
        target=slipway.cli, args=("deploy", "slowpoke", "--source", str(never)),
        kwargs={"check": False}, daemon=True,
    )  # fmt: skip
    deploy.start()
    seen: list[tuple[int, str]] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        reply = slipway.get("slowpoke")
        seen.append((reply.status_code, reply.text))
        if "still starting" in reply.text or "failed" in reply.text:
            break
        time.sleep(0.2)
    starting = [text for status, text in seen if status == 503 and "still starting" in text]
    assert starting, seen[-3:]
    assert "revision slowpoke-00001 is still starting" in starting[0]

    deploy.join(timeout=120)
    reply = answer_once(slipway, "slowpoke", saying="failed")
    assert reply.status_code == 503, reply.text
    assert "revision slowpoke-00001 failed: ReadinessTimeout" in reply.text
