"""`services delete`: the service and everything Slipway keeps for it, in one call.

The desired state goes first, in one transaction (service, revisions), then the build records,
so the store never holds half a service; the reconciler then stops its instances. What is left
is cleaned step by step, each step on its own: the git repository (a rejected first push leaves
one with no service), the build logs and stored sources, the images in Slipway's registry, the
local Docker images tagged for it and pack's cache volumes. A step that fails is logged and
reported, and the others still run; deleting again retries what is left. Webhook delivery ids and
`deployed_refs` stay: they are replay protection, and a service of the same name made later must
not take an old delivery again.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors

from pipeline.app.platform import Platform
from pipeline.build.registry import RegistryClient, parse
from pipeline.core import names
from pipeline.core.errors import InvalidInput, NotFound, SlipwayError
from pipeline.core.logs import get as get_log
from pipeline.engines.dockerclient import connect as docker_connect

# How long, past the grace period, the delete waits for the reconciler to remove the service's
# instances: their images cannot be removed from Docker while a container still uses them.
STOP_WAIT_S = 30.0


@dataclass(kw_only=True)
class Removal:
    """What `services delete` removed, and the steps that failed (with why)."""

    service: str
    removed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def view(self) -> dict[str, object]:
        return {"deleted": self.service, "removed": self.removed, "failed": self.failed}


def remove_service(platform: Platform, name: str) -> Removal:
    """Delete `name` and what is kept for it; NotFound only when nothing at all is left."""
    store = platform.store
    found = store.find_service(name) is not None
    if not found:
        # Leftovers are looked up on disk by this name: only a name a service could have. A
        # stored service is deleted whatever its name, also one written before a rule that now
        # refuses it (`t--web`), or it could never go.
        names.validate_service_name(name)
    repo = _repo_path(platform, name)
    builds = store.list_builds(service=name, limit=None)
    if not found and not builds and not (repo and repo.exists()):
        raise NotFound(f"service {name!r} not found: nothing to delete")
    done = Removal(service=name)
    images = [r.image for r in store.list_revisions(name)] if found else []
    if found:
        store.delete_service(name)
        done.removed.append("service and its revisions")
        platform.reconciler.wake()
    build_ids = store.delete_builds(name)
    if build_ids:
        done.removed.append(f"{len(build_ids)} build record(s)")
    if found:
        _wait_for_instances_gone(platform, name)
    steps: list[tuple[str, Callable[[], list[str]]]] = [
        ("git repository", lambda: _remove_repo(platform, name)),
        ("build logs and sources", lambda: _remove_build_files(platform, build_ids)),
        ("registry images", lambda: _remove_registry_images(platform, name, images)),
    ]
    if platform.settings.engine != "knative":  # builds and instances use the local engine
        steps.append(("local images and build caches", lambda: _remove_local(platform, name)))
    log = get_log(component="api", service=name)
    for what, step in steps:
        try:
            done.removed += step()
        except (SlipwayError, OSError, docker.errors.DockerException) as e:
            reason = e.message if isinstance(e, SlipwayError) else f"{type(e).__name__}: {e}"
            done.failed.append(f"{what}: {reason}")
            log.warning("service_cleanup_failed", step=what, error=reason)
    log.info("service_deleted", removed=done.removed, failed=done.failed)
    return done


def _wait_for_instances_gone(platform: Platform, name: str) -> None:
    """Until the reconciler has stopped and removed the service's instances (they drain for the
    grace period first), or a bound: the images they run cannot be removed before."""
    deadline = time.monotonic() + platform.settings.grace_period_s + STOP_WAIT_S
    platform.reconciler.wait_for_pass(timeout_s=STOP_WAIT_S)
    while time.monotonic() < deadline:
        if not any(i.service == name for i in platform.engine.list_instances()):
            return
        platform.reconciler.wake()
        time.sleep(0.5)


def _repo_path(platform: Platform, name: str) -> Path | None:
    """The repository a push would have made; None for a name no push accepts (no repo)."""
    try:
        return platform.repos.path(name)
    except InvalidInput:
        return None


def _remove_repo(platform: Platform, name: str) -> list[str]:
    path = _repo_path(platform, name)
    if path is None or not path.exists():
        return []
    shutil.rmtree(path)
    return [f"git repository {path.name}"]


def _remove_build_files(platform: Platform, build_ids: list[str]) -> list[str]:
    settings = platform.settings
    gone = 0
    for build_id in build_ids:
        for path in (settings.builds_dir / f"{build_id}.log",
                     settings.sources_dir / f"{build_id}.tar.gz"):  # fmt: skip
            if path.exists():
                path.unlink()
                gone += 1
    return [f"{gone} build log and source file(s)"] if gone else []


def _remove_registry_images(platform: Platform, name: str, images: list[str]) -> list[str]:
    """Every manifest in the service's own repository of Slipway's registry (never an image a
    user deployed by reference from elsewhere, which is theirs)."""
    repository = names.image_repository(platform.settings.registry, name)
    pinned = {image for image in images if image.startswith(f"{repository}@")}
    with RegistryClient(insecure=platform.settings.insecure_registries) as registry:
        pinned |= {registry.resolve(f"{repository}:{tag}") for tag in registry.tags(repository)}
        deleted = [p for p in sorted(pinned) if registry.delete(p)]
    return [f"registry image {parse(p).digest[:19]}" for p in deleted]


def _remove_local(platform: Platform, name: str) -> list[str]:
    client = docker_connect(timeout_s=60)
    try:
        return _remove_local_images(client, names.image_repository(
            platform.settings.registry, name
        )) + _remove_cache_volumes(client, name)  # fmt: skip
    finally:
        client.close()


def _remove_local_images(client: docker.DockerClient, repository: str) -> list[str]:
    """Each reference to the repository (build tags, pulled digests): Docker drops an image
    once no reference is left, and keeps one another name still holds."""
    refs = [
        ref
        for image in client.images.list()
        for ref in [*(image.attrs.get("RepoTags") or []), *(image.attrs.get("RepoDigests") or [])]
        if ref.startswith((f"{repository}:", f"{repository}@"))
    ]
    for ref in refs:
        try:
            client.images.remove(ref)
        except docker.errors.ImageNotFound:
            continue  # gone with an earlier reference to the same image
    return [f"local image {ref}" for ref in refs]


def _remove_cache_volumes(client: docker.DockerClient, name: str) -> list[str]:
    """pack names a cache volume after the image's path and tag (`pack-cache-<svc>_latest-…`);
    a service name has no `_`, so the prefix is the service's alone."""
    mine = re.compile(rf"^pack-cache-{re.escape(name)}_latest-")
    volumes = [v for v in client.volumes.list(filters={"name": "pack-cache-"})
               if mine.match(v.name or "")]  # fmt: skip
    for volume in volumes:
        volume.remove(force=True)
    return [f"build cache volume {v.name}" for v in volumes]
