"""Edits that never create a revision: the traffic split, tags, rollback, and who may call.

The traffic itself is edited purely (`pipeline.core.traffic`); this module validates the result
like any Service, writes it and wakes the reconciler. A split that would send requests to a
revision without a ready instance waits for one first, so a traffic change fails no request; a
split the runtime refuses (Knative's admission or Route) is stored back as it was and the
refusal is the answer.
The caller holds the service lock (`pipeline.deploy.locks`).
"""

from __future__ import annotations

from pipeline import spec
from pipeline.core import traffic
from pipeline.core.errors import Conflict, RevisionFailed
from pipeline.core.records import Revision, Service
from pipeline.core.settings import Settings
from pipeline.deploy.waker import Waker
from pipeline.identity import access
from pipeline.reconcile.routing import refuse_shared_hosts, resolve_traffic
from pipeline.store.state import Store


class Edits:
    def __init__(self, *, store: Store, reconciler: Waker, settings: Settings) -> None:
        self._store = store
        self._reconciler = reconciler
        self._settings = settings

    def set_traffic(self, service: str, edit: traffic.Change) -> None:
        """Change the split or the tags; any revision about to get traffic gets a ready
        instance first."""
        svc = self._store.get_service(service)
        revisions = self._store.list_revisions(service)
        updated = traffic.change(traffic.entries_of(svc.spec), edit, revisions=revisions)
        self._switch(svc, updated, revisions)

    def rollback(self, service: str) -> str:
        """Send all traffic to the revision that served before the current one."""
        svc = self._store.get_service(service)
        revisions = self._store.list_revisions(service)
        entries = traffic.entries_of(svc.spec)
        target = traffic.previous_serving(entries, revisions=revisions)
        updated = traffic.change(
            entries, traffic.Change(to_revisions={target: 100}), revisions=revisions
        )
        self._switch(svc, updated, revisions)
        return target

    def remove_tag(self, service: str, tag: str) -> bool:
        """Drop a preview tag (deleted branch, closed pull request); False if it was not set."""
        svc = self._store.get_service(service)
        before = traffic.entries_of(svc.spec)
        after = traffic.without_tags(before, {tag})
        if after == before:
            return False
        self.put(svc, after)
        return True

    def retag(self, service: str, *, revision: str, tags: tuple[str, ...], promote: bool) -> None:
        """Point `tags` at `revision`; with `promote`, all traffic follows the latest."""
        svc = self._store.get_service(service)
        updated = traffic.retag(
            traffic.entries_of(svc.spec),
            revision=revision,
            tags=list(tags),
            promote=promote,
            keep_commit_tags=self._settings.commit_tags_kept,
        )
        self.put(svc, updated)

    def put(self, svc: Service, entries: list[traffic.Entry]) -> None:
        """Write this traffic block, validated like any Service: percents, tag lengths,
        revision ownership."""
        manifest = traffic.with_entries(svc.spec, entries)
        manifest = spec.parse_service(manifest, require_image=False).to_manifest()
        refuse_shared_hosts(
            manifest, services=self._store.list_services(), domain=self._settings.domain
        )
        self._store.put_service(svc.name, spec=manifest)
        self._reconciler.wake()

    def update_access(
        self, service: str, *, private: bool | None, add: tuple[str, ...], remove: tuple[str, ...]
    ) -> Service:
        """Make a service private or public and edit its invokers."""
        svc = self._store.get_service(service)
        manifest = access.edited(svc.spec, private=private, add=add, remove=remove)
        return self._store.put_service(service, spec=manifest)

    def _switch(
        self, svc: Service, updated: list[traffic.Entry], revisions: list[Revision]
    ) -> None:
        probe = traffic.with_entries(svc.spec, updated)
        # Validate first (percents, tags, host lengths, hosts of other services): a bad edit
        # changes nothing.
        spec.parse_service(probe, require_image=False)
        refuse_shared_hosts(
            probe, services=self._store.list_services(), domain=self._settings.domain
        )
        wanted = {t.revision for t in resolve_traffic(
            Service(name=svc.name, spec=probe, generation=svc.generation,
                    created_at=svc.created_at),
            revisions,
        )}  # fmt: skip
        self._reconciler.hold(wanted)
        try:
            timeout_s = self._settings.readiness_timeout_s
            late = self._reconciler.wait_ready(wanted, timeout_s=timeout_s)
            if late:
                raise RevisionFailed(
                    f"{', '.join(sorted(late))} did not get a ready instance within "
                    f"{timeout_s:.0f}s: traffic unchanged",
                    reason="NotReady",
                )
            self.put(svc, updated)
            self._reconciler.wait_for_pass(timeout_s=30)
            refused = self._reconciler.refusal(svc.name, timeout_s=30)
            if refused:
                # The runtime kept serving the old split: store it back, so that what Slipway
                # shows and applies is what serves.
                self._store.put_service(svc.name, spec=svc.spec)
                self._reconciler.wake()
                raise Conflict(
                    f"the cluster refused the traffic edit of {svc.name!r}, traffic unchanged: "
                    f"{refused}"
                )
        finally:
            self._reconciler.release(wanted)
