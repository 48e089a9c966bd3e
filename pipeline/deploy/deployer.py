"""Deployments: source, image or Service YAML in; a ready revision (or a clear failure) out.

The push path's spine, as one facade over its steps: build (`buildruns`) → manifest edits
(`manifests`) → revision, Ready, traffic (`rollout`) → garbage (`garbage`); and the edits that
make no revision (`edits`). Deploys and edits to one service are serialised (`locks`: a second
one waits and says so), so revision numbers only grow and no revision is lost. A failure
anywhere leaves the serving revision serving.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline import spec
from pipeline.build import gitsources
from pipeline.build.builders import Builder, BuildSettings, Kind
from pipeline.build.registry import RegistryClient
from pipeline.core import names, traffic
from pipeline.core.errors import InvalidSpec
from pipeline.core.records import Service
from pipeline.core.settings import Settings
from pipeline.deploy.buildruns import BuildRuns
from pipeline.deploy.edits import Edits
from pipeline.deploy.events import Emit, stage
from pipeline.deploy.garbage import Garbage
from pipeline.deploy.locks import ServiceLocks
from pipeline.deploy.manifests import Commit, Flags, Placement
from pipeline.deploy.rollout import Outcome, Rollout
from pipeline.deploy.urls import ServiceUrls
from pipeline.deploy.waits import InstanceWatch
from pipeline.deploy.waker import Waker
from pipeline.engines.logs import LogReader
from pipeline.store.secrets import SecretStore
from pipeline.store.state import Store


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
        logs: LogReader | None = None,
    ) -> None:
        self._registry = registry
        self._reconciler = reconciler
        self._git_schemes = settings.git_schemes
        self._locks = ServiceLocks()
        self._builds = BuildRuns(store=store, builders=builders, settings=settings)
        self._edits = Edits(store=store, reconciler=reconciler, settings=settings)
        # Knative: the URLs the cluster published (status.url, status.traffic[].url).
        self._urls = ServiceUrls(store=store, settings=settings, published=published_urls)
        self._rollout = Rollout(
            store=store, reconciler=reconciler, settings=settings, secrets=secrets,
            edits=self._edits, urls=self._urls, watch=InstanceWatch(reader=logs),
            garbage=Garbage(
                store=store, registry=registry, reconciler=reconciler, settings=settings
            ),
        )  # fmt: skip

    # deploys: each makes a revision when the template changed ----------------------------------
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
        placement = placement or Placement.of(commit)
        placement.check(service)
        plan = self._builds.plan(service, source=source, build=build)
        with self._locks.hold(service, emit):
            built = self._builds.run(service, plan, emit=emit)
            return self._rollout.roll_out(
                service, image=built.image, env=env, build_id=built.build_id, emit=emit,
                placement=placement, flags=flags,
            )  # fmt: skip

    def deploy_git(
        self,
        service: str,
        *,
        url: str,
        ref: str,
        env: dict[str, str],
        emit: Emit,
        build: BuildSettings | None = None,
        tag: str = "",
        no_traffic: bool = False,
        flags: Flags | None = None,
    ) -> Outcome:
        """Clone `url` at `ref` and deploy it like a push of that commit to the deploy branch;
        `tag`, `no_traffic` and `flags` act as they do on any other deploy."""
        names.validate_service_name(service)
        placement = Placement.of(None, tag=tag, no_traffic=no_traffic)
        placement.check(service)  # a bad tag is refused before the clone, not after the build
        sha = gitsources.resolve_ref(url, ref, schemes=self._git_schemes)
        emit(stage(f"Cloning {url} at {sha[:7]} ({ref})"))
        source = gitsources.clone_at(url, sha, schemes=self._git_schemes)
        commit = Commit(sha=sha, branch=ref)
        return self.deploy_source(
            service, source=source, env=env, emit=emit, commit=commit,
            placement=Placement.of(commit, tag=tag, no_traffic=no_traffic), flags=flags,
            build=build,
        )  # fmt: skip

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
        placement = placement or Placement()
        placement.check(service)
        pinned = self._registry.resolve(image)
        emit(stage(f"Resolved {image} to {pinned}"))
        with self._locks.hold(service, emit):
            return self._rollout.roll_out(
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
        with self._locks.hold(ks.name, emit):
            return self._rollout.apply(
                ks, image=pinned, build_id=None, emit=emit, placement=Placement(traffic="as-is")
            )

    def urls(self, service: str) -> list[str]:
        """The service URL first, then its tag URLs."""
        return self._urls(service)

    def cancel_build(self, build_id: str) -> None:
        """Stop a queued or running build; it fails with "cancelled" and no revision is made."""
        self._builds.cancel(build_id)

    # edits: never a new revision ----------------------------------------------------------------
    def set_traffic(self, service: str, edit: traffic.Change) -> None:
        """Change the split or the tags. Zero failed requests: any revision about to get
        traffic gets a ready instance first."""
        with self._locks.hold(service):
            self._edits.set_traffic(service, edit)

    def rollback(self, service: str) -> str:
        """Send all traffic to the revision that served before the current one."""
        with self._locks.hold(service):
            return self._edits.rollback(service)

    def remove_tag(self, service: str, tag: str) -> bool:
        """Drop a preview tag (deleted branch, closed pull request); False if it was not set."""
        with self._locks.hold(service):
            removed = self._edits.remove_tag(service, tag)
        if removed:
            self._reconciler.wait_for_pass(timeout_s=30)  # the URL is gone when this returns
        return removed

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
        with self._locks.hold(service):
            updated = self._edits.update_access(service, private=private, add=add, remove=remove)
        self._reconciler.wake()
        return updated
