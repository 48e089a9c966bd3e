"""Is a platform converged after a fault? Its store, its containers and HAProxy agree.

- no revision the test knew of is lost from the store;
- no container with the platform's labels that the store does not want (a revision it no longer
  has, a failed revision, an exited instance);
- the config file HAProxy runs is, byte for byte, what the renderer makes from the store and the
  running instances (every running instance ready, none draining: a settled platform), and the
  running HAProxy has exactly the file's servers, none held down.

Read from outside the control plane (its database, dockerd, HAProxy's admin socket), as an
operator's script would, so it holds whether or not the control plane is up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import docker

from pipeline.app.engines import site_of
from pipeline.core import names
from pipeline.core.errors import Unavailable
from pipeline.core.settings import Settings
from pipeline.dataplane.model import DataPlane
from pipeline.dataplane.render import render
from pipeline.dataplane.runtime import Runtime
from pipeline.engines.docker import DockerEngine
from pipeline.identity.keys import KeyStore
from pipeline.reconcile.policies import KeyPolicy
from pipeline.reconcile.routing import build_plane
from pipeline.store import db
from pipeline.store.state import Store
from tests.integration.conftest import Slipway


@dataclass(frozen=True)
class Look:
    problems: list[str]
    revisions: set[str]
    plane: DataPlane  # what the store and the running instances want HAProxy to have


def look(slipway: Slipway, client: docker.DockerClient, *, revisions: set[str]) -> Look:
    """What disagrees right now (empty when converged), and the store's revisions."""
    settings = Settings.from_env(slipway.env)
    engine = db.make_engine(settings.db_url)
    try:
        snapshot = Store(db.session_factory(engine)).snapshot()
    finally:
        engine.dispose()
    stored = {r.name: r for r in snapshot.revisions}
    lost = sorted(revisions - stored.keys())
    problems = [f"revision {name} was lost from the store" for name in lost]
    docker_engine = DockerEngine(client, platform=settings.platform_id, network=settings.network)
    instances = docker_engine.list_instances()
    for inst in instances:
        rev = stored.get(inst.revision)
        if rev is None or rev.status == "Failed" or not inst.running:
            why = "exited" if not inst.running else f"revision {inst.revision} not wanted"
            problems.append(f"orphan container {inst.name} ({why})")
    running = [i for i in instances if i.running and i.revision in stored]
    site = site_of(settings, internal=docker_engine.gateway(), subnet=docker_engine.subnet())
    plane = build_plane(
        snapshot,
        instances=running,
        ready={i.id for i in running},
        draining=set(),
        domain=settings.domain,
        jwt=KeyPolicy(keys=KeyStore(settings.keys_dir), issuer=settings.ingress_url)(),
    )
    try:
        installed = site.config_file.read_text()
    except FileNotFoundError:
        installed = ""
    if installed != render(plane, site=site):
        problems.append("HAProxy's config file is not what the renderer makes from the store")
    problems += _live_servers(site.admin_socket, plane_servers={
        b.name: {s.name for s in b.servers} for b in plane.backends
    })  # fmt: skip
    return Look(problems=problems, revisions=set(stored), plane=plane)


def _live_servers(admin_socket: Path, *, plane_servers: dict[str, set[str]]) -> list[str]:
    """The running HAProxy against the servers the store wants, and any it holds down."""
    try:
        live = Runtime(admin_socket).all_servers()
    except Unavailable as e:
        return [f"HAProxy's admin socket does not answer: {e}"]
    problems = []
    for backend, wanted in plane_servers.items():
        states = [s for s in live.get(backend, []) if not names.is_activator_server(s.name)]
        have = {s.name for s in states}
        if have != wanted:
            problems.append(f"HAProxy runs {sorted(have)} in {backend}; wanted: {sorted(wanted)}")
        problems += [f"{backend}/{s.name} is down in HAProxy" for s in states if not s.up]
    return problems


def converged(
    slipway: Slipway, client: docker.DockerClient, *, revisions: set[str], timeout_s: float = 45
) -> set[str]:
    """Wait until nothing disagrees (AssertionError naming what still does); the store's
    revisions, so a case can check which ones exist."""
    deadline = time.monotonic() + timeout_s
    while True:
        seen = look(slipway, client, revisions=revisions)
        if not seen.problems:
            return seen.revisions
        if time.monotonic() > deadline:
            raise AssertionError("not converged:\n  " + "\n  ".join(seen.problems))
        time.sleep(0.5)
