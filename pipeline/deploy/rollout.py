"""Rollout: an image and a manifest in; a ready revision placed in the traffic (or a clear
failure) out.

The push path's last steps: pin the secret versions, refuse hosts another service answers on,
write the service, create the revision if the template changed, point its tags at it, wait until
the reconciler reports it Ready, move the traffic, check that the data plane applied its route,
collect garbage. It writes desired state and lets the reconciler converge; it only waits and
reports: progress every few seconds while the revision is Pending (`waits`), then the URLs that
reach the new revision and its share of the traffic. For its first seconds a Pending revision's
wait also wakes the reconciler at every look, so the pass that finds a fast app ready runs as
soon as the one that started it ends (deploy latency, not the reconciler's pace); each step ends
with a `timing` event (instance, route, cleanup). A failure before the traffic moves leaves
the serving revision serving; a route that did not reach the data plane fails the deploy saying
why, never "ready". The caller holds the service lock.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

from pipeline import spec
from pipeline.core import traffic
from pipeline.core.annotations import SECRET_VERSIONS_ANNOTATION
from pipeline.core.errors import InvalidInput, RevisionFailed
from pipeline.core.logs import get as get_log
from pipeline.core.records import Revision, Service
from pipeline.core.revisions import config_of, secret_names
from pipeline.core.settings import Settings
from pipeline.deploy import events
from pipeline.deploy.edits import Edits
from pipeline.deploy.events import Emit, stage
from pipeline.deploy.garbage import Garbage
from pipeline.deploy.manifests import Flags, Placement, edit_template
from pipeline.deploy.urls import ServiceUrls
from pipeline.deploy.waits import PROGRESS_EVERY_S, InstanceWatch
from pipeline.deploy.waker import Waker
from pipeline.reconcile import rejections
from pipeline.reconcile.routing import latest_ready, refuse_shared_hosts, resolve_traffic
from pipeline.store.secrets import SecretStore
from pipeline.store.state import Store

# How long a ready revision's route may take to reach the data plane (two reconcile passes).
ROUTE_TIMEOUT_S = 30
ROUTE_NOT_APPLIED = "RouteNotApplied"
# How long a deploy waits for the runtime to publish the URLs that reach its revision (Knative's
# Route: a pass or two after Ready). Bounded well under the route's: a cluster that never
# publishes them costs each deploy this much, and the deploy then says it has no URL yet.
PUBLISH_TIMEOUT_S = 10
# While a new revision is Pending, how often rollout looks, and for how long it asks the
# reconciler for a pass each time: most apps listen within a second of their start, and each
# pass that finds them earlier is deploy latency saved; after that, the reconciler's own pace.
POLL_S = 0.05
NUDGE_FOR_S = 2.0
POLL_SLOW_S = 0.1  # after that: a slow app's wait needs no 20 store reads a second


@dataclass(frozen=True, kw_only=True)
class Outcome:
    service: str
    revision: Revision
    created: bool  # False when the template did not change (no new revision, as in Knative)
    urls: list[str] = field(default_factory=list)  # those that reach `revision`, not all
    percent: int = 0  # the revision's share of the service's traffic
    unpublished: tuple[str, ...] = ()  # hosts the runtime has not published a URL for yet


class Rollout:
    def __init__(
        self,
        *,
        store: Store,
        reconciler: Waker,
        settings: Settings,
        secrets: SecretStore | None,
        edits: Edits,
        garbage: Garbage,
        urls: ServiceUrls,
        watch: InstanceWatch,
    ) -> None:
        self._store = store
        self._reconciler = reconciler
        self._settings = settings
        self._secrets = secrets
        self._edits = edits
        self._garbage = garbage
        self._urls = urls
        self._watch = watch

    def roll_out(
        self,
        service: str,
        *,
        image: str,
        env: dict[str, str],
        build_id: str | None,
        emit: Emit,
        placement: Placement,
        flags: Flags | None = None,
    ) -> Outcome:
        """Deploy `image` with the stored service's template (or a default one) and the flags."""
        existing = self._store.find_service(service)
        base = (
            existing.spec
            if existing is not None
            else spec.default_service(service, image=image).to_manifest()
        )
        # Re-validated: the stored spec plus CLI flags must still be a valid Service.
        ks = spec.parse_service(edit_template(base, env=env, flags=flags), require_image=False)
        return self.apply(ks, image=image, build_id=build_id, emit=emit, placement=placement)

    def apply(
        self,
        ks: spec.KService,
        *,
        image: str,
        build_id: str | None,
        emit: Emit,
        placement: Placement,
    ) -> Outcome:
        """Create the revision if the template changed, place it, and wait until it is ready."""
        service = ks.name
        pinned = self._pin_secrets(ks.with_image(image))
        digest = spec.template_hash(pinned.template)
        existing = self._store.find_service(service)
        previous = self._store.list_revisions(service) if existing else []
        serving = _serving(existing, previous)
        placed = _placed(pinned, placement, previous=previous)
        # Before anything is written: the tags too, which point at the revision once it exists.
        refuse_shared_hosts(
            placed, services=self._store.list_services(), domain=self._settings.domain,
            tags=placement.tags,
        )  # fmt: skip
        self._store.put_service(service, spec=placed)
        latest = previous[-1] if previous else None
        if latest is not None and latest.template_hash == digest and latest.status != "Failed":
            return self._unchanged(latest, emit=emit, placement=placement)
        rev = self._store.create_revision(
            service, image=image, template=_template_of(pinned), template_hash=digest,
            build_id=build_id,
        )  # fmt: skip
        get_log(service=service, revision=rev.name, build=build_id).info(
            "revision_created", image=image
        )
        emit({"event": "revision", "revision": rev.name, "status": "Pending"})
        return self._place_new(rev, emit=emit, placement=placement, serving=serving)

    def _unchanged(self, latest: Revision, *, emit: Emit, placement: Placement) -> Outcome:
        """The template did not change: no new revision; the tags (and traffic) still move."""
        service = latest.service
        emit(stage(f"No change: {latest.name} already runs this"))
        if placement.tags or placement.promotes:
            self._edits.retag(
                service, revision=latest.name, tags=placement.tags, promote=placement.promotes
            )
        self._reconciler.wake()
        return self._published_outcome(latest, created=False)

    def _outcome(self, rev: Revision, *, created: bool) -> Outcome:
        reach = self._urls.of_revision(rev.service, rev.name)
        return Outcome(
            service=rev.service, revision=rev, created=created, urls=list(reach.urls),
            percent=reach.percent, unpublished=reach.unpublished,
        )  # fmt: skip

    def _place_new(
        self, rev: Revision, *, emit: Emit, placement: Placement, serving: str
    ) -> Outcome:
        service = rev.service
        started = time.monotonic()
        before = self._store.get_service(service)
        if placement.tags:
            # Tags point at the revision from the start, so that it is routed (and keeps its
            # instance) the moment it turns ready; its tag URLs answer 503 until then.
            self._edits.retag(service, revision=rev.name, tags=placement.tags, promote=False)
        self._reconciler.wake()
        rev = self._await_settled(rev, emit=emit)
        if rev.status == "Failed":
            if placement.tags:
                self._edits.put(before, traffic.entries_of(before.spec))
            keeps = f"{serving} keeps serving" if serving else "no revision serves yet"
            raise RevisionFailed(
                f"revision {rev.name} failed ({rev.reason}): {rev.message}\n"
                f"Traffic unchanged: {keeps}.",
                reason=rev.reason,
            )
        lap = _Laps(emit, started=started)
        lap("instance")  # created until Ready: an instance started and passed its probe
        now = traffic.entries_of(self._store.get_service(service).spec)
        if placement.promotes and not traffic.follows_latest(now):
            self._edits.retag(service, revision=rev.name, tags=placement.tags, promote=True)
        self._check_routed(rev.name)
        lap("route")
        self._garbage.collect(service)
        lap("cleanup")
        outcome = self._published_outcome(rev, created=True)
        seconds = round(time.monotonic() - started, 1)
        emit(events.ready(rev.name, seconds=seconds, urls=outcome.urls, percent=outcome.percent))
        return outcome

    def _published_outcome(self, rev: Revision, *, created: bool) -> Outcome:
        """The outcome once the URLs that should reach the revision are published, or after
        PUBLISH_TIMEOUT_S with those that are. On the embedded engine at once; Knative's Route
        publishes a new tag's URL in its status a moment after the revision turned Ready, and a
        deploy that printed "no URL of its own" for a tagged revision would be wrong."""
        deadline = time.monotonic() + PUBLISH_TIMEOUT_S
        outcome = self._outcome(rev, created=created)
        while outcome.unpublished and time.monotonic() < deadline:
            self._reconciler.wait_for_pass(timeout_s=max(0.0, deadline - time.monotonic()))
            outcome = self._outcome(rev, created=created)
        return outcome

    def _check_routed(self, revision: str) -> None:
        """Fail, saying why, unless the data plane now routes to the revision as asked.

        The pass that marked it Ready also moved the route; one more pass proves it applied. A
        pass that cannot finish (HAProxy refused the config, the engine is down) or a route the
        data plane left out (`reconcile.rejections`) means the URL does not answer yet, so
        "ready" would be a lie."""
        if not self._reconciler.wait_for_pass(timeout_s=ROUTE_TIMEOUT_S):
            raise RevisionFailed(
                f"revision {revision} is ready and has its traffic, but the data plane did not "
                f"apply its route within {ROUTE_TIMEOUT_S}s, so its URL may not answer yet: the "
                "control plane's log says why (event reconcile_failed)",
                reason=ROUTE_NOT_APPLIED,
            )
        rev = self._store.get_revision(revision)
        if rev.reason == rejections.REASON:
            raise RevisionFailed(
                f"revision {revision} is ready, but its route was not applied: {rev.message}",
                reason=rejections.REASON,
            )

    def _pin_secrets(self, ks: spec.KService) -> spec.KService:
        """Record the current version of every secret the template uses, in the template:
        a new secret version then means a new revision, and restarts keep the same values."""
        manifest = ks.to_manifest()
        template = manifest["spec"]["template"]
        annotations = template.setdefault("metadata", {}).setdefault("annotations", {})
        used = sorted(secret_names(template))
        annotations.pop(SECRET_VERSIONS_ANNOTATION, None)
        if used:
            if self._secrets is None:
                raise InvalidInput("this Slipway has no secret store configured")
            versions = {name: self._secrets.latest(name) for name in used}
            for e in template["spec"]["containers"][0].get("env") or []:
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref:  # fail now, not when an instance starts
                    self._secrets.value(ref["name"], ref["key"], versions[ref["name"]])
            annotations[SECRET_VERSIONS_ANNOTATION] = ",".join(
                f"{name}={version}" for name, version in versions.items()
            )
        return spec.parse_service(manifest, require_image=False)

    def _await_settled(self, pending: Revision, *, emit: Emit) -> Revision:
        """The revision once the reconciler marked it Ready or Failed; meanwhile, every few
        seconds, a progress event: how long, which instance, its last log line."""
        started = time.monotonic()
        deadline = started + self._settings.readiness_timeout_s + 30
        port = config_of(pending.template, image=pending.image).port
        say_at = started + PROGRESS_EVERY_S
        while True:
            rev = self._store.get_revision(pending.name)
            now = time.monotonic()
            if rev.status != "Pending" or now > deadline:
                return rev
            if now >= say_at:
                seen = self._watch.sight(service=rev.service, revision=rev.name)
                emit(events.progress(
                    rev.name, seconds=now - started, instance=seen.instance, port=port,
                    last_line=seen.last_line,
                ))  # fmt: skip
                say_at = now + PROGRESS_EVERY_S
            if now - started < NUDGE_FOR_S:
                # The pass after the one that started the instance probes it: asked for now,
                # not after the reconciler's own interval (0.2 s), it finds a fast app ready.
                self._reconciler.wake()
                time.sleep(POLL_S)
            else:
                time.sleep(POLL_SLOW_S)


class _Laps:
    """Emits a `timing` event per rollout step, each from the end of the one before."""

    def __init__(self, emit: Emit, *, started: float) -> None:
        self._emit = emit
        self._last = started

    def __call__(self, step: str) -> None:
        now = time.monotonic()
        self._emit(events.timing(step, seconds=now - self._last))
        self._last = now


def _placed(
    pinned: spec.KService, placement: Placement, *, previous: list[Revision]
) -> dict[str, Any]:
    """The manifest to store. A preview must not become "the latest ready revision" that takes
    the traffic: what serves now is pinned by name, as `gcloud run deploy --no-traffic` does."""
    manifest = pinned.to_manifest()
    if placement.traffic != "none":
        return manifest
    pinned_entries = traffic.pin_latest(
        traffic.entries_of(manifest), latest_ready=latest_ready(previous)
    )
    return traffic.with_entries(manifest, pinned_entries)


def _template_of(pinned: spec.KService) -> dict[str, Any]:
    """The revision's template snapshot: revisions are named by Slipway, not the document."""
    template: dict[str, Any] = copy.deepcopy(pinned.to_manifest()["spec"]["template"])
    template.get("metadata", {}).pop("name", None)
    return template


def _serving(service: Service | None, revisions: list[Revision]) -> str:
    if service is None:
        return ""
    targets = [t for t in resolve_traffic(service, revisions) if t.percent > 0]
    return ", ".join(f"{t.revision} ({t.percent}%)" for t in targets)
