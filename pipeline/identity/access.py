"""Who may call a service: the two annotations on the Knative Service, read and edited purely.

    metadata:
      annotations:
        slipway.dev/private: "true"                          # default: public
        slipway.dev/invokers: "service:caller,user:alice"    # members, comma-separated

They are Service-level annotations (not the revision template), so changing them never creates a
revision. The keys and their one parser are in `core.annotations`, which the Knative engine reads
too; here the data plane's side reads them leniently (an entry no token's `sub` could match is
skipped). `routing.build_plane` turns them into private routes and invoker pairs for the data
plane; `policy` gives the data plane the issuer and the keys HAProxy verifies with.
"""

from __future__ import annotations

import copy
from typing import Any

from pipeline.core.annotations import (
    INVOKERS_ANNOTATION,
    PRIVATE_ANNOTATION,
    parse_member,
    read_access,
)
from pipeline.dataplane.model import JwtPolicy
from pipeline.identity.keys import KeyStore


def _annotations(manifest: dict[str, Any]) -> dict[str, str]:
    annotations: dict[str, str] = (manifest.get("metadata") or {}).get("annotations") or {}
    return annotations


def is_private(manifest: dict[str, Any]) -> bool:
    return read_access(_annotations(manifest)).private


def invokers(manifest: dict[str, Any]) -> list[str]:
    """The valid members listed, in order, without duplicates; malformed entries are skipped
    (they could never match a token's `sub`)."""
    return list(read_access(_annotations(manifest)).invokers)


def edited(
    manifest: dict[str, Any],
    *,
    private: bool | None = None,
    add: tuple[str, ...] = (),
    remove: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The manifest with privacy set (None: unchanged) and members added or removed."""
    out = copy.deepcopy(manifest)
    annotations = out.setdefault("metadata", {}).setdefault("annotations", {})
    if private is not None:
        if private:
            annotations[PRIVATE_ANNOTATION] = "true"
        else:
            annotations.pop(PRIVATE_ANNOTATION, None)
    members = invokers(manifest)
    for member in add:
        if parse_member(member) not in members:
            members.append(member)
    members = [m for m in members if m not in remove]
    if members:
        annotations[INVOKERS_ANNOTATION] = ",".join(members)
    else:
        annotations.pop(INVOKERS_ANNOTATION, None)
    return out


def policy(keys: KeyStore, *, issuer: str) -> JwtPolicy:
    """Issuer and live keys for HAProxy; keys no token can still need are deleted first."""
    keys.prune()
    return JwtPolicy(issuer=issuer, keys=tuple((k.kid, k.public_path) for k in keys.live()))
