"""The Knative engine's parts, built from settings: what `platform.build` needs when
`SLIPWAY_ENGINE=knative`. Kept here so the composition root stays a few lines.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pipeline.build import sourcetokens
from pipeline.core.settings import Settings
from pipeline.knative.apply import KubeApi, connect
from pipeline.knative.builds import ClusterBuildSettings
from pipeline.knative.engine import KnativeEngine
from pipeline.knative.jobs import ClusterBuilder
from pipeline.knative.reconciler import KnativeReconciler
from pipeline.store.state import Store


@dataclass(kw_only=True)
class KnativeParts:
    api: KubeApi
    engine: KnativeEngine
    reconciler: KnativeReconciler
    builder: ClusterBuilder
    source_token_key: bytes


def source_token_key(settings: Settings) -> bytes:
    return sourcetokens.ensure_key(settings.data_dir / "source-token-key")


def build_knative(settings: Settings, *, store: Store) -> KnativeParts:
    api = KubeApi(
        connect(kubeconfig=settings.kubeconfig),
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
        settings=ClusterBuildSettings(
            namespace=settings.namespace,
            platform=settings.platform_id,
            registry_secret=settings.registry_secret,
            kaniko_image=settings.kaniko_image,
            fetch_image=settings.fetch_image,
            cnb_builder=settings.cnb_builder,
            insecure_registry=settings.registry_insecure,
            templates=settings.buildtemplates_dir / "kubernetes",
        ),
        source_base_url=settings.source_url or settings.public_url,
        token_key=key,
    )
    reconciler = KnativeReconciler(
        store=store,
        engine=engine,
        readiness_timeout_s=settings.readiness_timeout_s,
        clock=time.time,
    )
    return KnativeParts(
        api=api, engine=engine, reconciler=reconciler, builder=builder, source_token_key=key
    )
