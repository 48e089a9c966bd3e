"""The engine-specific half of the composition root: what runs revisions, routes requests and
builds images, for each `SLIPWAY_ENGINE`. `platform.build` makes the shared half (store, keys,
secrets) and asks here for the rest, once, so the two engines are wired side by side in one
place.

    docker    Docker Engine + HAProxy + Slipway's reconciler; Docker/BuildKit and `pack` builds;
              the resolver and metadata daemons next to the bridge network; mapped domains and
              (with SLIPWAY_HTTPS_PORT) certificates from `pipeline.tls`
    knative   Knative Serving runs revisions (its ingress is the data plane); build Jobs;
              domain mappings as Knative DomainMappings
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.app import activatorserver, daemons
from pipeline.app.certificates import certificates_of
from pipeline.build import sourcetokens
from pipeline.build.builders import Builder, Kind
from pipeline.build.buildpacks import PackBuilder
from pipeline.build.dockerfile import DockerEngineBuilder
from pipeline.core.settings import Settings
from pipeline.dataplane.desiredcache import DesiredCache
from pipeline.dataplane.drains import HAProxyDataPlane
from pipeline.dataplane.model import Site
from pipeline.dataplane.process import HAProxyManager
from pipeline.engines.docker import DockerEngine
from pipeline.engines.dockerclient import connect as docker_connect
from pipeline.identity.keys import KeyStore
from pipeline.knative.apply import KubeApi
from pipeline.knative.apply import connect as kube_connect
from pipeline.knative.builds import ClusterBuildSettings
from pipeline.knative.domainmappings import DomainMappingSync
from pipeline.knative.engine import KnativeEngine
from pipeline.knative.jobs import ClusterBuilder
from pipeline.knative.reconciler import KnativeReconciler
from pipeline.reconcile.loop import Reconciler
from pipeline.reconcile.policies import KeyPolicy
from pipeline.store.certificates import CertificateStore
from pipeline.store.domains import DomainMappings
from pipeline.store.secrets import SecretStore
from pipeline.store.secrets import resolve as resolve_secrets
from pipeline.store.state import Store
from pipeline.tls.issuance import Certificates
from pipeline.tls.plane import ServingPlane


@dataclass(kw_only=True)
class EngineParts:
    engine: DockerEngine | KnativeEngine
    dataplane: HAProxyDataPlane | None  # None on Knative: its ingress is the data plane
    reconciler: Reconciler | KnativeReconciler
    builders: Callable[[Kind], Builder]
    published_urls: Callable[[str], list[str]] | None = None  # Knative publishes its own URLs
    source_token_key: bytes = b""  # signs build source downloads (Knative build Jobs)
    certificates: Certificates | None = None  # HTTPS on the embedded engine


def site_of(settings: Settings, *, internal: str = "", subnet: str = "") -> Site:
    return Site(
        bind=f"{settings.ingress_host}:{settings.ingress_port}",
        internal_bind=f"{internal}:{settings.ingress_port}" if internal else "",
        internal_sources=subnet,
        activator=f"{settings.api_host}:{settings.activator_port}",
        https_bind=f"{settings.ingress_host}:{settings.https_port}" if settings.https_port else "",
        domain=settings.domain,
        api_server=f"{settings.api_host}:{settings.api_port}",
        run_dir=settings.haproxy_dir,
    )


def metadata_args(settings: Settings) -> list[str]:
    """The metadata server's options (pipeline.app.metadataserver.main)."""
    return [
        "--keys-dir", str(settings.keys_dir), "--network", settings.network,
        "--platform", settings.platform_id, "--issuer", settings.ingress_url,
        "--domain", settings.domain,
    ]  # fmt: skip


def docker_parts(
    settings: Settings,
    *,
    store: Store,
    keys: KeyStore,
    secrets: SecretStore,
    domains: DomainMappings,
    certificates: CertificateStore,
) -> EngineParts:
    """SLIPWAY_ENGINE=docker: containers on Slipway's bridge network behind HAProxy."""
    client = docker_connect()
    engine = DockerEngine(
        client, platform=settings.platform_id, network=settings.network, follow_events=True
    )
    engine.ensure_network()
    gateway = engine.gateway()
    _start_daemons(settings, engine=engine, gateway=gateway)
    engine.keep_sandboxes(settings.spare_sandboxes)  # once `dns` is known: spares carry it
    manager = HAProxyManager(
        site=site_of(settings, internal=gateway, subnet=engine.subnet()),
        binary=settings.haproxy_bin,
    )
    dataplane = HAProxyDataPlane(manager)
    issued = (
        certificates_of(settings, store=certificates, manager=manager)
        if settings.https_port
        else None
    )
    reconciler = Reconciler(
        store=store,
        engine=engine,
        dataplane=ServingPlane(
            dataplane, domain=settings.domain, mappings=domains.list, certificates=issued
        ),
        domain=settings.domain,
        readiness_timeout_s=settings.readiness_timeout_s,
        grace_period_s=settings.grace_period_s,
        resolve=lambda config: resolve_secrets(secrets, config),
        scale_to_zero=True,
        zero_grace_s=settings.scale_to_zero_grace_s,
        jwt_policy=KeyPolicy(keys=keys, issuer=settings.ingress_url),
        freeze=settings.freeze_idle,
        min_available_bytes=settings.freeze_min_available_mb * 2**20,
        on_snapshot=DesiredCache(activatorserver.desired_path(settings.data_dir / "run")).update,
    )
    docker_builder = DockerEngineBuilder(client, template_bases=settings.template_bases)
    pack_builder = PackBuilder.from_settings(client, settings)

    def builders(kind: Kind) -> Builder:
        return pack_builder if kind == "pack" else docker_builder

    if issued is not None:
        issued.on_change = reconciler.wake  # a new certificate reaches HAProxy on the next pass
    return EngineParts(
        engine=engine,
        dataplane=dataplane,
        reconciler=reconciler,
        builders=builders,
        certificates=issued,
    )


def _start_daemons(settings: Settings, *, engine: DockerEngine, gateway: str) -> None:
    """The resolver and the metadata server on the bridge gateway; instances learn of each
    only if it answers (an instance without them still runs, without names or identity)."""
    run_dir, logs_dir = settings.data_dir / "run", settings.data_dir / "logs"
    if daemons.ensure_dns(
        run_dir=run_dir, logs_dir=logs_dir, address=gateway, domain=settings.domain
    ):
        engine.dns = gateway
    if daemons.ensure_metadata(
        run_dir=run_dir,
        logs_dir=logs_dir,
        address=gateway,
        port=settings.metadata_port,
        args=metadata_args(settings),
    ):
        port = "" if settings.metadata_port == 80 else f":{settings.metadata_port}"
        engine.metadata_host = f"{gateway}{port}"


def source_token_key(settings: Settings) -> bytes:
    return sourcetokens.ensure_key(settings.data_dir / "source-token-key")


def knative_parts(
    settings: Settings, *, store: Store, domains: DomainMappings | None = None
) -> EngineParts:
    """SLIPWAY_ENGINE=knative: Knative runs revisions, builds are Kubernetes Jobs."""
    api = KubeApi(
        kube_connect(kubeconfig=settings.kubeconfig),
        namespace=settings.namespace,
        platform=settings.platform_id,
    )
    engine = KnativeEngine(
        api,
        issuer=settings.public_url,
        domain=settings.domain,
        metadata_host=settings.metadata_host,
    )
    key = source_token_key(settings)
    builder = ClusterBuilder(
        api,
        settings=_cluster_build_settings(settings),
        source_base_url=settings.source_url or settings.public_url,
        token_key=key,
    )
    reconciler = KnativeReconciler(
        store=store,
        engine=engine,
        readiness_timeout_s=settings.readiness_timeout_s,
        clock=time.time,
        mappings=DomainMappingSync(api, mappings=domains.list) if domains else None,
    )
    return EngineParts(
        engine=engine,
        dataplane=None,
        reconciler=reconciler,
        builders=lambda _kind: builder,
        published_urls=reconciler.urls,
        source_token_key=key,
    )


def _cluster_build_settings(settings: Settings) -> ClusterBuildSettings:
    return ClusterBuildSettings(
        namespace=settings.namespace,
        platform=settings.platform_id,
        registry=settings.registry,
        build_registry=settings.build_registry,
        registry_secret=settings.registry_secret,
        buildkit_image=settings.buildkit_image,
        fetch_image=settings.fetch_image,
        cnb_builder=settings.cnb_builder,
        cnb_run_image=settings.cnb_run_image,
        insecure_registry=settings.registry_insecure,
        buildkit_rootless=settings.buildkit_rootless,
        templates=settings.buildtemplates_dir / "kubernetes",
    )
