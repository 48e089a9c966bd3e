"""GET /metrics: gather one scrape's values and let `pipeline.api.metrics` render them.

No token, like Knative's and Prometheus' own scrape endpoints: the text names services,
revisions, tags and counts, never a secret, an image credential or an environment value. It is
served on the bare domain (`localhost:8080/metrics`, HAProxy routes it here) and on the API port.
A component that does not answer (HAProxy, Docker) leaves its metrics out and says so in
`slipway_component_up` rather than failing the whole scrape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fastapi import APIRouter, Response

from pipeline.api import metrics
from pipeline.api.dependencies import PlatformDep
from pipeline.app.platform import Platform
from pipeline.core.errors import Unavailable
from pipeline.core.logs import get as get_log
from pipeline.engines.base import Instance

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def scrape(platform: PlatformDep) -> Response:
    stats: Sequence[Mapping[str, str]] | None
    instances: Sequence[Instance] | None
    log = get_log(component="metrics")
    stats = None  # on Knative the cluster's ingress has the request side
    if platform.dataplane is not None:
        try:
            stats = platform.dataplane.manager.runtime.show_stat()
        except Unavailable as e:
            log.warning("metrics_dataplane_unavailable", error=e.message)
    try:
        instances = platform.engine.list_instances()
    except Unavailable as e:
        log.warning("metrics_engine_unavailable", error=e.message)
        instances = None
    text = metrics.render(
        metrics.Inputs(
            snapshot=platform.store.snapshot(),
            builds=platform.store.list_builds(limit=None),
            instances=instances,
            stats=stats,
            reconcile_passes=getattr(platform.reconciler, "passes", 0),
            reconcile_seconds=getattr(platform.reconciler, "pass_seconds", (0.0, 0.0)),
            autoscaler=_autoscaler(platform),
        )
    )
    return Response(content=text, media_type=metrics.CONTENT_TYPE)


def _autoscaler(platform: Platform) -> dict[str, Mapping[str, float | bool]]:
    view = getattr(platform.reconciler, "autoscaler_view", None)
    if view is None:
        return {}
    out = {}
    for rev in platform.store.snapshot().revisions:
        state = view(rev.name)
        if state is not None:
            out[rev.name] = state
    return out
