"""The real `pack` and Slipway's builder for the tests that build with them (test_pack.py and the
pack cases of test_builders.py), made once per test session when this machine lacks them."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors

from pipeline.core.settings import DEFAULT_PACK_BUILDER
from tests.integration.conftest import ROOT


@functools.cache
def ensure_pack() -> str:
    """scripts/tools' pack (compiled from source on a machine that has none yet)."""
    done = subprocess.run([str(ROOT / "scripts" / "tools"), "--dir", "pack"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, f"scripts/tools could not build pack:\n{done.stderr}"
    return str(Path(done.stdout.strip()) / "pack")


def ensure_builder(client: docker.DockerClient) -> str:
    """Slipway's builder, made by scripts/builder when this machine has none. Only when missing:
    other tests remake slipway/debian:bookworm, which would remake all three images (minutes);
    ./scripts/test runs scripts/builder itself, so an outdated builder is remade there."""
    try:
        client.images.get(DEFAULT_PACK_BUILDER)
    except docker.errors.ImageNotFound:
        env = {**os.environ, "SLIPWAY_PACK": ensure_pack(), "SLIPWAY_VENV": sys.prefix}
        subprocess.run([str(ROOT / "scripts" / "builder")], env=env, check=True)
    return DEFAULT_PACK_BUILDER


@contextlib.contextmanager
def removing_pack_caches(client: docker.DockerClient, *services: str) -> Iterator[None]:
    """Remove the cache volumes pack makes for `services` while the block runs. A volume is named
    after the image's path and tag only (`pack-cache-py_latest-<hash>.build`), not its registry:
    the block's are the new ones with those names."""
    pattern = re.compile(rf"^pack-cache-({'|'.join(map(re.escape, services))})_latest-")

    def volumes() -> set[str]:
        listed = client.volumes.list(filters={"name": "pack-cache-"})
        return {v.name for v in listed if pattern.match(v.name)}

    before = volumes()
    try:
        yield
    finally:
        for name in volumes() - before:
            client.volumes.get(name).remove(force=True)
