"""What one deploy asks of its Service manifest, and the pure edits that apply it.

The first step of every deploy: the stored Service (or a default one) plus the deploy's env and
flags become the manifest the rollout applies (`pipeline.deploy.rollout`). Values in, values out;
nothing here touches the store.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from pipeline.core import names
from pipeline.core.annotations import (
    LEGACY_AUTOSCALING,
    MAX_SCALE_ANNOTATION,
    MIN_SCALE_ANNOTATION,
)
from pipeline.identity import access


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
    min_scale: int | None = None  # MIN_SCALE_ANNOTATION
    max_scale: int | None = None  # MAX_SCALE_ANNOTATION
    port: int | None = None  # containerPort
    # None keeps the command (args) the service had; () clears it: the image's own applies.
    command: tuple[str, ...] | None = None
    args: tuple[str, ...] | None = None
    cpu: str | None = None  # resources.limits.cpu, a Kubernetes quantity
    memory: str | None = None  # resources.limits.memory
    # --[no-]allow-unauthenticated: a Service annotation (identity.access), not a revision change.
    private: bool | None = None


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

    @property
    def promotes(self) -> bool:
        return self.traffic == "promote"

    def check(self, service: str) -> None:
        """Refuse a bad service name or tag before any build starts, not after it."""
        names.validate_service_name(service)
        for tag in self.tags:
            names.validate_tag(tag, service=service)


def edit_template(
    manifest: dict[str, Any], *, env: dict[str, str], flags: Flags | None
) -> dict[str, Any]:
    """The service manifest with the deploy's flags applied; an unset flag keeps what the
    service had, as `gcloud run deploy` does."""
    flags = flags or Flags()
    out = copy.deepcopy(manifest)
    template_spec = out["spec"]["template"]["spec"]
    container = template_spec["containers"][0]
    container["env"] = _edited_env(container.get("env") or [], env=env, flags=flags)
    _edit_container(container, flags=flags)
    if flags.concurrency is not None:
        template_spec["containerConcurrency"] = flags.concurrency
    if flags.timeout_s is not None:
        template_spec["timeoutSeconds"] = flags.timeout_s
    template = out["spec"]["template"]
    # `metadata:` or `annotations:` may be there and null (YAML with nothing under the key).
    metadata = template["metadata"] = template.get("metadata") or {}
    annotations = metadata["annotations"] = metadata.get("annotations") or {}
    for key, value in (
        (MIN_SCALE_ANNOTATION, flags.min_scale),
        (MAX_SCALE_ANNOTATION, flags.max_scale),
    ):
        if value is not None:
            annotations[key] = str(value)
            for legacy in [k for k, current in LEGACY_AUTOSCALING.items() if current == key]:
                annotations.pop(legacy, None)  # the flag wins over `minScale` too
    if flags.private is not None:
        out = access.edited(out, private=flags.private)
    return out


def _edit_container(container: dict[str, Any], *, flags: Flags) -> None:
    """`--port`, `--command`, `--args`, `--cpu`, `--memory`, in place."""
    if flags.port is not None:
        ports = container["ports"] = container.get("ports") or [{}]
        ports[0]["containerPort"] = flags.port
        # A probe that names a port names the container's (the spec refuses any other): it moves.
        for action in ("httpGet", "tcpSocket"):
            probe = (container.get("readinessProbe") or {}).get(action) or {}
            if probe.get("port"):
                probe["port"] = flags.port
    for key, words in (("command", flags.command), ("args", flags.args)):
        if words is not None:
            container[key] = list(words)
    for key, quantity in (("cpu", flags.cpu), ("memory", flags.memory)):
        if quantity is not None:
            resources = container["resources"] = container.get("resources") or {}
            limits = resources["limits"] = resources.get("limits") or {}
            limits[key] = quantity


def _edited_env(
    current: list[dict[str, Any]], *, env: dict[str, str], flags: Flags
) -> list[dict[str, Any]]:
    """Literal values first, then secret references; an explicit --env replaces a reference
    of that name, --set-secrets a literal, and --remove-env drops either."""
    merged = {e["name"]: e.get("value") or "" for e in current if "valueFrom" not in e}
    merged.update(env)
    refs = {e["name"]: e["valueFrom"] for e in current if e.get("valueFrom")}
    for literal in env:
        refs.pop(literal, None)
    for env_name, secret, key in flags.secret_env:
        merged.pop(env_name, None)
        refs[env_name] = {"secretKeyRef": {"name": secret, "key": key}}
    for name in flags.remove_env:
        merged.pop(name, None)
        refs.pop(name, None)
    literals = [{"name": k, "value": v} for k, v in merged.items() if k not in refs]
    return literals + [{"name": k, "valueFrom": v} for k, v in refs.items()]
