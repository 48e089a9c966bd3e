"""The chaos suite's fixtures: the integration suite's real platform (control plane, HAProxy,
registry, dockerd), under steady load (`load`), checked for convergence (`converge`).

Fast cases run in every `./scripts/test`. Slow or machine-wide ones carry the `chaos_full`
marker and run only with SLIPWAY_CHAOS=full, e.g. `SLIPWAY_CHAOS=full ./scripts/test tests/chaos`.
"""

from __future__ import annotations

import os

import pytest

from tests.integration.conftest import (  # fixtures, shared by import
    busybox_image as busybox_image,
)
from tests.integration.conftest import (
    docker_client as docker_client,
)
from tests.integration.conftest import (
    python_image as python_image,
)
from tests.integration.conftest import (
    registry as registry,
)
from tests.integration.conftest import (
    slipway as slipway,
)

FULL = os.environ.get("SLIPWAY_CHAOS") == "full"
SKIPPED_WITHOUT_FULL = (
    "CHAOS CASE NOT RUN: slow or machine-wide (restarts dockerd, fills a disk ...); "
    "run it with SLIPWAY_CHAOS=full"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if FULL:
        return
    for item in items:
        if item.get_closest_marker("chaos_full") is not None:
            item.add_marker(pytest.mark.skip(reason=SKIPPED_WITHOUT_FULL))
