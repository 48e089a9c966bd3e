"""Deployments: source, image or Service YAML in; a ready revision (or a clear failure) out.

This is the push path's spine: build → push → revision → wait for Ready → traffic moves. It
writes desired state and lets the reconciler converge; it only waits and reports. Deploys to one
service are serialised (a second one waits and says so), so revision numbers only grow and no
revision is lost. A failure anywhere leaves the serving revision serving.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline import spec
from pipeline.build import gitsources, sources
from pipeline.build import templates as buildtemplates
from pipeline.build.builders import (
    Builder,
    BuildRequest,
    BuildSettings,
    Kind,
    choose_builder,
    service_settings,
)
from pipeline.build.masking import mask
from pipeline.build.queue import BuildQueue
from pipeline.build.registry import RegistryClient, unused_images
from pipeline.core import names, traffic
from pipeline.core.errors import (
    BuildCancelled,
    Conflict,
    InvalidInput,
    InvalidSpec,
    RevisionFailed,
    SlipwayError,
)
from pipeline.core.logs import get as get_log
from pipeline.core.records import Revision, Service
from pipeline.core.revisions import SECRET_VERSIONS_ANNOTATION, secret_names
from pipeline.core.settings import Settings
from pipeline.identity import access
from pipeline.reconcile.routing import latest_ready, resolve_traffic
from pipeline.store.secrets import SecretStore
from pipeline.store.state import Store

Emit = Callable[[dict[str, Any]], None]


class Waker(Protocol):
    """What the deployer needs from the reconciler."""

    def wake(self) -> None: ...

    def hold(self, revisions: set[str]) -> None: ...

    def release(self, revisions: set[str]) -> None: ...

    def wait_ready(self, revisions: set[str], *, timeout_s: float) -> set[str]: ...

    def wait_for_pass(self, *, timeout_s: float = 30.0) -> bool: ...


@dataclass(frozen=True, kw_only=True)
class Commit:
    """A git commit being deployed: from a push, a webhook or `deploy --git`."""

    sha: str  # 40 hex
    branch: str = ""  # the pushed branch; "" for a pull request head
    preview_tag: str = ""  # "" deploys to the service URL; else 0% traffic under this tag


@dataclass(frozen=True, kw_only=True)
class Flags:
    """Deploy flags that edit the revision template; any change makes a new revision."""

    remove_env: tuple[str, ...] = ()
    secret_env: tuple[tuple[str, str, str], ...] = ()  # (ENV, secret, key)
    concurrency: int | None = None  # containerConcurrency
    timeout_s: int | None = None  # timeoutSeconds
    min_scale: int | None = None  # autoscaling.knative.dev/min-scale
    max_scale: int | None = None  # autoscaling.knative.dev/max-scale
    # --[no-]allow-unauthenticated: a Service annotation (identity.access), not a revision change.
    private: bool | None = None


def edit_template(
    manifest: dict[str, Any], *, env: dict[str, str], flags: Flags | None
) -> dict[str, Any]:
    """The service manifest with `--env`, `--remove-env`, `--concurrency`, `--timeout` applied."""
    out = copy.deepcopy(manifest)
    template_spec = out["spec"]["template"]["spec"]
    container = template_spec["containers"][0]
    merged = {
        e["name"]: e.get("value") or "" for e in container.get("env") or [] if "valueFrom" not in e
    }
    merged.update(env)
    for name in flags.remove_env if flags else ():
        merged.pop(name, None)
    refs = {e["name"]: e["valueFrom"] for e in container.get("env") or [] if e.get("valueFrom")}
    for literal in env:  # an explicit --env replaces a secret reference of that name
        refs.pop(literal, None)
    for env_name, secret, key in flags.secret_env if flags else ():
        merged.pop(env_name, None)
        refs[env_name] = {"secretKeyRef": {"name": secret, "key": key}}
    for name in flags.remove_env if flags else ():
        refs.pop(name, None)
    container["env"] = [{"name": k, "value": v} for k, v in merged.items() if k not in refs]
    container["env"] += [{"name": k, "valueFrom": v} for k, v in refs.items()]
    if flags and flags.concurrency is not None:
        template_spec["containerConcurrency"] = flags.concurrency
    if flags and flags.timeout_s is not None:
        template_spec["timeoutSeconds"] = flags.timeout_s
    if flags:
        template = out["spec"]["template"]
        annotations = template.setdefault("metadata", {}).setdefault("annotations", {})
        for key, value in (("min-scale", flags.min_scale), ("max-scale", flags.max_scale)):
            if value is not None:
                annotations[f"autoscaling.knative.dev/{key}"] = str(value)
    if flags and flags.private is not None:
        out = access.edited(out, private=flags.private)
    return out


@dataclass(frozen=True, kw_only=True)
class Placement:
    """Where a new revision goes: the tags that point at it, and what happens to the traffic.

    traffic: "promote" — once ready it takes all traffic (deploys, deploy-branch pushes);
    "none" — what serves now is pinned by name and the revision gets 0% (previews,
    `--no-traffic`); "as-is" — the document's own traffic block decides (`services replace`).
    """

    tags: tuple[str, ...] = ()
    traffic: str = "promote"

    @classmethod
    def of(cls, commit: Commit | None, *, tag: str = "", no_traffic: bool = False) -> Placement:
        tags = [names.commit_tag(commit.sha)] if commit else []
        if commit and commit.preview_tag:
            tags.append(commit.preview_tag)
        if tag:
            tags.append(tag)
        pinned = no_traffic or bool(commit and commit.preview_tag)
        return cls(tags=tuple(tags), traffic="none" if pinned else "promote")


@dataclass(frozen=True, kw_only=True)
class Outcome:
    service: str
    revision: Revision
    created: bool  # False when the template did not change (no new revision, as in Knative)
    urls: list[str] = field(default_factory=list)


class Deployer:
    def __init__(
        self,
        *,
        store: Store,
        builders: Callable[[Kind], Builder],
        registry: RegistryClient,
        reconciler: Waker,
        settings: Settings,
        secrets: SecretStore | None = None,
        published_urls: Callable[[str], list[str]] | None = None,
    ) -> None:
        self._store = store
        self._builders = builders
        self.builds = BuildQueue(
            concurrency=settings.build_concurrency, timeout_s=settings.build_timeout_s
        )
        self._templates = buildtemplates.load(settings.buildtemplates_dir)
        self._registry = registry
        self._reconciler = reconciler
        self._settings = settings
        self._secrets = secrets
        # Knative: the URLs the cluster published (status.url, status.traffic[].url).
        self._published_urls = published_urls
        self.domain = settings.domain
        self.ingress_port = settings.ingress_port
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # entry points -------------------------------------------------------------------------------
    def deploy_source(
        self,
        service: str,
        *,
        source: bytes,
        env: dict[str, str],
        emit: Emit,
        commit: Commit | None = None,
        placement: Placement | None = None,
        flags: Flags | None = None,
        build: BuildSettings | None = None,
    ) -> Outcome:
        names.validate_service_name(service)
        placement = placement or Placement.of(commit)
        for tag in placement.tags:
            names.validate_tag(tag, service=service)  # before the build, not after
        info = sources.inspect(source)
        existing = self._store.find_service(service)
        metadata = (existing.spec.get("metadata") or {}) if existing else {}
        annotations = metadata.get("annotations") or {}
        settings = (build or BuildSettings()).over(service_settings(annotations))
        choice = choose_builder(info.files, settings=settings, templates=self._templates)
        with self._serialised(service, emit):
            record = self._store.create_build(service, builder=choice.name, status="queued")
            log = get_log(service=service, build=record.id)
            log_path = self._settings.builds_dir / f"{record.id}.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            (self._settings.sources_dir).mkdir(parents=True, exist_ok=True)
            (self._settings.sources_dir / f"{record.id}.tar.gz").write_bytes(source)
            emit({"event": "build", "build": record.id, "builder": choice.name})
            secrets = [v for _, v in settings.secrets]
            started = time.monotonic()
            with log_path.open("a", encoding="utf-8") as logfile:

                def on_line(line: str) -> None:
                    line = mask(line, secrets)
                    logfile.write(line + "\n")
                    logfile.flush()
                    emit({"event": "log", "line": line})

                on_line(f"-----> Builder: {choice.name} ({choice.reason})")
                try:
                    with self.builds.slot(
                        record.id,
                        on_queued=lambda ahead: on_line(
                            f"-----> Queued: {ahead} build(s) ahead "
                            f"(at most {self.builds.concurrency} at once)"
                        ),
                        on_start=lambda: self._store.start_build(record.id),
                    ) as control:
                        result = self._builders(choice.kind).build(
                            BuildRequest(
                                build_id=record.id,
                                source=source,
                                info=info,
                                repository=names.image_repository(self._settings.registry, service),
                                choice=choice,
                                settings=settings,
                            ),
                            on_line=on_line,
                            control=control,
                        )
                        # Recorded while the slot is held: the next build starts after this.
                        self._store.finish_build(record.id, image=result.image)
                except SlipwayError as e:
                    message = mask(e.message, secrets)
                    status = "cancelled" if isinstance(e, BuildCancelled) else "failed"
                    on_line(f"-----> Build {status}: {message}")
                    self._store.finish_build(record.id, error=message, status=status)
                    log.warning("build_failed", error=message)
                    raise
                except BaseException:
                    self._store.finish_build(record.id, error="internal error during the build")
                    raise
            emit(
                {
                    "event": "stage",
                    "text": f"Built and pushed {result.image}",
                    "seconds": round(time.monotonic() - started, 1),
                }
            )
            log.info("build_succeeded", image=result.image)
            return self._roll_out(
                service, image=result.image, env=env, build_id=record.id, emit=emit,
                placement=placement, flags=flags,
            )  # fmt: skip

    def cancel_build(self, build_id: str) -> None:
        """Stop a queued or running build; it fails with "cancelled" and no revision is made."""
        build = self._store.get_build(build_id)
        if not build.unfinished:
            raise Conflict(f"build {build_id} already {build.status}: nothing to cancel")
        if not self.builds.cancel(build_id):
            # Not in this process (it died with a previous one): just record the end.
            self._store.finish_build(build_id, error="build cancelled", status="cancelled")
        deadline = time.monotonic() + 20  # the kill escalates to SIGKILL after 5 s
        while self._store.get_build(build_id).unfinished and time.monotonic() < deadline:
            time.sleep(0.1)

    def deploy_git(
        self,
        service: str,
        *,
        url: str,
        ref: str,
        env: dict[str, str],
        emit: Emit,
        build: BuildSettings | None = None,
    ) -> Outcome:
        """Clone `url` at `ref` and deploy it like a push of that commit to the deploy branch."""
        names.validate_service_name(service)
        sha = gitsources.resolve_ref(url, ref, schemes=self._settings.git_schemes)
        emit({"event": "stage", "text": f"Cloning {url} at {sha[:7]} ({ref})", "seconds": 0})
        source = gitsources.clone_at(url, sha, schemes=self._settings.git_schemes)
        return self.deploy_source(
            service,
            source=source,
            env=env,
            emit=emit,
            commit=Commit(sha=sha, branch=ref),
            build=build,
        )

    def deploy_image(
        self,
        service: str,
        *,
        image: str,
        env: dict[str, str],
        emit: Emit,
        placement: Placement | None = None,
        flags: Flags | None = None,
    ) -> Outcome:
        names.validate_service_name(service)
        placement = placement or Placement()
        for tag in placement.tags:
            names.validate_tag(tag, service=service)
        pinned = self._registry.resolve(image)
        emit({"event": "stage", "text": f"Resolved {image} to {pinned}", "seconds": 0})
        with self._serialised(service, emit):
            return self._roll_out(
                service, image=pinned, env=env, build_id=None, emit=emit, placement=placement,
                flags=flags,
            )  # fmt: skip

    def replace(
        self, document: str | bytes | dict[str, Any], *, name: str | None = None, emit: Emit
    ) -> Outcome:
        ks = spec.parse_service(document, require_image=True)
        if name is not None and ks.name != name:
            raise InvalidSpec(
                f"the document names service {ks.name!r} but was sent to {name!r}: "
                "make metadata.name match",
                path="metadata.name",
            )
        pinned = self._registry.resolve(ks.container.image or "")
        with self._serialised(ks.name, emit):
            return self._apply(
                ks, image=pinned, build_id=None, emit=emit, placement=Placement(traffic="as-is")
            )

    # internals ----------------------------------------------------------------------------------
    def _serialised(self, service: str, emit: Emit) -> _Held:
        with self._locks_guard:
            lock = self._locks.setdefault(service, threading.Lock())
        waiting = f"Waiting for the deploy to {service} in progress"
        return _Held(lock, on_wait=lambda: emit({"event": "stage", "text": waiting, "seconds": 0}))

    def _roll_out(
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
        existing = self._store.find_service(service)
        base = (
            existing.spec
            if existing is not None
            else spec.default_service(service, image=image).to_manifest()
        )
        # Re-validated: the stored spec plus CLI flags must still be a valid Service.
        ks = spec.parse_service(edit_template(base, env=env, flags=flags), require_image=False)
        return self._apply(ks, image=image, build_id=build_id, emit=emit, placement=placement)

    def _apply(
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
        template = copy.deepcopy(pinned.to_manifest()["spec"]["template"])
        template.get("metadata", {}).pop("name", None)
        digest = spec.template_hash(pinned.template)
        existing = self._store.find_service(service)
        previous = self._store.list_revisions(service) if existing else []
        serving = _serving(existing, previous)
        manifest = pinned.to_manifest()
        if placement.traffic == "none":
            # A preview must not become "the latest ready revision" that takes the traffic:
            # pin what serves now by name, as `gcloud run deploy --no-traffic` does.
            manifest["spec"]["traffic"] = traffic.pin_latest(
                manifest["spec"].get("traffic") or [], latest_ready=latest_ready(previous)
            )
        self._store.put_service(service, spec=manifest)
        latest = previous[-1] if previous else None
        if latest is not None and latest.template_hash == digest and latest.status != "Failed":
            emit(
                {
                    "event": "stage",
                    "text": f"No change: {latest.name} already runs this",
                    "seconds": 0,
                }
            )
            if placement.tags or placement.traffic == "promote":
                self._retag(
                    service, revision=latest.name, tags=placement.tags,
                    promote=placement.traffic == "promote",
                )  # fmt: skip
            self._reconciler.wake()
            return Outcome(
                service=service, revision=latest, created=False, urls=self._urls(service)
            )
        rev = self._store.create_revision(
            service, image=image, template=template, template_hash=digest, build_id=build_id
        )
        log = get_log(service=service, revision=rev.name, build=build_id)
        log.info("revision_created", image=image)
        emit({"event": "revision", "revision": rev.name, "status": "Pending"})
        started = time.monotonic()
        before = self._store.get_service(service)
        if placement.tags:
            # Tags point at the revision from the start, so that it is routed (and keeps its
            # instance) the moment it turns ready; its tag URLs answer 503 until then.
            self._retag(service, revision=rev.name, tags=placement.tags, promote=False)
        self._reconciler.wake()
        rev = self._await_settled(rev.name)
        if rev.status == "Failed":
            if placement.tags:
                self._put_traffic(before, before.spec["spec"].get("traffic") or [])
            keeps = f"{serving} keeps serving" if serving else "no revision serves yet"
            raise RevisionFailed(
                f"revision {rev.name} failed ({rev.reason}): {rev.message}\n"
                f"Traffic unchanged: {keeps}.",
                reason=rev.reason,
            )
        if placement.traffic == "promote" and not _follows_latest(self._store.get_service(service)):
            self._retag(service, revision=rev.name, tags=placement.tags, promote=True)
        # The pass that marked it Ready also moved the route; one more pass proves it applied.
        self._reconciler.wait_for_pass(timeout_s=30)
        self._collect_garbage(service)
        emit(
            {
                "event": "ready",
                "revision": rev.name,
                "seconds": round(time.monotonic() - started, 1),
                "urls": self._urls(service),
            }
        )
        return Outcome(service=service, revision=rev, created=True, urls=self._urls(service))

    def update_access(
        self,
        service: str,
        *,
        private: bool | None = None,
        add: tuple[str, ...] = (),
        remove: tuple[str, ...] = (),
    ) -> Service:
        """Make a service private or public and edit its invokers; never creates a revision.
        Serialised with deploys, so neither overwrites the other's edit."""
        with self._serialised(service, lambda _event: None):
            svc = self._store.get_service(service)
            manifest = access.edited(svc.spec, private=private, add=add, remove=remove)
            updated = self._store.put_service(service, spec=manifest)
        self._reconciler.wake()
        return updated

    def set_traffic(self, service: str, edit: traffic.Change) -> None:
        """Change the split or the tags; never creates a revision. Zero failed requests: any
        revision about to get traffic gets a ready instance first."""
        with self._serialised(service, lambda _e: None):
            svc = self._store.get_service(service)
            revisions = self._store.list_revisions(service)
            updated = traffic.change(
                svc.spec["spec"].get("traffic") or [], edit, revisions=revisions
            )
            self._switch(svc, updated, revisions)

    def rollback(self, service: str) -> str:
        """Send all traffic to the revision that served before the current one."""
        with self._serialised(service, lambda _e: None):
            svc = self._store.get_service(service)
            revisions = self._store.list_revisions(service)
            entries = svc.spec["spec"].get("traffic") or []
            target = traffic.previous_serving(entries, revisions=revisions)
            updated = traffic.change(
                entries, traffic.Change(to_revisions={target: 100}), revisions=revisions
            )
            self._switch(svc, updated, revisions)
        return target

    def _switch(
        self, svc: Service, updated: list[dict[str, Any]], revisions: list[Revision]
    ) -> None:
        probe = copy.deepcopy(svc.spec)
        probe["spec"]["traffic"] = updated
        # Validate first (percents, tags, host lengths): a bad edit changes nothing.
        spec.parse_service(probe, require_image=False)
        wanted = {t.revision for t in resolve_traffic(
            Service(name=svc.name, spec=probe, generation=svc.generation,
                    created_at=svc.created_at),
            revisions,
        )}  # fmt: skip
        self._reconciler.hold(wanted)
        try:
            late = self._reconciler.wait_ready(wanted, timeout_s=self._settings.readiness_timeout_s)
            if late:
                raise RevisionFailed(
                    f"{', '.join(sorted(late))} did not get a ready instance within "
                    f"{self._settings.readiness_timeout_s:.0f}s: traffic unchanged",
                    reason="NotReady",
                )
            self._put_traffic(svc, updated)
            self._reconciler.wait_for_pass(timeout_s=30)
        finally:
            self._reconciler.release(wanted)

    def remove_tag(self, service: str, tag: str) -> bool:
        """Drop a preview tag (deleted branch, closed pull request); False if it was not set."""
        with self._serialised(service, lambda _e: None):
            svc = self._store.get_service(service)
            before = svc.spec["spec"].get("traffic") or []
            after = traffic.without_tags(before, {tag})
            if after == before:
                return False
            self._put_traffic(svc, after)
        self._reconciler.wait_for_pass(timeout_s=30)  # the URL is gone when this returns
        return True

    def _retag(self, service: str, *, revision: str, tags: tuple[str, ...], promote: bool) -> None:
        """Point `tags` at `revision`; with `promote`, all traffic follows the latest."""
        svc = self._store.get_service(service)
        updated = traffic.retag(
            svc.spec["spec"].get("traffic") or [],
            revision=revision,
            tags=list(tags),
            promote=promote,
            keep_commit_tags=self._settings.commit_tags_kept,
        )
        self._put_traffic(svc, updated)

    def _put_traffic(self, svc: Service, targets: list[dict[str, Any]]) -> None:
        manifest = copy.deepcopy(svc.spec)
        manifest["spec"]["traffic"] = targets
        # Validated like any Service: percents, tag lengths, revision ownership.
        manifest = spec.parse_service(manifest, require_image=False).to_manifest()
        self._store.put_service(svc.name, spec=manifest)
        self._reconciler.wake()

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

    def _collect_garbage(self, service: str) -> None:
        svc = self._store.get_service(service)
        old = traffic.collectable(
            svc.spec["spec"].get("traffic") or [],
            revisions=self._store.list_revisions(service),
            keep=self._settings.revisions_kept,
        )
        if old:
            gone = [r for r in self._store.list_revisions(service) if r.name in old]
            self._store.delete_revisions(old)
            log = get_log(service=service)
            log.info("revisions_collected", revisions=old)
            self._reconciler.wake()
            self._delete_images(gone, log=log)

    def _delete_images(self, gone: list[Revision], *, log: Any) -> None:
        """Best effort: a registry that refuses costs disk space, never a deploy."""
        remaining = self._store.snapshot().revisions
        for image in unused_images(gone, remaining, registry=self._settings.registry):
            try:
                deleted = self._registry.delete(image)
            except SlipwayError as e:
                log.warning("image_not_deleted", image=image, error=e.message)
                continue
            log.info("image_deleted", image=image, found=deleted)

    def _await_settled(self, revision: str) -> Revision:
        deadline = time.monotonic() + self._settings.readiness_timeout_s + 30
        while True:
            rev = self._store.get_revision(revision)
            if rev.status != "Pending" or time.monotonic() > deadline:
                return rev
            time.sleep(0.1)

    def urls(self, service: str) -> list[str]:
        """The service URL first, then its tag URLs."""
        return self._urls(service)

    def _urls(self, service: str) -> list[str]:
        if self._published_urls is not None:
            return self._published_urls(service)
        svc = self._store.find_service(service)
        if svc is None:
            return []
        port = self._settings.ingress_port
        urls = [names.service_url(service, self._settings.domain, port)]
        for t in resolve_traffic(svc, self._store.list_revisions(service)):
            if t.tag:
                urls.append(names.tag_url(t.tag, service, self._settings.domain, port))
        return urls


def _follows_latest(service: Service) -> bool:
    entries = service.spec["spec"].get("traffic") or []
    return all(e.get("latestRevision") for e in entries if e.get("percent"))


def _serving(service: Service | None, revisions: list[Revision]) -> str:
    if service is None:
        return ""
    targets = [t for t in resolve_traffic(service, revisions) if t.percent > 0]
    return ", ".join(f"{t.revision} ({t.percent}%)" for t in targets)


class _Held:
    """A lock that reports when the caller has to wait for it."""

    def __init__(self, lock: threading.Lock, *, on_wait: Callable[[], None]) -> None:
        self._lock = lock
        self._on_wait = on_wait

    def __enter__(self) -> None:
        if not self._lock.acquire(blocking=False):
            self._on_wait()
            self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
