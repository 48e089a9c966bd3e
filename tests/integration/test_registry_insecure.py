"""A plain-HTTP registry that is not on loopback's usual names (an in-cluster registry Service
without TLS, say) is spoken to over HTTP when `SLIPWAY_REGISTRY_INSECURE=true` names it, and over
HTTPS otherwise. Found when the control plane ran in the local cluster and could reach the
registry only by another address (tests/knative/test_chart_install.py).

The registry is the real one (Debian's docker-registry) on 127.0.0.2: still loopback traffic, but
an address `_scheme`'s loopback names do not cover, as a cluster-internal one would not be."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.build.registry import RegistryClient
from pipeline.core.errors import Unavailable
from pipeline.core.settings import Settings
from tests.integration.conftest import Registry

pytestmark = pytest.mark.integration


@pytest.fixture
def plain_registry(tmp_path: Path) -> Iterator[str]:
    registry = Registry(tmp_path, host="127.0.0.2")
    registry.start()
    try:
        yield registry.address
    finally:
        registry.stop()


def test_a_registry_named_insecure_is_spoken_to_over_http(plain_registry: str) -> None:
    settings = Settings.from_env(
        {"SLIPWAY_REGISTRY": f"{plain_registry}/team", "SLIPWAY_REGISTRY_INSECURE": "true"}
    )
    assert settings.insecure_registries == frozenset({plain_registry})
    with RegistryClient(insecure=settings.insecure_registries) as client:
        assert client.ping(plain_registry)
        assert client.tags(f"{plain_registry}/team/nothing") == []


def test_without_the_setting_it_is_https_and_the_error_says_so(plain_registry: str) -> None:
    assert Settings.from_env({"SLIPWAY_REGISTRY": plain_registry}).insecure_registries == set()
    with RegistryClient(timeout_s=5) as client:
        assert not client.ping(plain_registry)
        with pytest.raises(Unavailable) as refused:
            client.tags(f"{plain_registry}/team/nothing")
    assert plain_registry in refused.value.message
