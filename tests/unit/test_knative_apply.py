"""The parts of `knative.apply` that need no API server: no cluster reachable (a closed port), the
engine chosen from the environment, and the text a 403 becomes (pure).

The calls themselves (server-side apply, `force`, refusing objects Slipway did not create, 403s
from real RBAC, a resource type not served, Istio objects, deletes) run against the real API
server in tests/knative/test_kubeapi.py; a deploy refused by the Helm chart's Role, through the
control plane running in the cluster, in tests/knative/test_chart_install.py.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from kubernetes import client as k8s

from pipeline.core.errors import Unavailable
from pipeline.knative.apply import (
    KREVISIONS,
    KSERVICES,
    POD_LOGS,
    KubeApi,
    Resource,
    with_annotations_map,
)
from pipeline.knative.forbidden import forbidden_message, refused_verb

# The API server's message for an RBAC refusal, as k8s.io/apiserver words it.
REFUSAL = (
    'services.serving.knative.dev "hello" is forbidden: User '
    '"system:serviceaccount:slipway:slipway-slipway" cannot patch resource "services" in API '
    'group "serving.knative.dev" in the namespace "apps"'
)


@pytest.mark.parametrize(
    ("verb", "resource", "api_message", "says"),
    [
        pytest.param("patch (and create)", KSERVICES, REFUSAL, [
            "Kubernetes denied Slipway 'patch and create' on services.serving.knative.dev in "
            "namespace apps (403: " + REFUSAL + ")",
            "Grant the service account system:serviceaccount:slipway:slipway-slipway the verb "
            "'patch' on services.serving.knative.dev in namespace apps",
            "`helm upgrade` puts its Role back (charts/slipway/templates/rbac.yaml",
        ], id="apply-refused-patch"),
        pytest.param("list", KREVISIONS, REFUSAL.replace("cannot patch", "cannot list"), [
            "denied Slipway 'list' on revisions.serving.knative.dev",
            "the verb 'list' on revisions.serving.knative.dev",
        ], id="list"),
        pytest.param("get", POD_LOGS, "forbidden", [
            "denied Slipway 'get' on pods/log in namespace apps (403: forbidden)",
            "Grant Slipway's service account the verb 'get' on pods/log",
        ], id="unusual-message-names-the-attempted-verb"),
    ],
)  # fmt: skip
def test_a_403_says_the_verb_the_account_and_the_fix(
    verb: str, resource: Resource, api_message: str, says: list[str]
) -> None:
    message = forbidden_message(
        verb=verb, resource=resource, namespace="apps", api_message=api_message
    )
    for part in says:
        assert part in message, message


def test_the_verb_to_grant_is_the_one_the_server_refused() -> None:
    create = REFUSAL.replace("cannot patch", "cannot create")
    assert refused_verb(attempted="patch (and create)", api_message=create) == "create"
    assert refused_verb(attempted="patch (and create)", api_message="denied") == "patch"


def test_no_cluster_reachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    configuration = k8s.Configuration()
    configuration.host = f"http://127.0.0.1:{port}"
    configuration.retries = 0
    kube = KubeApi(k8s.ApiClient(configuration), namespace="apps", platform="prod")
    with pytest.raises(Unavailable, match=f"127.0.0.1:{port} is not reachable"):
        kube.get(KSERVICES, "hello")


def test_engine_selection_from_environment(tmp_path: Path) -> None:
    from pipeline.core.errors import InvalidInput
    from pipeline.core.settings import Settings

    assert Settings.from_env({}).engine == "docker"
    settings = Settings.from_env(
        {
            "SLIPWAY_ENGINE": "knative",
            "SLIPWAY_NAMESPACE": "apps",
            "SLIPWAY_KUBECONFIG": str(tmp_path / "missing"),
            "SLIPWAY_DATA_DIR": str(tmp_path),
        }
    )
    assert (settings.engine, settings.namespace) == ("knative", "apps")
    with pytest.raises(InvalidInput, match="SLIPWAY_ENGINE='k8s'"):
        Settings.from_env({"SLIPWAY_ENGINE": "k8s"})
    from pipeline.app.engines import knative_parts

    with pytest.raises(Unavailable, match="no Kubernetes configuration from the kubeconfig"):
        knative_parts(settings, store=None)  # type: ignore[arg-type]


def test_an_applied_manifest_always_carries_an_annotations_map() -> None:
    """Without the map, server-side apply would drop the annotations Knative's webhook added
    when Slipway's last one goes (tests/knative/test_kubeapi.py shows the refusal that follows)."""
    bare = {"metadata": {"name": "hello", "labels": {"a": "b"}}, "spec": {}}
    assert with_annotations_map(bare) == {
        "metadata": {"name": "hello", "labels": {"a": "b"}, "annotations": {}},
        "spec": {},
    }
    assert bare["metadata"] == {"name": "hello", "labels": {"a": "b"}}  # not changed in place
    kept = {"metadata": {"name": "hello", "annotations": {"slipway.dev/private": "true"}}}
    assert with_annotations_map(kept) is kept
