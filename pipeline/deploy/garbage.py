"""Garbage collection after a deploy: old revisions that neither serve nor carry a tag, and
their images in the registry once no revision left uses them.

Runs at the end of a successful rollout (`pipeline.deploy.rollout`). Which revisions go is
decided purely (`pipeline.core.traffic.collectable`); deleting images is best effort.
"""

from __future__ import annotations

from structlog.typing import FilteringBoundLogger

from pipeline.build.registry import RegistryClient, unused_images
from pipeline.core import traffic
from pipeline.core.errors import SlipwayError
from pipeline.core.logs import get as get_log
from pipeline.core.records import Revision
from pipeline.core.settings import Settings
from pipeline.deploy.waker import Waker
from pipeline.store.state import Store


class Garbage:
    def __init__(
        self, *, store: Store, registry: RegistryClient, reconciler: Waker, settings: Settings
    ) -> None:
        self._store = store
        self._registry = registry
        self._reconciler = reconciler
        self._settings = settings

    def collect(self, service: str) -> None:
        svc = self._store.get_service(service)
        revisions = self._store.list_revisions(service)
        old = traffic.collectable(
            traffic.entries_of(svc.spec), revisions=revisions, keep=self._settings.revisions_kept
        )
        if old:
            gone = [r for r in revisions if r.name in old]
            self._store.delete_revisions(old)
            log = get_log(service=service)
            log.info("revisions_collected", revisions=old)
            self._reconciler.wake()
            self._delete_images(gone, log=log)

    def _delete_images(self, gone: list[Revision], *, log: FilteringBoundLogger) -> None:
        """Best effort: a registry that refuses costs disk space, never a deploy."""
        remaining = self._store.snapshot().revisions
        for image in unused_images(gone, remaining, registry=self._settings.registry):
            try:
                deleted = self._registry.delete(image)
            except SlipwayError as e:
                log.warning("image_not_deleted", image=image, error=e.message)
                continue
            log.info("image_deleted", image=image, found=deleted)
