"""Upgrades keep data: a database written by an earlier release migrates forward and serves.

The fixture (tests/fixtures/slipway-db-0003.sql) was written by the release before migration
0004, through its own Store. Every migration added later runs on it here, so a migration that
loses or breaks existing rows fails this test.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import docker
import pytest

from pipeline.store.db import make_engine, migrate, session_factory
from pipeline.store.deliveries import Deliveries
from pipeline.store.state import Store
from tests.integration.conftest import ROOT, running_slipway

FIXTURE = ROOT / "tests" / "fixtures" / "slipway-db-0003.sql"


def _old_database(path: Path) -> Path:
    with sqlite3.connect(path) as db:
        db.executescript(FIXTURE.read_text())
    return path


def test_the_previous_release_database_migrates_to_head_with_its_rows(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{_old_database(tmp_path / 'slipway.db')}")
    migrate(engine)
    sessions = session_factory(engine)
    store = Store(sessions)

    (service,) = store.list_services()
    (revision,) = store.list_revisions("legacy")
    assert service.spec["metadata"]["annotations"]["slipway.dev/invokers"] == "service:caller"
    assert [t.get("tag") for t in service.spec["spec"]["traffic"]] == [None, "commit-abc1234"]
    assert (revision.name, revision.status, revision.build_id is not None) == (
        "legacy-00001", "Ready", True,
    )
    assert Deliveries(sessions).get("d-1").outcome == "built: legacy-00001"
    # What the new tables add works on the old data.
    Deliveries(sessions).set_deployed(service="legacy", ref="main", sha="a" * 40)
    engine.dispose()


@pytest.mark.integration
def test_a_control_plane_starts_on_the_previous_release_database(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient,
    registry: str, busybox_image: str,
) -> None:  # fmt: skip
    with running_slipway(tmp_path_factory, docker_client, registry) as sw:
        sw.stop()
        for stale in sw.data_dir.glob("slipway.db*"):
            stale.unlink()
        _old_database(sw.data_dir / "slipway.db")
        sw.start()  # migrates at start

        described = sw.api_get("/v1/services/legacy")
        assert described.status_code == 200, described.text
        assert [r["name"] for r in described.json()["revisions"]] == ["legacy-00001"]
