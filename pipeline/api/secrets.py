"""`/v1/secrets`: versioned secrets that revisions read as env vars. Values go in, never out."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from pipeline.api.dependencies import ADMIN, PlatformDep
from pipeline.core.logs import get as get_log

router = APIRouter(prefix="/v1/secrets", tags=["secrets"], dependencies=ADMIN)


class SecretBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: dict[str, str]


@router.get("")
def list_secrets(platform: PlatformDep) -> list[dict[str, Any]]:
    """Names, versions and keys; never values."""
    return [
        {"name": i.name, "version": i.version, "keys": list(i.keys)}
        for i in platform.secrets.list()
    ]


@router.put("/{name}")
def put_secret(name: str, body: SecretBody, platform: PlatformDep) -> dict[str, Any]:
    """A new version of the secret; revisions created from now on use it."""
    version = platform.secrets.put(name, body.data)
    get_log(component="api").info(
        "secret_stored", secret=name, version=version, keys=sorted(body.data)
    )
    return {"name": name, "version": version, "keys": sorted(body.data)}


@router.delete("/{name}")
def delete_secret(name: str, platform: PlatformDep) -> dict[str, str]:
    platform.secrets.delete(name)
    return {"deleted": name}
