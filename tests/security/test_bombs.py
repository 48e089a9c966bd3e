"""Inflation bombs against the real control plane: a gzip-encoded git request and a YAML alias
bomb, each small on the wire; plus what a finished build leaves on disk.

Each request goes to a running control plane over real HTTP; the control plane's resident
memory is read from /proc before and after, so "refused" also means "refused before inflating".
"""

from __future__ import annotations

import json
import time
import zlib
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import Slipway, write_app

pytestmark = pytest.mark.integration
INFLATED = 1024 * 1024 * 1024  # what the bomb would become: 1 GiB of zeros


def _rss_mb(slipway: Slipway) -> float:
    assert slipway.proc is not None
    status = Path(f"/proc/{slipway.proc.pid}/status").read_text()
    (line,) = [x for x in status.splitlines() if x.startswith("VmRSS:")]
    return int(line.split()[1]) / 1024


def _gzip_bomb() -> bytes:
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\0" * (16 * 1024 * 1024)
    parts = [deflate.compress(chunk) for _ in range(INFLATED // len(chunk))]
    return b"".join(parts) + deflate.flush()


def test_a_gzip_bomb_on_the_git_endpoint_is_refused_before_it_inflates(slipway: Slipway) -> None:
    bomb = _gzip_bomb()
    assert len(bomb) < 2 * 1024 * 1024  # about a megabyte on the wire
    before = _rss_mb(slipway)

    answer = httpx.post(
        f"http://127.0.0.1:{slipway.api_port}/git/bombed.git/git-receive-pack",
        content=bomb, auth=("x", slipway.token), timeout=120,
        headers={"Content-Type": "application/x-git-receive-pack-request",
                 "Content-Encoding": "gzip"},
    )  # fmt: skip

    assert answer.status_code == 413 and "inflates past" in answer.text, answer.text
    grown = _rss_mb(slipway) - before
    assert grown < 300, f"the control plane grew by {grown:.0f} MB on a 1 MB request"


def test_a_yaml_alias_bomb_is_refused_at_once(slipway: Slipway) -> None:
    laughs = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for this, prev in zip("bcdefghi", "abcdefgh", strict=True):
        laughs.append(f"{this}: &{this} [{','.join([f'*{prev}'] * 9)}]")
    started = time.monotonic()

    answer = httpx.put(
        f"http://127.0.0.1:{slipway.api_port}/v1/services/laughs",
        content="\n".join(laughs).encode(), timeout=60,
        headers={"Authorization": f"Bearer {slipway.token}"},
    )  # fmt: skip

    events = [json.loads(x) for x in answer.text.splitlines() if x.strip()]
    assert events[-1]["status"] == 400 and "aliases" in events[-1]["message"], events
    assert time.monotonic() - started < 5


def test_env_names_that_are_not_posix_names_are_refused(slipway: Slipway, tmp_path: Path) -> None:
    doc = (
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: envy}\n"
        "spec: {template: {spec: {containers: [{image: r/x:1, "
        'env: [{name: "A\\nB", value: x}]}]}}}\n'
    )
    answer = httpx.put(
        f"http://127.0.0.1:{slipway.api_port}/v1/services/envy", content=doc.encode(),
        headers={"Authorization": f"Bearer {slipway.token}"}, timeout=60,
    )  # fmt: skip

    events = [json.loads(x) for x in answer.text.splitlines() if x.strip()]
    assert events[-1]["status"] == 400 and "invalid variable name" in events[-1]["message"]


def test_a_finished_build_leaves_no_source_archive(slipway: Slipway, tmp_path: Path) -> None:
    slipway.cli("deploy", "tidy", "--source", str(write_app(tmp_path / "app", body="tidy\n")))

    kept = list((slipway.data_dir / "sources").glob("*")) if (
        slipway.data_dir / "sources").exists() else []  # fmt: skip
    assert kept == [], kept
