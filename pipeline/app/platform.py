"""The composition root: settings in, a wired platform out (store, engine, data plane, loops).

`build` is the one place the platform is put together: the parts both engines share here, the
engine's own from `app.engines`. Only this package and `api.server` know which concrete engine,
builder and data plane are in use.
"""

from __future__ import annotations

import functools
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from pipeline.app.engines import docker_parts, knative_parts
from pipeline.build import gitsources
from pipeline.build.registry import RegistryClient
from pipeline.core.logs import get as get_log
from pipeline.core.settings import Settings
from pipeline.dataplane.drains import HAProxyDataPlane
from pipeline.dataplane.requestlogs import RequestLogs, socket_path
from pipeline.deploy.deployer import Deployer
from pipeline.engines.docker import DockerEngine
from pipeline.identity.keys import KeyStore
from pipeline.knative.engine import KnativeEngine
from pipeline.knative.reconciler import KnativeReconciler
from pipeline.reconcile.loop import Reconciler
from pipeline.store import db, permissions
from pipeline.store.certificates import CertificateStore
from pipeline.store.deliveries import Deliveries
from pipeline.store.domains import DomainMappings
from pipeline.store.repos import Repositories
from pipeline.store.secrets import SecretStore
from pipeline.store.state import Store
from pipeline.tls.issuance import Certificates
from webhooks.runner import Runner


@dataclass(kw_only=True)
class Platform:
    settings: Settings
    token: str
    store: Store
    engine: DockerEngine | KnativeEngine
    dataplane: HAProxyDataPlane | None  # None on Knative: its ingress is the data plane
    reconciler: Reconciler | KnativeReconciler
    deployer: Deployer
    repos: Repositories
    deliveries: Deliveries
    secrets: SecretStore
    keys: KeyStore
    runner: Runner
    stop: threading.Event
    domains: DomainMappings
    certificates: Certificates | None = None  # None while HTTPS is off (or on Knative)
    source_token_key: bytes = b""  # signs build source downloads (Knative build Jobs)
    request_logs: RequestLogs | None = None  # HAProxy's request lines (None on Knative)

    def start_loops(self) -> threading.Thread:
        thread = threading.Thread(
            target=self.reconciler.run,
            args=(self.stop,),
            kwargs={"interval_s": self.settings.reconcile_interval_s},
            name="reconciler",
            daemon=True,
        )
        thread.start()
        if self.certificates is not None:
            # ACME orders take seconds: they run beside the reconciler, never inside its pass.
            threading.Thread(
                target=self.certificates.run, args=(self.stop,), name="certificates", daemon=True
            ).start()
        return thread


# A build runs inside the control plane process: one that was queued or running when the
# process stopped can never finish.
RESTARTED = "control plane restarted during the build"


def signing_seed(settings: Settings) -> Path | None:
    return Path(settings.signing_key_file) if settings.signing_key_file else None


def ensure_token(path: Path) -> str:
    """The admin token (API and git push), made on first start: 0600 in the data dir."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = "slw_" + secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


def build(settings: Settings) -> Platform:
    # Before anything is written: the data dir holds env values, sources, keys and logs.
    refused = permissions.private_data_dir(settings.data_dir)
    if refused:
        get_log(component="platform").warning(
            "data_dir_not_private",
            paths=refused[:10],
            reason="owned by another user: chmod go-rwx them by hand",
        )
    engine_db = db.make_engine(settings.db_url)
    db.migrate(engine_db)
    sessions = db.session_factory(engine_db)
    store = Store(sessions)
    interrupted = store.fail_unfinished_builds(reason=RESTARTED)
    if interrupted:
        get_log(component="platform").warning("builds_interrupted", builds=interrupted)
    keys = KeyStore(settings.keys_dir)  # HAProxy (or Istio) verifies tokens against these
    keys.ensure(seed=signing_seed(settings))
    secret_store = SecretStore(settings.data_dir)
    domains = DomainMappings(sessions)
    parts = (
        knative_parts(settings, store=store, domains=domains)
        if settings.engine == "knative"
        else docker_parts(
            settings,
            store=store,
            keys=keys,
            secrets=secret_store,
            domains=domains,
            certificates=CertificateStore(sessions, key_dir=settings.tls_dir / "keys"),
        )
    )
    deployer = Deployer(
        store=store,
        builders=parts.builders,
        registry=RegistryClient(insecure=settings.insecure_registries),
        reconciler=parts.reconciler,
        settings=settings,
        secrets=secret_store,
        published_urls=parts.published_urls,
        logs=parts.engine.logs_reader(),
    )
    deliveries = Deliveries(sessions)
    return Platform(
        settings=settings,
        token=ensure_token(settings.token_file),
        store=store,
        engine=parts.engine,
        dataplane=parts.dataplane,
        reconciler=parts.reconciler,
        deployer=deployer,
        repos=Repositories(settings.data_dir / "git"),
        deliveries=deliveries,
        secrets=secret_store,
        keys=keys,
        runner=Runner(
            deployer,
            deliveries,
            clone=functools.partial(gitsources.clone_at, schemes=settings.git_schemes),
        ),
        stop=threading.Event(),
        domains=domains,
        certificates=parts.certificates,
        source_token_key=parts.source_token_key,
        request_logs=(
            RequestLogs.listen(socket_path(settings.haproxy_dir)) if parts.dataplane else None
        ),
    )
