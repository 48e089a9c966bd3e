"""Who is calling the metadata server on Kubernetes: a source address -> the Slipway pod with it.

Next to Docker the caller is the owned container with that address on Slipway's bridge network
(`identity.dockercallers`). In a cluster it is the running pod with that pod IP, asked of the API
server on every request (`status.podIP` field selector; IPs are reused as pods come and go, so
nothing is cached) and recognised as Slipway's by the labels `render` puts on every revision
template, which Knative copies to the revision's pods together with its own service and revision
labels (`core.annotations`).

Trust boundary, as on Cloud Run or GKE workload identity: whoever can create pods in the
namespace can label one as any service, so only Slipway (and cluster admins) should have that
verb there. The address must reach the server unchanged: the metadata pod carries no Istio
sidecar (it would hand the server 127.0.0.6 for every caller) and the cluster must not SNAT
pod-to-Service traffic (kube-proxy does not, by default).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pipeline.core.annotations import (
    KNATIVE_REVISION_LABEL,
    KNATIVE_SERVICE_LABEL,
    MANAGED_BY_LABEL,
    MANAGER,
    PLATFORM_LABEL,
    SERVICE_LABEL,
)
from pipeline.identity.callers import Caller, CallerLookup
from pipeline.knative.apply import KubeApi, connect


def caller_of_pod(pod: dict[str, Any], *, platform: str) -> Caller | None:
    """The identity a pod speaks for, or None if it is not a running pod of this Slipway."""
    metadata: dict[str, Any] = pod.get("metadata") or {}
    labels: dict[str, str] = metadata.get("labels") or {}
    status: dict[str, Any] = pod.get("status") or {}
    if status.get("phase") != "Running":
        return None  # a finished pod's IP may already belong to another
    if labels.get(MANAGED_BY_LABEL) != MANAGER:
        return None
    if labels.get(PLATFORM_LABEL) != platform:
        return None  # another Slipway's pod in the same namespace
    service = labels.get(KNATIVE_SERVICE_LABEL, "")
    revision = labels.get(KNATIVE_REVISION_LABEL, "")
    if not service or not revision or labels.get(SERVICE_LABEL) != service:
        return None  # Knative's label and Slipway's disagree: not a pod Knative made for us
    return Caller(service=service, revision=revision, instance=str(metadata.get("name") or ""))


def pod_lookup(api: KubeApi) -> CallerLookup:
    """Source address -> the caller, or None; raises a Slipway error if the API cannot answer."""
    selector = f"{MANAGED_BY_LABEL}={MANAGER},{PLATFORM_LABEL}={api.platform}"

    def lookup(address: str) -> Caller | None:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # a dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d
        pods = api.list_pods(selector=selector, field_selector=f"status.podIP={ip}")
        callers = {c for pod in pods if (c := caller_of_pod(pod, platform=api.platform))}
        # Two running pods with one IP (hostNetwork, a CNI bug) say nothing about who calls.
        return callers.pop() if len(callers) == 1 else None

    return lookup


def kubernetes_lookup(*, namespace: str, platform: str, kubeconfig: str = "") -> CallerLookup:
    """Source address -> the running Slipway pod with that pod IP, via the API server."""
    api = KubeApi(connect(kubeconfig=kubeconfig), namespace=namespace, platform=platform)
    return pod_lookup(api)
