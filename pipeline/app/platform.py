"""The composition root: settings in, a wired platform out (store, engine, data plane, loops).

Only this module and `server` know which concrete engine, builder and data plane are in use.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.api.auth import ensure_token
from pipeline.app import daemons
from pipeline.build import gitsources
from pipeline.build.builders import Builder, Kind
from pipeline.build.buildpacks import PackBuilder
from pipeline.build.dockerfile import DockerEngineBuilder
from pipeline.build.registry import RegistryClient
from pipeline.core.logs import get as get_log
from pipeline.core.settings import Settings
from pipeline.dataplane.drains import HAProxyDataPlane
from pipeline.dataplane.model import Site
from pipeline.dataplane.process import HAProxyManager
from pipeline.deploy.deployer import Deployer
from pipeline.engines.docker import DockerEngine
from pipeline.engines.dockerclient import connect
from pipeline.identity import access
from pipeline.identity.keys import KeyStore
from pipeline.knative.engine import KnativeEngine
from pipeline.knative.reconciler import KnativeReconciler
from pipeline.knative.wiring import build_knative
from pipeline.reconcile.loop import Reconciler
from pipeline.store import db
from pipeline.store.deliveries import Deliveries
from pipeline.store.repos import Repositories
from pipeline.store.secrets import SecretStore
from pipeline.store.secrets import resolve as resolve_secrets
from pipeline.store.state import Store
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
    source_token_key: bytes = b""  # signs build source downloads (Knative build Jobs)

    def start_loops(self) -> threading.Thread:
        thread = threading.Thread(
            target=self.reconciler.run,
            args=(self.stop,),
            kwargs={"interval_s": self.settings.reconcile_interval_s},
            name="reconciler",
            daemon=True,
        )
        thread.start()
        return thread


# A build runs inside the control plane process: one that was queued or running when the
# process stopped can never finish.
RESTARTED = "control plane restarted during the build"


def site_of(settings: Settings, *, internal: str = "") -> Site:
    return Site(
        bind=f"{settings.ingress_host}:{settings.ingress_port}",
        internal_bind=f"{internal}:{settings.ingress_port}" if internal else "",
        activator=f"{settings.api_host}:{settings.activator_port}",
        domain=settings.domain,
        api_server=f"{settings.api_host}:{settings.api_port}",
        run_dir=settings.haproxy_dir,
    )


def signing_seed(settings: Settings) -> Path | None:
    return Path(settings.signing_key_file) if settings.signing_key_file else None


def metadata_args(settings: Settings) -> list[str]:
    """The metadata server's options (pipeline.identity.metadata.main)."""
    return [
        "--keys-dir", str(settings.keys_dir), "--network", settings.network,
        "--platform", settings.platform_id, "--issuer", settings.ingress_url,
        "--domain", settings.domain,
    ]  # fmt: skip


def build(settings: Settings) -> Platform:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine_db = db.make_engine(settings.db_url)
    db.migrate(engine_db)
    sessions = db.session_factory(engine_db)
    store = Store(sessions)
    interrupted = store.fail_unfinished_builds(reason=RESTARTED)
    if interrupted:
        get_log(component="platform").warning("builds_interrupted", builds=interrupted)
    if settings.engine == "knative":
        return _build_knative(settings, store=store, deliveries=Deliveries(sessions))
    client = connect()
    engine = DockerEngine(client, platform=settings.platform_id, network=settings.network)
    engine.ensure_network()
    gateway = engine.gateway()
    if daemons.ensure_dns(
        run_dir=settings.data_dir / "run",
        logs_dir=settings.data_dir / "logs",
        address=gateway,
        domain=settings.domain,
    ):
        engine.dns = gateway
    keys = KeyStore(settings.keys_dir)
    keys.ensure(seed=signing_seed(settings))
    if daemons.ensure_metadata(
        run_dir=settings.data_dir / "run",
        logs_dir=settings.data_dir / "logs",
        address=gateway,
        port=settings.metadata_port,
        args=metadata_args(settings),
    ):
        port = "" if settings.metadata_port == 80 else f":{settings.metadata_port}"
        engine.metadata_host = f"{gateway}{port}"
    dataplane = HAProxyDataPlane(
        HAProxyManager(site=site_of(settings, internal=gateway), binary=settings.haproxy_bin)
    )
    secret_store = SecretStore(settings.data_dir)
    reconciler = Reconciler(
        store=store,
        engine=engine,
        dataplane=dataplane,
        domain=settings.domain,
        readiness_timeout_s=settings.readiness_timeout_s,
        grace_period_s=settings.grace_period_s,
        resolve=lambda config: resolve_secrets(secret_store, config),
        scale_to_zero=True,
        zero_grace_s=settings.scale_to_zero_grace_s,
        jwt_policy=lambda: access.policy(keys, issuer=settings.ingress_url),
    )
    docker_builder = DockerEngineBuilder(client, template_bases=settings.template_bases)
    pack_builder = PackBuilder(
        client, pack_bin=settings.pack_bin, default_builder=settings.pack_builder
    )

    def builders(kind: Kind) -> Builder:
        return pack_builder if kind == "pack" else docker_builder

    deployer = Deployer(
        store=store,
        builders=builders,
        registry=RegistryClient(),
        reconciler=reconciler,
        settings=settings,
        secrets=secret_store,
    )
    deliveries = Deliveries(sessions)
    return Platform(
        settings=settings,
        token=ensure_token(settings.token_file),
        store=store,
        engine=engine,
        dataplane=dataplane,
        reconciler=reconciler,
        deployer=deployer,
        repos=Repositories(settings.data_dir / "git"),
        deliveries=deliveries,
        secrets=secret_store,
        keys=keys,
        runner=Runner(deployer, deliveries, clone=_cloner(settings)),
        stop=threading.Event(),
    )


def _build_knative(settings: Settings, *, store: Store, deliveries: Deliveries) -> Platform:
    """SLIPWAY_ENGINE=knative: Knative runs revisions, builds are Kubernetes Jobs."""
    parts = build_knative(settings, store=store)
    keys = KeyStore(settings.keys_dir)  # Istio verifies tokens against this JWKS
    keys.ensure(seed=signing_seed(settings))
    secret_store = SecretStore(settings.data_dir)
    deployer = Deployer(
        store=store,
        builders=lambda _kind: parts.builder,
        registry=RegistryClient(),
        reconciler=parts.reconciler,
        settings=settings,
        secrets=secret_store,
        published_urls=parts.reconciler.urls,
    )
    return Platform(
        settings=settings,
        token=ensure_token(settings.token_file),
        store=store,
        engine=parts.engine,
        dataplane=None,
        reconciler=parts.reconciler,
        deployer=deployer,
        repos=Repositories(settings.data_dir / "git"),
        deliveries=deliveries,
        secrets=secret_store,
        keys=keys,
        runner=Runner(deployer, deliveries, clone=_cloner(settings)),
        stop=threading.Event(),
        source_token_key=parts.source_token_key,
    )


def _cloner(settings: Settings) -> Callable[[str, str], bytes]:
    """Webhook clones, limited to the git transports the operator allows."""
    return functools.partial(gitsources.clone_at, schemes=settings.git_schemes)
