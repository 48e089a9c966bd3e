"""The attack suite runs against the same real platform as the integration tests: a control plane
of its own, HAProxy, dockerd and the registry (fixtures shared from tests/integration)."""

from tests.integration.conftest import (
    busybox_image,
    docker_client,
    python_image,
    registry,
    slipway,
)

__all__ = ["busybox_image", "docker_client", "python_image", "registry", "slipway"]
