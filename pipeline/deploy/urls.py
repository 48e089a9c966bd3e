"""A service's URLs as a deploy reports them: the service URL first, then its tag URLs; and of
those, the ones that reach one revision, with its share of the traffic.

The one place that decides what a public URL looks like: with HTTPS on (`SLIPWAY_HTTPS_PORT`,
docs/https.md) it is `https://` on that port, since the plain listener then only redirects. On
the embedded engine the URLs are derived from the names and the resolved traffic; on Knative the
cluster publishes them (status.url, status.traffic[].url) and those are passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pipeline.core import names
from pipeline.core.settings import Settings
from pipeline.reconcile.routing import Target, resolve_traffic
from pipeline.store.state import Store


def public_url(host: str, settings: Settings) -> str:
    """The URL users reach `host` at: HTTPS when it is on, else the plain ingress port."""
    scheme, port = ("https", settings.https_port) if settings.https_port else ("http", 0)
    port = port or settings.ingress_port
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{host}" if port == default else f"{scheme}://{host}:{port}"


@dataclass(frozen=True, kw_only=True)
class RevisionUrls:
    """What a deploy prints for its revision: the URLs that reach it and its traffic share."""

    revision: str
    percent: int
    urls: tuple[str, ...]  # the service URL first when the revision takes traffic, then tags
    # Hosts that should reach it but have no URL yet: on Knative, the Route publishes its URLs
    # a moment after the revision turns Ready (never on the embedded engine: derived here).
    unpublished: tuple[str, ...] = ()


def label_of(url: str) -> str:
    """The first label of a URL's host: `commit-abc1234--hello` in `http://commit-…--hello.x`."""
    return url.split("//", 1)[-1].split("/", 1)[0].split(".", 1)[0]


def revision_urls(
    *, service: str, revision: str, targets: Sequence[Target], urls: Sequence[str]
) -> RevisionUrls:
    """Of a service's URLs, those that reach `revision`: the service URL only when it takes a
    share of the traffic, and the URLs of the tags that point at it."""
    percent = sum(t.percent for t in targets if t.revision == revision)
    wanted = {f"{t.tag}--{service}" for t in targets if t.revision == revision and t.tag}
    if percent > 0:
        wanted.add(service)
    reaching = tuple(u for u in urls if label_of(u) in wanted)
    return RevisionUrls(
        revision=revision,
        percent=percent,
        urls=reaching,
        unpublished=tuple(sorted(wanted - {label_of(u) for u in reaching})),
    )


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
        domain = self._settings.domain
        urls = [public_url(names.service_host(service, domain), self._settings)]
        for t in resolve_traffic(svc, self._store.list_revisions(service)):
            if t.tag:
                urls.append(public_url(names.tag_host(t.tag, service, domain), self._settings))
        return urls

    def of_revision(self, service: str, revision: str) -> RevisionUrls:
        """The URLs that reach `revision` now, with its share of the traffic."""
        svc = self._store.find_service(service)
        targets = resolve_traffic(svc, self._store.list_revisions(service)) if svc else []
        return revision_urls(
            service=service, revision=revision, targets=targets, urls=self(service)
        )
