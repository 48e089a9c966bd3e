"""`deploy --git` may not reach into the host: local paths, file://, ssh with the control plane's
keys and exotic dulwich transports are refused before anything is cloned, through the real API.
"""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from pipeline.build import gitsources
from pipeline.core.errors import BuildFailed, InvalidInput
from tests.integration.conftest import Slipway

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        pytest.param("{data}/repos/victim.git", "is not a remote repository", id="local-path"),
        pytest.param("file://{data}/repos/victim.git", "is not a remote repository", id="file-url"),
        pytest.param("git@github.com:acme/app.git", "uses ssh", id="scp-ssh-with-root-keys"),
        pytest.param("ssh://git@github.com/acme/app.git", "uses ssh", id="ssh-url"),
        pytest.param("ext::sh -c id", "is not a remote repository", id="ext-transport"),
    ],
)  # fmt: skip
def test_git_urls_that_reach_the_host_are_refused(slipway: Slipway, url: str, reason: str) -> None:
    answer = httpx.post(
        f"http://127.0.0.1:{slipway.api_port}/v1/services/stolen/deployments",
        json={"git": {"url": url.format(data=slipway.data_dir), "ref": "main"}},
        headers={"Authorization": f"Bearer {slipway.token}"},
        timeout=60,
    )

    # The deployment endpoint streams events: the refusal is its one error event.
    (event,) = [json.loads(line) for line in answer.text.splitlines() if line.strip()]
    assert event["event"] == "error" and event["status"] == 400, event
    assert reason in event["message"] and "https://" in event["message"]  # the fix is named


def test_plain_http_is_refused_unless_configured() -> None:
    with pytest.raises(InvalidInput, match="SLIPWAY_GIT_SCHEMES"):
        gitsources.resolve_ref("http://127.0.0.1:9/acme/app.git", "main")


def test_a_git_server_that_never_answers_is_given_up_on() -> None:
    with socket.socket() as silent:  # accepts, never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/acme/app.git"

        with pytest.raises(BuildFailed, match=r"refs of .* failed: no answer within 2s"):
            gitsources.resolve_ref(url, "main", schemes=frozenset({"http"}), timeout_s=2)
