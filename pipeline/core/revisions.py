"""What a revision runs, derived purely from its template snapshot.

A revision stores the Knative `spec.template` it was created from (image pinned by digest). This
module reads the few fields the engine and the data plane need, with Knative's defaults, so no
other module digs through the template dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.core.annotations import SECRET_VERSIONS_ANNOTATION

DEFAULT_PORT = 8080
DEFAULT_TIMEOUT_S = 300


@dataclass(frozen=True, kw_only=True)
class Readiness:
    kind: str = "tcp"  # "tcp" | "http"
    path: str = "/"
    period_s: float = 1.0
    timeout_s: float = 1.0


@dataclass(frozen=True, kw_only=True)
class RevisionConfig:
    image: str
    port: int = DEFAULT_PORT
    env: tuple[tuple[str, str], ...] = ()
    # (ENV, secret, key, version): resolved to values only when an instance starts.
    secret_env: tuple[tuple[str, str, str, int], ...] = ()
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    working_dir: str = ""
    container_concurrency: int = 0
    timeout_s: int = DEFAULT_TIMEOUT_S
    memory_limit: str = ""
    cpu_limit: str = ""
    readiness: Readiness = Readiness()


def config_of(template: dict[str, Any], *, image: str) -> RevisionConfig:
    spec: dict[str, Any] = template.get("spec") or {}
    containers: list[dict[str, Any]] = spec.get("containers") or [{}]
    c = containers[0]
    ports = c.get("ports") or []
    port = int(ports[0].get("containerPort", DEFAULT_PORT)) if ports else DEFAULT_PORT
    limits: dict[str, Any] = (c.get("resources") or {}).get("limits") or {}
    env_list: list[dict[str, Any]] = c.get("env") or []
    versions = secret_versions(template)
    secret_env = []
    for e in env_list:
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            name = str(ref["name"])
            secret_env.append((str(e["name"]), name, str(ref["key"]), versions.get(name, 0)))
    return RevisionConfig(
        image=image,
        port=port,
        env=tuple(
            (str(e["name"]), str(e.get("value") or "")) for e in env_list if "valueFrom" not in e
        ),
        secret_env=tuple(secret_env),
        command=tuple(str(x) for x in c.get("command") or []),
        args=tuple(str(x) for x in c.get("args") or []),
        working_dir=str(c.get("workingDir") or ""),
        container_concurrency=int(spec.get("containerConcurrency") or 0),
        timeout_s=int(spec.get("timeoutSeconds") or DEFAULT_TIMEOUT_S),
        memory_limit=str(limits.get("memory") or ""),
        cpu_limit=str(limits.get("cpu") or ""),
        readiness=_readiness(c.get("readinessProbe") or {}),
    )


def secret_names(template: dict[str, Any]) -> set[str]:
    containers = (template.get("spec") or {}).get("containers") or [{}]
    return {
        str(e["valueFrom"]["secretKeyRef"]["name"])
        for e in containers[0].get("env") or []
        if (e.get("valueFrom") or {}).get("secretKeyRef")
    }


def secret_versions(template: dict[str, Any]) -> dict[str, int]:
    raw = ((template.get("metadata") or {}).get("annotations") or {}).get(
        SECRET_VERSIONS_ANNOTATION, ""
    )
    pairs = (item.partition("=") for item in raw.split(",") if item)
    return {name: int(version) for name, _, version in pairs}


def _readiness(probe: dict[str, Any]) -> Readiness:
    period = float(probe.get("periodSeconds") or 1)
    timeout = float(probe.get("timeoutSeconds") or 1)
    if "httpGet" in probe:
        path = str((probe["httpGet"] or {}).get("path") or "/")
        return Readiness(kind="http", path=path, period_s=period, timeout_s=timeout)
    return Readiness(kind="tcp", period_s=period, timeout_s=timeout)


def contract_env(
    *, service: str, revision: str, port: int, metadata_host: str = ""
) -> dict[str, str]:
    """The Knative / Cloud Run container contract; user env cannot override these."""
    env = {
        "PORT": str(port),
        "K_SERVICE": service,
        "K_REVISION": revision,
        "K_CONFIGURATION": service,
    }
    if metadata_host:
        env["GCE_METADATA_HOST"] = metadata_host
        env["GCE_METADATA_IP"] = metadata_host
    return env
