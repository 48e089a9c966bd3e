"""`/v1/secrets`: versioned secrets that revisions read as env vars. Values go in, never out.

A secret is read when an instance starts, not when its revision is made: deleting one that a
serving revision reads leaves that revision unable to start another instance (a scale-up, a
restart, a crash). So `DELETE` is refused (409, naming those revisions) unless `?force=true`,
and a forced delete answers with the revisions it breaks.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict

from pipeline.api.dependencies import ADMIN, PlatformDep, body_described
from pipeline.core.errors import Conflict, NotFound
from pipeline.core.logs import get as get_log
from pipeline.core.records import Snapshot
from pipeline.core.revisions import config_of
from pipeline.engines.base import Instance
from pipeline.reconcile.routing import routed_revisions

SecretName = Annotated[str, Path(description="The secret's name, as services refer to it.")]

router = APIRouter(prefix="/v1/secrets", tags=["secrets"], dependencies=ADMIN)


class SecretBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: dict[str, str]


def readers(snapshot: Snapshot, instances: list[Instance], secret: str) -> dict[str, list[str]]:
    """Pure: the revisions that read `secret` and serve (traffic, a tag URL or an instance),
    each with the env vars it fills from it."""
    live = routed_revisions(snapshot) | {i.revision for i in instances}
    found: dict[str, list[str]] = {}
    for rev in sorted(snapshot.revisions, key=lambda r: r.name):
        if rev.name in live:
            refs = config_of(rev.template, image=rev.image).secret_env
            env = [var for var, name, _key, _version in refs if name == secret]
            if env:
                found[rev.name] = env
    return found


def in_use(secret: str, found: dict[str, list[str]]) -> str:
    """The refusal: which revisions break, and the two ways on."""
    listed = "; ".join(f"{rev} (env {', '.join(env)})" for rev, env in found.items())
    return (
        f"secret {secret!r} is read by revisions that serve: {listed}. Without it they cannot "
        "start another instance (a scale-up, a restart, a crash). Deploy their services without "
        f"it first (`slipway deploy SERVICE --remove-env VAR`), or delete it anyway with "
        f"`slipway secrets delete {secret} --force`"
    )


@router.get("")
def list_secrets(platform: PlatformDep) -> list[dict[str, Any]]:
    """Names, versions and keys; never values."""
    return [
        {"name": i.name, "version": i.version, "keys": list(i.keys)}
        for i in platform.secrets.list()
    ]


@router.put(
    "/{name}",
    openapi_extra=body_described("The secret's keys and values; a new version replaces them all."),
)
def put_secret(name: SecretName, body: SecretBody, platform: PlatformDep) -> dict[str, Any]:
    """A new version of the secret; revisions created from now on use it."""
    version = platform.secrets.put(name, body.data)
    get_log(component="api").info(
        "secret_stored", secret=name, version=version, keys=sorted(body.data)
    )
    return {"name": name, "version": version, "keys": sorted(body.data)}


@router.delete("/{name}")
def delete_secret(
    name: SecretName,
    platform: PlatformDep,
    force: Annotated[
        bool, Query(description="Delete even while services still read the secret.")
    ] = False,
) -> dict[str, Any]:
    """Refused (409) while a serving revision reads it, unless `force`; `breaks` names the
    revisions that can no longer start an instance."""
    if not platform.secrets.versions(name):
        raise NotFound(f"secret {name!r} does not exist")
    found = readers(platform.store.snapshot(), platform.engine.list_instances(), name)
    if found and not force:
        raise Conflict(in_use(name, found))
    platform.secrets.delete(name)
    if found:
        get_log(component="api").warning("secret_deleted_in_use", secret=name, breaks=list(found))
    return {"deleted": name, "breaks": list(found)}
