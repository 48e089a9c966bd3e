"""A service's URLs as a deploy reports them: the service URL first, then its tag URLs.

On the embedded engine they are derived from the names and the resolved traffic; on Knative
the cluster publishes them (status.url, status.traffic[].url) and those are passed in.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.core import names
from pipeline.core.settings import Settings
from pipeline.reconcile.routing import resolve_traffic
from pipeline.store.state import Store


class ServiceUrls:
    def __init__(
        self,
        *,
        store: Store,
        settings: Settings,
        published: Callable[[str], list[str]] | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._published = published

    def __call__(self, service: str) -> list[str]:
        if self._published is not None:
            return self._published(service)
        svc = self._store.find_service(service)
        if svc is None:
            return []
        domain, port = self._settings.domain, self._settings.ingress_port
        urls = [names.service_url(service, domain, port)]
        for t in resolve_traffic(svc, self._store.list_revisions(service)):
            if t.tag:
                urls.append(names.tag_url(t.tag, service, domain, port))
        return urls
