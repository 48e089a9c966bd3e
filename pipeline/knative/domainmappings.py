"""Slipway's domain mappings as Knative `DomainMapping` objects: rendered purely, applied in sync.

`render_domain_mapping` is the same document the API takes (`pipeline.spec.domainmappings`),
placed in Slipway's namespace with its labels, so Knative routes the host to the Service and
(with its certificate provider) gives it a certificate. `DomainMappingSync` runs once per
Knative reconcile pass, level-triggered: every mapping applied (server-side apply: a no-op when
nothing changed), and DomainMappings Slipway owns that no mapping wants any more deleted. An
object of the same name that Slipway did not create is refused by `KubeApi.apply`, never
overwritten.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pipeline.core.annotations import (
    MANAGED_BY_LABEL,
    MANAGER,
    PLATFORM_LABEL,
    SERVICE_LABEL,
    k8s_labels,
)
from pipeline.core.errors import SlipwayError
from pipeline.core.logs import get as get_log
from pipeline.knative.apply import DOMAIN_MAPPINGS, KubeApi
from pipeline.knative.render import manifest_hash
from pipeline.spec.domainmappings import manifest
from pipeline.store.domains import DomainMapping


def render_domain_mapping(
    mapping: DomainMapping, *, namespace: str, platform: str
) -> dict[str, Any]:
    document = manifest(host=mapping.host, service=mapping.service)
    document["metadata"] = {
        "name": mapping.host,
        "namespace": namespace,
        "labels": k8s_labels(platform=platform, **{SERVICE_LABEL: mapping.service}),
    }
    document["spec"]["ref"]["namespace"] = namespace
    return document


class DomainMappingSync:
    def __init__(self, api: KubeApi, *, mappings: Callable[[], Sequence[DomainMapping]]) -> None:
        self._api = api
        self._mappings = mappings
        self._applied: dict[str, str] = {}  # host -> hash of the manifest last applied
        self._log = get_log(component="knative-domains")

    def sync(self) -> list[str]:
        """Apply the mappings that are missing or changed, delete the unwanted ones; the
        problems met, one line each (the next pass tries again)."""
        selector = f"{MANAGED_BY_LABEL}={MANAGER},{PLATFORM_LABEL}={self._api.platform}"
        try:
            owned = {
                str(o["metadata"]["name"])
                for o in self._api.list_objects(DOMAIN_MAPPINGS, selector=selector)
            }
        except SlipwayError as exc:
            self._log.warning("domain_mappings_not_listed", error=exc.message)
            return [exc.message]
        wanted = {m.host: m for m in self._mappings()}
        problems = [p for p in (self._apply(m, owned) for m in wanted.values()) if p]
        for host in sorted(owned - wanted.keys()):
            try:
                self._api.delete(DOMAIN_MAPPINGS, host)
                self._applied.pop(host, None)
                self._log.info("domain_mapping_deleted", host=host)
            except SlipwayError as exc:
                problems.append(f"{host}: {exc.message}")
        for problem in problems:
            self._log.warning("domain_mapping_not_applied", error=problem)
        return problems

    def _apply(self, mapping: DomainMapping, owned: set[str]) -> str:
        document = render_domain_mapping(
            mapping, namespace=self._api.namespace, platform=self._api.platform
        )
        digest = manifest_hash(document)
        if mapping.host in owned and self._applied.get(mapping.host) == digest:
            return ""
        try:
            self._api.apply(DOMAIN_MAPPINGS, document)
        except SlipwayError as exc:
            return f"{mapping.host}: {exc.message}"
        self._applied[mapping.host] = digest
        self._log.info("domain_mapping_applied", host=mapping.host, service=mapping.service)
        return ""
