"""Who is calling the metadata server on Kubernetes: a source address -> the Slipway pod with it.

On the embedded engine the caller is the owned container with that address on Slipway's bridge
network (`identity.metadata.docker_lookup`). In a cluster it is the running pod with that pod IP,
asked of the API server on every request (`status.podIP` field selector; IPs are reused as pods
come and go, so nothing is cached) and recognised as Slipway's by the labels `render` puts on
every revision template, which Knative copies to the revision's pods together with its own
`serving.knative.dev/service` and `.../revision` labels.

Trust boundary, as on Cloud Run or GKE workload identity: whoever can create pods in the
namespace can label one as any service, so only Slipway (and cluster admins) should have that
verb there. The address must reach the server unchanged: the metadata pod carries no Istio
sidecar (it would hand the server 127.0.0.6 for every caller) and the cluster must not SNAT
pod-to-Service traffic (kube-proxy does not, by default).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from pipeline.core import names
from pipeline.identity.metadata import Caller
from pipeline.knative.apply import KubeApi

REVISION_LABEL = "serving.knative.dev/revision"


def caller_of_pod(pod: dict[str, Any], *, platform: str) -> Caller | None:
    """The identity a pod speaks for, or None if it is not a running pod of this Slipway."""
    metadata: dict[str, Any] = pod.get("metadata") or {}
    labels: dict[str, str] = metadata.get("labels") or {}
    status: dict[str, Any] = pod.get("status") or {}
    if status.get("phase") != "Running":
        return None  # a finished pod's IP may already belong to another
    if labels.get(names.K8S_MANAGED_BY) != names.K8S_MANAGER:
        return None
    if labels.get(names.K8S_PLATFORM) != platform:
        return None  # another Slipway's pod in the same namespace
    service = labels.get(names.KNATIVE_SERVICE_LABEL, "")
    revision = labels.get(REVISION_LABEL, "")
    if not service or not revision or labels.get(names.K8S_SERVICE) != service:
        return None  # Knative's label and Slipway's disagree: not a pod Knative made for us
    return Caller(service=service, revision=revision, instance=str(metadata.get("name") or ""))


def pod_lookup(api: KubeApi) -> Callable[[str], Caller | None]:
    """Source address -> the caller, or None; raises a Slipway error if the API cannot answer."""
    selector = f"{names.K8S_MANAGED_BY}={names.K8S_MANAGER},{names.K8S_PLATFORM}={api.platform}"

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
