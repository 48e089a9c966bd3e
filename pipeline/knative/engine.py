"""The Knative engine: a `ServiceEngine` that runs Slipway services as Knative Services.

Decides with the pure renderers (`render`, `istio`), applies with `KubeApi`, reads back with
`status`. One service is applied in phases, as Knative's own reconcilers do: refuse a revision
name that something else holds -> Istio policies first (a private service is never exposed
without them) -> the Knative Service -> read its status and its Revisions back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.core import names
from pipeline.core.annotations import (
    KNATIVE_REVISION_LABEL,
    KNATIVE_SERVICE_LABEL,
    MANAGED_BY_LABEL,
    MANAGER,
    PLATFORM_LABEL,
    access_of,
)
from pipeline.core.errors import Conflict
from pipeline.core.records import Revision, Service
from pipeline.engines.base import Instance, RevisionState, ServiceState
from pipeline.knative import istio, render, status
from pipeline.knative.apply import (
    AUTHORIZATION_POLICIES,
    KREVISIONS,
    KSERVICES,
    REQUEST_AUTHENTICATIONS,
    KubeApi,
)
from pipeline.knative.logs import KnativeLogs

POLICIES = (REQUEST_AUTHENTICATIONS, AUTHORIZATION_POLICIES)


class KnativeEngine:
    def __init__(
        self, api: KubeApi, *, issuer: str = "", domain: str = "", metadata_host: str = ""
    ) -> None:
        self._api = api
        self._issuer = issuer
        self._domain = domain
        self._metadata_host = metadata_host

    @property
    def namespace(self) -> str:
        return self._api.namespace

    def manifests(
        self, *, service: Service, revisions: Sequence[Revision], urls: Sequence[str] = ()
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """What `apply_service` would apply: the Knative Service and the Istio policies."""
        ksvc = render.render_service(
            service=service,
            revisions=revisions,
            namespace=self._api.namespace,
            platform=self._api.platform,
            metadata_host=self._metadata_host,
        )
        metadata: dict[str, Any] = service.spec.get("metadata") or {}
        access = access_of(metadata.get("annotations") or {})
        if ksvc is None or not access.private:
            return ksvc, []
        tags = [str(t["tag"]) for t in ksvc["spec"]["traffic"] if t.get("tag")]
        policies = istio.render_policies(
            service=service.name,
            namespace=self._api.namespace,
            platform=self._api.platform,
            issuer=self._issuer,
            audiences=istio.audiences_for(service.name, domain=self._domain, tags=tags, urls=urls),
            invokers=access.invokers,
        )
        return ksvc, policies

    def apply_service(
        self, *, service: Service, revisions: Sequence[Revision], urls: Sequence[str] = ()
    ) -> ServiceState:
        ksvc, policies = self.manifests(service=service, revisions=revisions, urls=urls)
        if ksvc is None:
            return ServiceState(name=service.name, ready="Unknown")
        self._refuse_taken_revision(service.name, ksvc["spec"]["template"]["metadata"]["name"])
        for policy in policies:
            self._api.apply(_resource_of(policy), policy)
        ksvc = render.keep_live_template(ksvc, self._api.get(KSERVICES, service.name))
        applied = self._api.apply(KSERVICES, ksvc)
        if not policies:
            self._delete_policies(service.name)  # no longer private
        return status.service_state(applied, self._revisions(service.name))

    def list_instances(self) -> list[Instance]:
        """Knative owns pods and scales them; Slipway tracks no instances of its own."""
        return []

    def logs_reader(self) -> KnativeLogs:
        """Pods' logs as `slipway logs` reads them (`knative.logs`)."""
        return KnativeLogs(self._api)

    def service_state(self, name: str) -> ServiceState | None:
        obj = self._api.get(KSERVICES, name)
        if obj is None:
            return None
        return status.service_state(obj, self._revisions(name))

    def traffic_outcome(self, name: str) -> tuple[status.TrafficOutcome, str]:
        """Whether Knative's Route took the Service's traffic (`status.traffic_outcome`)."""
        return status.traffic_outcome(self._api.get(KSERVICES, name))

    def pods_state(self, revision: str) -> RevisionState | None:
        """What the revision's pods show before Knative reports it (`status.pods_state`)."""
        pods = self._api.list_pods(selector=f"{KNATIVE_REVISION_LABEL}={revision}")
        return status.pods_state(revision, pods)

    def list_services(self) -> list[str]:
        selector = f"{MANAGED_BY_LABEL}={MANAGER},{PLATFORM_LABEL}={self._api.platform}"
        return sorted(
            str(o["metadata"]["name"]) for o in self._api.list_objects(KSERVICES, selector=selector)
        )

    def delete_service(self, name: str) -> None:
        self._api.delete(KSERVICES, name)  # Knative removes its revisions with it
        self._delete_policies(name)

    def _delete_policies(self, name: str) -> None:
        self._api.delete(REQUEST_AUTHENTICATIONS, names.request_authentication_name(name))
        self._api.delete(AUTHORIZATION_POLICIES, names.authorization_policy_name(name))

    def _revisions(self, service: str) -> list[dict[str, Any]]:
        return self._api.list_objects(KREVISIONS, selector=f"{KNATIVE_SERVICE_LABEL}={service}")

    def _refuse_taken_revision(self, service: str, revision: str) -> None:
        existing = self._api.get(KREVISIONS, revision)
        if existing is None:
            return
        labels: dict[str, str] = (existing.get("metadata") or {}).get("labels") or {}
        holder = labels.get(KNATIVE_SERVICE_LABEL, "")
        if holder != service:
            what = f"Knative Service {holder!r}" if holder else "something that is not a Service"
            raise Conflict(
                f"revision name {revision!r} is already taken in namespace {self.namespace} by "
                f"{what}, not by Slipway's service {service!r}; Slipway does not overwrite it: "
                "delete that revision, or deploy under another service name"
            )


def _resource_of(manifest: dict[str, Any]) -> Any:
    return (
        REQUEST_AUTHENTICATIONS
        if manifest["kind"] == "RequestAuthentication"
        else AUTHORIZATION_POLICIES
    )
