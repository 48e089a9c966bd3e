"""The metadata server on Kubernetes, its pure parts: which pod speaks for which service (pods
written the way Knative makes them, with the labels `render` puts on a revision template plus
Knative's own), and the 503 a refused pod lookup becomes.

The lookup by `status.podIP` against the real API server (the caller found, another Slipway's pod
ignored, two hostNetwork pods with one address identifying no one) is in
tests/knative/test_kubeapi.py; the chart's metadata container minting a token for a revision's pod
that asks through the metadata Service, in tests/knative/test_chart_install.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.core.annotations import (
    KNATIVE_REVISION_LABEL,
    KNATIVE_SERVICE_LABEL,
    MANAGED_BY_LABEL,
    PLATFORM_LABEL,
    SERVICE_LABEL,
)
from pipeline.identity import keys
from pipeline.identity.callers import Caller
from pipeline.identity.metadata import Issuer, answer
from pipeline.knative.apply import PODS as PODS_RESOURCE
from pipeline.knative.callers import caller_of_pod
from pipeline.knative.forbidden import Forbidden, forbidden_message
from pipeline.knative.render import render_service
from tests.unit.factories import revision, service


def knative_pod(
    name: str,
    *,
    ip: str,
    svc: str = "hello",
    rev: str = "hello-00001",
    platform: str = "prod",
    phase: str = "Running",
) -> dict[str, Any]:
    """A pod as Knative creates it for `rev`: the rendered template's labels + Knative's own."""
    ksvc = render_service(
        service=service(svc), revisions=[revision(svc, 1)], namespace="apps", platform=platform
    )
    assert ksvc is not None
    labels = dict(ksvc["spec"]["template"]["metadata"]["labels"])
    labels |= {
        KNATIVE_SERVICE_LABEL: svc,
        KNATIVE_REVISION_LABEL: rev,
        "serving.knative.dev/configuration": svc,
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "apps", "labels": labels},
        "status": {"phase": phase, "podIP": ip},
    }


def test_rendered_templates_carry_the_labels_pods_are_recognised_by() -> None:
    pod = knative_pod("hello-00001-deployment-7d9f-x2x", ip="10.0.0.7")
    assert caller_of_pod(pod, platform="prod") == Caller(
        service="hello", revision="hello-00001", instance="hello-00001-deployment-7d9f-x2x"
    )


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda p: p["status"].update(phase="Succeeded"), "finished: its IP may be reused"),
        (lambda p: p["status"].update(phase="Pending"), "not running yet"),
        (lambda p: p["metadata"]["labels"].update({PLATFORM_LABEL: "staging"}), "other"),
        (lambda p: p["metadata"]["labels"].pop(MANAGED_BY_LABEL), "not Slipway's"),
        (lambda p: p["metadata"]["labels"].pop(KNATIVE_SERVICE_LABEL), "not Knative's"),
        (lambda p: p["metadata"]["labels"].update({SERVICE_LABEL: "admin"}), "labels disagree"),
        (lambda p: p["metadata"]["labels"].pop("serving.knative.dev/revision"), "no revision"),
    ],
)
def test_pods_that_speak_for_no_one(change: Any, why: str) -> None:
    pod = knative_pod("p", ip="10.0.0.7")
    change(pod)
    assert caller_of_pod(pod, platform="prod") is None, why


def test_an_api_that_refuses_is_a_503_naming_the_verb(tmp_path: Path) -> None:
    refusal = (
        'pods is forbidden: User "system:serviceaccount:slipway:slipway-slipway" cannot list '
        'resource "pods" in API group "" in the namespace "apps"'
    )

    def lookup(_address: str) -> Caller | None:  # what pod_lookup raises on a 403
        message = forbidden_message(verb="list", resource=PODS_RESOURCE, namespace="apps",
                                    api_message=refusal)  # fmt: skip
        raise Forbidden(message, verb="list", resource=PODS_RESOURCE.qualified)

    store = keys.KeyStore(tmp_path)
    store.ensure()
    issuer = Issuer(issuer="https://slipway.example.com", domain="example.com", project="prod",
                    keys=store)  # fmt: skip
    reply = answer(
        method="GET",
        target="/computeMetadata/v1/instance/service-accounts/default/identity?audience=x",
        headers={"metadata-flavor": "Google"},
        peer="10.0.0.7",
        lookup=lookup,
        issuer=issuer,
    )
    assert reply.status == 503
    assert "'list' on pods" in reply.body and "Role" in reply.body
