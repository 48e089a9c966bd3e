"""A traffic edit the cluster refuses reaches the user as an error, and nothing changes.

Knative's revision garbage collector (config-gc) deletes old revisions no route points at while
Slipway still lists them as Ready; a later `slipway traffic` (or `rollback`) to one is accepted by
Knative's webhook, and then its Route marks the target `RevisionMissing` and keeps serving the
previous split. Slipway answered that edit as done (the split was stored; only the control plane's
log said anything). Here the revision is deleted through the API server as the collector does
(waiting out its default 48 h retention is not an option); everything after is the real Knative.
"""

from __future__ import annotations

import secrets
from typing import Any

import docker
import pytest

from tests.knative.conftest import KnativeSlipway, Kube, eventually, httpd_app, push


def _served(kube: Kube, service: str) -> list[tuple[str, int]]:
    route = kube.knative("routes", service) or {}
    return sorted(
        (str(t.get("revisionName")), int(t.get("percent") or 0))
        for t in (route.get("status") or {}).get("traffic") or ()
    )


def _routes_ready(kube: Kube, service: str) -> dict[str, Any]:
    ksvc = kube.knative("services", service) or {}
    status = ksvc.get("status") or {}
    if status.get("observedGeneration") != ksvc.get("metadata", {}).get("generation"):
        return {}
    for c in status.get("conditions") or ():
        if c.get("type") == "RoutesReady":
            return dict(c)
    return {}


def test_traffic_to_a_revision_the_cluster_no_longer_has_is_refused_and_changes_nothing(
    slipway: KnativeSlipway,
    docker_client: docker.DockerClient,
    busybox: str,
    kube_reader: Kube,
    tmp_path_factory: pytest.TempPathFactory,
    cluster: Any,
) -> None:
    service = f"kt-gone-{secrets.token_hex(2)}"
    root = tmp_path_factory.mktemp("gone")
    for n in (1, 2):
        image = push(
            docker_client, httpd_app(root / f"app{n}", f"{n} of {service}\n"),
            f"{cluster.registry}/slipway-kt/{service}:{n}",
        )  # fmt: skip
        slipway.cli("deploy", service, "--image", image.ref)
    old, new = f"{service}-00001", f"{service}-00002"
    eventually(
        f"the Route serving {new} at 100%",
        lambda: _served(kube_reader, service) == [(new, 100)],
    )
    # What Knative's collector does to a revision no route points at.
    kube_reader.custom.delete_namespaced_custom_object(
        "serving.knative.dev", "v1", kube_reader.namespace, "revisions", old
    )
    eventually(
        f"{old} gone from the cluster", lambda: kube_reader.knative("revisions", old) is None
    )
    stored_before = slipway.api_json(f"/v1/services/{service}")["traffic"]

    result = slipway.cli("traffic", service, "--to-revisions", f"{old}=100", check=False)

    out = result.stdout + result.stderr
    assert result.returncode != 0, f"a refused traffic edit was reported as done:\n{out}"
    assert "refused the traffic edit" in out and "traffic unchanged" in out, out
    assert "RevisionMissing" in out and old in out, out
    # Unchanged where it serves, and where Slipway keeps it.
    assert _served(kube_reader, service) == [(new, 100)]
    assert slipway.api_json(f"/v1/services/{service}")["traffic"] == stored_before
    # Slipway put the previous split back in the cluster too: the Route is no longer refusing.
    eventually(
        f"the Knative Service of {service} back on its previous traffic",
        lambda: _routes_ready(kube_reader, service).get("reason") != "RevisionMissing"
        and _routes_ready(kube_reader, service),
        timeout_s=60,
    )
    assert _served(kube_reader, service) == [(new, 100)]
