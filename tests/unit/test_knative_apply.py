"""The apply and status-reading code against a STAND-IN Kubernetes API server (tests/unit/
kubestandin.py: http.server on 127.0.0.1 speaking the few calls Slipway makes; not Kubernetes).

What is asserted is the wire: server-side apply as PATCH with `application/apply-patch+yaml`,
`fieldManager=slipway`, `force=true` only for objects Slipway owns, the body; canned Knative
status read back into revision rows; and the errors: 403 naming the verb and resource, 404 on
the resource type meaning Knative (or Istio) is not installed, no cluster reachable, and names
held by objects Slipway did not create.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from pipeline import spec
from pipeline.core.errors import Conflict, Unavailable
from pipeline.knative.apply import KSERVICES, KubeApi
from pipeline.knative.engine import KnativeEngine
from pipeline.knative.reconciler import KnativeReconciler
from pipeline.store import db
from pipeline.store.state import Store
from tests.unit import kubestandin
from tests.unit.kubestandin import StandIn
from tests.unit.test_knative_render import HELLO, deployed

NS = "/apis/serving.knative.dev/v1/namespaces/apps"
ISTIO = "/apis/security.istio.io/v1/namespaces/apps"


@pytest.fixture
def cluster() -> Iterator[tuple[StandIn, KnativeEngine]]:
    for state, api in kubestandin.serve():
        kube = KubeApi(api, namespace="apps", platform="prod")
        yield state, KnativeEngine(kube, issuer="https://slipway.example.com", domain="example.com")


def ready_status(obj: dict[str, Any]) -> None:
    """What Knative's controller would write once the revision is up (canned)."""
    if obj["kind"] != "Service":
        return
    name = obj["metadata"]["name"]
    template = obj["spec"]["template"]["metadata"]["name"]
    obj["status"] = {
        "observedGeneration": obj["metadata"]["generation"],
        "conditions": [{"type": "Ready", "status": "True"}],
        "url": f"https://{name}.example.com",
        "latestCreatedRevisionName": template,
        "latestReadyRevisionName": template,
        "traffic": [
            {"revisionName": template, "percent": 100, "latestRevision": True},
            {"tag": "commit-0a1b2c3", "revisionName": template, "percent": 0,
             "url": f"https://commit-0a1b2c3--{name}.example.com"},
        ],
    }  # fmt: skip


def patches(state: StandIn) -> list[kubestandin.Request]:
    return [r for r in state.requests if r.method == "PATCH"]


def test_first_apply_creates_by_server_side_apply_without_force(
    cluster: tuple[StandIn, KnativeEngine],
) -> None:
    state, engine = cluster
    service, revisions = deployed(HELLO, ["Pending"])
    engine.apply_service(service=service, revisions=revisions)
    (patch,) = patches(state)
    assert patch.path == f"{NS}/services/hello"
    assert patch.headers["Content-Type"] == "application/apply-patch+yaml"
    assert patch.query == {"fieldManager": "slipway"}  # no force for a new object
    expected, _ = engine.manifests(service=service, revisions=revisions)
    assert patch.body == expected
    assert patch.body["spec"]["template"]["metadata"]["name"] == "hello-00001"


def test_reapply_of_an_owned_object_forces(cluster: tuple[StandIn, KnativeEngine]) -> None:
    state, engine = cluster
    service, revisions = deployed(HELLO, ["Ready", "Pending"])
    engine.apply_service(service=service, revisions=revisions[:1])
    engine.apply_service(service=service, revisions=revisions)
    second = patches(state)[-1]
    assert second.query == {"fieldManager": "slipway", "force": "true"}
    assert second.body["spec"]["template"]["metadata"]["name"] == "hello-00002"


def test_status_read_back_from_knative(cluster: tuple[StandIn, KnativeEngine]) -> None:
    state, engine = cluster
    state.on_apply = ready_status
    state.put(f"{NS}/revisions", {
        "metadata": {"name": "hello-00001", "labels": {"serving.knative.dev/service": "hello"}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    })  # fmt: skip
    service, revisions = deployed(HELLO, ["Pending"])
    got = engine.apply_service(service=service, revisions=revisions)
    assert got.ready == "True"
    assert got.urls == ["https://hello.example.com", "https://commit-0a1b2c3--hello.example.com"]
    assert got.revision("hello-00001") is not None
    assert engine.service_state("hello") == got
    assert engine.service_state("absent") is None


def test_refuses_an_object_slipway_did_not_create(cluster: tuple[StandIn, KnativeEngine]) -> None:
    state, engine = cluster
    state.put(f"{NS}/services", {"kind": "Service", "metadata": {"name": "hello", "labels": {}}})
    service, revisions = deployed(HELLO, ["Pending"])
    with pytest.raises(Conflict, match="not created by this Slipway"):
        engine.apply_service(service=service, revisions=revisions)
    assert patches(state) == []


def test_refuses_another_slipways_object(cluster: tuple[StandIn, KnativeEngine]) -> None:
    state, engine = cluster
    labels = {"app.kubernetes.io/managed-by": "slipway", "slipway.dev/platform": "staging"}
    state.put(
        f"{NS}/services", {"kind": "Service", "metadata": {"name": "hello", "labels": labels}}
    )
    service, revisions = deployed(HELLO, ["Pending"])
    with pytest.raises(Conflict, match="platform 'prod'"):
        engine.apply_service(service=service, revisions=revisions)


def test_refuses_a_revision_name_taken_by_something_else(
    cluster: tuple[StandIn, KnativeEngine],
) -> None:
    state, engine = cluster
    state.put(f"{NS}/revisions", {
        "metadata": {"name": "hello-00001", "labels": {"serving.knative.dev/service": "other"}},
    })  # fmt: skip
    service, revisions = deployed(HELLO, ["Pending"])
    taken = r"'hello-00001' is already taken .* Knative Service 'other'"
    with pytest.raises(Conflict, match=taken):
        engine.apply_service(service=service, revisions=revisions)
    assert patches(state) == []


def test_forbidden_names_the_verb_and_resource(cluster: tuple[StandIn, KnativeEngine]) -> None:
    state, engine = cluster
    state.forbidden.add(("patch", "services"))
    service, revisions = deployed(HELLO, ["Pending"])
    with pytest.raises(Unavailable) as caught:
        engine.apply_service(service=service, revisions=revisions)
    message = caught.value.message
    assert "denied Slipway 'patch and create' on services.serving.knative.dev" in message
    assert "namespace apps" in message
    assert 'cannot patch resource "services"' in message  # the API server's own words


def test_forbidden_list(cluster: tuple[StandIn, KnativeEngine]) -> None:
    state, engine = cluster
    state.forbidden.add(("list", "services"))
    denied = r"denied Slipway 'list' on services\.serving\.knative\.dev"
    with pytest.raises(Unavailable, match=denied):
        engine.list_services()


def test_knative_not_installed(cluster: tuple[StandIn, KnativeEngine]) -> None:
    state, engine = cluster
    state.missing_groups.add("serving.knative.dev")
    service, revisions = deployed(HELLO, ["Pending"])
    with pytest.raises(Unavailable, match="Knative Serving is not installed"):
        engine.apply_service(service=service, revisions=revisions)


def test_private_service_needs_istio_and_is_never_applied_without_it(
    cluster: tuple[StandIn, KnativeEngine],
) -> None:
    state, engine = cluster
    state.missing_groups.add("security.istio.io")
    service, revisions = deployed(HELLO, ["Pending"], annotations={"slipway.dev/private": "true"})
    with pytest.raises(Unavailable, match="Istio is not installed"):
        engine.apply_service(service=service, revisions=revisions)
    assert not any(r.path.startswith(NS + "/services") for r in patches(state))


def test_private_service_policies_applied_before_the_service(
    cluster: tuple[StandIn, KnativeEngine],
) -> None:
    state, engine = cluster
    service, revisions = deployed(
        HELLO, ["Pending"], annotations={"slipway.dev/private": "true", "slipway.dev/invokers": "a"}
    )
    engine.apply_service(service=service, revisions=revisions)
    assert [r.path for r in patches(state)] == [
        f"{ISTIO}/requestauthentications/hello-slipway-jwt",
        f"{ISTIO}/authorizationpolicies/hello-slipway-invokers",
        f"{NS}/services/hello",
    ]
    assert all(r.query["fieldManager"] == "slipway" for r in patches(state))
    # Made public again: the policies go.
    public, _ = deployed(HELLO, ["Pending"])
    engine.apply_service(service=public, revisions=revisions)
    assert state.get(f"{ISTIO}/requestauthentications", "hello-slipway-jwt") is None
    assert state.get(f"{ISTIO}/authorizationpolicies", "hello-slipway-invokers") is None


def test_list_and_delete_only_touch_what_is_ours(cluster: tuple[StandIn, KnativeEngine]) -> None:
    state, engine = cluster
    service, revisions = deployed(HELLO, ["Pending"])
    engine.apply_service(service=service, revisions=revisions)
    state.put(f"{NS}/services", {"kind": "Service", "metadata": {"name": "theirs"}})
    assert engine.list_services() == ["hello"]
    engine.delete_service("theirs")
    engine.delete_service("hello")
    engine.delete_service("never-existed")
    assert state.get(f"{NS}/services", "theirs") is not None
    assert state.get(f"{NS}/services", "hello") is None
    deletes = [r.path for r in state.requests if r.method == "DELETE"]
    assert deletes == [f"{NS}/services/hello"]


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


# --- the reconciler, store to stand-in and back ---------------------------------------------


def test_reconciler_applies_and_copies_status_into_revision_rows(
    cluster: tuple[StandIn, KnativeEngine], tmp_path: Path
) -> None:
    state, engine = cluster
    engine_db = db.make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate(engine_db)
    store = Store(db.session_factory(engine_db))
    service, _ = deployed(HELLO, [])
    store.put_service("hello", spec=service.spec)
    ks = spec.parse_service(service.spec, require_image=False).with_image(
        "registry.example.com/hello@sha256:" + "1" * 64
    )
    template = ks.to_manifest()["spec"]["template"]
    store.create_revision(
        "hello", image=ks.container.image or "", template=template, template_hash="h1"
    )
    now = [1e12]  # far past created_at would time out; set below per pass
    reconciler = KnativeReconciler(
        store=store, engine=engine, readiness_timeout_s=60, clock=lambda: now[0]
    )
    now[0] = store.get_revision("hello-00001").created_at.timestamp() + 1

    reconciler.reconcile_once()
    assert len(patches(state)) == 1
    assert store.get_revision("hello-00001").status == "Pending"

    reconciler.reconcile_once()  # nothing changed: reads only
    assert len(patches(state)) == 1

    # Knative's controller makes the revision and reports it failed (canned status).
    state.put(f"{NS}/revisions", {
        "metadata": {"name": "hello-00001", "labels": {"serving.knative.dev/service": "hello"}},
        "status": {"conditions": [
            {"type": "Ready", "status": "False", "reason": "ExitCode3", "message": "boom"},
        ]},
    })  # fmt: skip
    reconciler.reconcile_once()
    failed = store.get_revision("hello-00001")
    assert (failed.status, failed.reason) == ("Failed", "ExitCode")
    assert failed.message == "the container exited with code 3: boom"

    # A second revision becomes ready; its URLs come from Knative's status.
    state.on_apply = ready_status
    store.create_revision(
        "hello", image=ks.container.image or "", template=template, template_hash="h2"
    )
    state.put(f"{NS}/revisions", {
        "metadata": {"name": "hello-00002", "labels": {"serving.knative.dev/service": "hello"}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    })  # fmt: skip
    reconciler.reconcile_once()
    assert store.get_revision("hello-00002").status == "Ready"
    assert patches(state)[-1].body["spec"]["template"]["metadata"]["name"] == "hello-00002"
    assert reconciler.urls("hello") == [
        "https://hello.example.com",
        "https://commit-0a1b2c3--hello.example.com",
    ]

    # The service is deleted in Slipway: the pass deletes it in the cluster.
    store.delete_service("hello")
    reconciler.reconcile_once()
    assert state.get(f"{NS}/services", "hello") is None


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


def test_a_pass_survives_a_cluster_that_refuses(
    cluster: tuple[StandIn, KnativeEngine], tmp_path: Path
) -> None:
    state, engine = cluster
    engine_db = db.make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate(engine_db)
    store = Store(db.session_factory(engine_db))
    state.forbidden.update({("list", "services"), ("get", "services")})
    reconciler = KnativeReconciler(store=store, engine=engine, readiness_timeout_s=60, clock=float)
    reconciler.reconcile_once()  # logs, does not raise: the server starts, the next pass retries
    assert reconciler.wait_for_pass(timeout_s=0) is False
