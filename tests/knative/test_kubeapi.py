"""`knative.apply.KubeApi` and what is built on it, against the real API server (this replaces the
stand-in HTTP server the unit tests used): server-side apply under field manager `slipway`, `force`
over another manager's field for Slipway's own objects, objects Slipway did not create (or another
Slipway did) refused and left alone, list and delete only of its own; RBAC refusals (a
ServiceAccount with a Role of the test's choosing, its real token) told with the verb, the account
and the fix; a resource type the server does not serve; private services' Istio objects accepted
by the server (Istio's CRDs are installed, no Istio runs) and removed again; the metadata server's
pod lookup by `status.podIP`; `pods/log` from the kubelet; DomainMappings applied and pruned.

Everything runs in a namespace of this module's own, under a platform id of its own.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from kubernetes import client as k8s

from pipeline.core.errors import Conflict, Unavailable
from pipeline.engines.logs import LogLine
from pipeline.engines.logstreams import LogQuery, stream_logs
from pipeline.identity.callers import Caller
from pipeline.knative.apply import (
    AUTHORIZATION_POLICIES,
    DOMAIN_MAPPINGS,
    REQUEST_AUTHENTICATIONS,
    Forbidden,
    KubeApi,
    Resource,
)
from pipeline.knative.callers import pod_lookup
from pipeline.knative.domainmappings import DomainMappingSync
from pipeline.knative.engine import KnativeEngine
from pipeline.knative.logs import KnativeLogs
from pipeline.knative.reconciler import KnativeReconciler
from pipeline.knative.render import render_service
from pipeline.store import db
from pipeline.store.state import Store
from tests.knative.conftest import Cluster, eventually, own_namespace, push
from tests.unit.factories import revision, service
from tests.unit.test_knative_render import deployed
from tests.unit.test_tls_domains import mapping

PLATFORM = "kapi"
# initial-scale 0: Knative makes the revision but no pod (the image is never pulled).
DOC = """
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: NAME}
spec:
  template:
    metadata:
      annotations: {autoscaling.knative.dev/initial-scale: "0"}
    spec:
      containers: [{image: registry.example.com/hello:1.0}]
"""


def doc(name: str) -> str:
    return DOC.replace("NAME", name)


@pytest.fixture(scope="module")
def ns(kube: k8s.ApiClient) -> Iterator[str]:
    with own_namespace(kube, "slipway-kapi") as name:
        yield name


@pytest.fixture(scope="module")
def api(kube: k8s.ApiClient, ns: str) -> KubeApi:
    return KubeApi(kube, namespace=ns, platform=PLATFORM)


@pytest.fixture(scope="module")
def engine(api: KubeApi) -> KnativeEngine:
    return KnativeEngine(api, issuer="https://slipway.example.com", domain="example.localhost")


def custom(kube: k8s.ApiClient) -> k8s.CustomObjectsApi:
    return k8s.CustomObjectsApi(kube)


def ksvc(kube: k8s.ApiClient, ns: str, name: str) -> dict[str, Any]:
    obj: Any = custom(kube).get_namespaced_custom_object(
        "serving.knative.dev", "v1", ns, "services", name
    )
    return dict(obj)


# ---- a service account with a Role of the test's choosing, and its real token ------------------
def account(kube: k8s.ApiClient, ns: str, rules: list[dict[str, Any]]) -> tuple[str, KubeApi]:
    """A ServiceAccount bound to a Role with `rules`; a KubeApi that uses its token."""
    name = f"sa-{secrets.token_hex(3)}"
    core, rbac = k8s.CoreV1Api(kube), k8s.RbacAuthorizationV1Api(kube)
    core.create_namespaced_service_account(ns, {"metadata": {"name": name}})
    rbac.create_namespaced_role(ns, {"metadata": {"name": name}, "rules": rules})
    rbac.create_namespaced_role_binding(ns, {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
    })  # fmt: skip
    token = core.create_namespaced_service_account_token(
        name, ns, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    admin = kube.configuration
    configuration = k8s.Configuration()
    configuration.host = admin.host
    configuration.ssl_ca_cert = admin.ssl_ca_cert
    configuration.api_key = {"authorization": f"Bearer {token}"}
    return f"system:serviceaccount:{ns}:{name}", KubeApi(
        k8s.ApiClient(configuration), namespace=ns, platform=PLATFORM
    )


SERVICES = ["serving.knative.dev"], ["services"]
# What an apply reads besides the Service: the revision name's holder, then the revisions' status.
READ_REVISIONS = {"apiGroups": ["serving.knative.dev"], "resources": ["revisions"],
                  "verbs": ["get", "list"]}  # fmt: skip


def rule(groups_resources: tuple[list[str], list[str]], *verbs: str) -> dict[str, Any]:
    return {"apiGroups": groups_resources[0], "resources": groups_resources[1], "verbs": verbs}


# ---- apply ---------------------------------------------------------------------------------------
def test_apply_is_server_side_under_slipways_field_manager_and_idempotent(
    engine: KnativeEngine, kube: k8s.ApiClient, ns: str
) -> None:
    svc, revisions = deployed(doc("ssa"), ["Pending"])
    engine.apply_service(service=svc, revisions=revisions)
    first = ksvc(kube, ns, "ssa")
    managers = {(m["manager"], m["operation"]) for m in first["metadata"]["managedFields"]}
    assert ("slipway", "Apply") in managers, managers
    assert first["spec"]["template"]["metadata"]["name"] == "ssa-00001"
    engine.apply_service(service=svc, revisions=revisions)  # the same again: nothing changes
    again = ksvc(kube, ns, "ssa")
    assert again["metadata"]["generation"] == first["metadata"]["generation"]


def test_reapply_forces_over_a_field_another_manager_took(
    engine: KnativeEngine, kube: k8s.ApiClient, ns: str
) -> None:
    """Without `force` the API server answers 409 to Slipway's apply once another manager owns
    one of its fields; Slipway forces for its own objects, and gets the field back."""
    svc, revisions = deployed(doc("forced"), ["Pending"])
    engine.apply_service(service=svc, revisions=revisions)
    custom(kube).patch_namespaced_custom_object(
        "serving.knative.dev", "v1", ns, "services", "forced",
        {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
         "metadata": {"name": "forced", "labels": {"slipway.dev/service": "someone-else"}}},
        field_manager="someone-else", force=True,
        _content_type="application/apply-patch+yaml",
    )  # fmt: skip
    assert ksvc(kube, ns, "forced")["metadata"]["labels"]["slipway.dev/service"] == "someone-else"
    engine.apply_service(service=svc, revisions=revisions)
    assert ksvc(kube, ns, "forced")["metadata"]["labels"]["slipway.dev/service"] == "forced"


@pytest.mark.parametrize(
    ("labels", "said"),
    [
        pytest.param({}, "not created by this Slipway", id="not-slipways"),
        pytest.param({"app.kubernetes.io/managed-by": "slipway", "slipway.dev/platform": "other"},
                     f"platform '{PLATFORM}'", id="another-slipways"),
    ],
)  # fmt: skip
def test_an_object_slipway_does_not_own_is_refused_and_left_alone(
    engine: KnativeEngine, kube: k8s.ApiClient, ns: str, labels: dict[str, str], said: str
) -> None:
    name = f"theirs-{secrets.token_hex(2)}"
    body = {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": {"name": name, "labels": labels},
            "spec": {"template": {"metadata": {"annotations": {
                "autoscaling.knative.dev/initial-scale": "0"}},
                "spec": {"containers": [{"image": "registry.example.com/theirs:1"}]}}}}  # fmt: skip
    custom(kube).create_namespaced_custom_object("serving.knative.dev", "v1", ns, "services", body)
    svc, revisions = deployed(doc(name), ["Pending"])
    with pytest.raises(Conflict, match=said):
        engine.apply_service(service=svc, revisions=revisions)
    left = ksvc(kube, ns, name)
    assert "slipway" not in {m["manager"] for m in left["metadata"]["managedFields"]}
    assert name not in engine.list_services()
    engine.delete_service(name)  # not ours: nothing happens
    assert ksvc(kube, ns, name)["metadata"]["name"] == name


def test_delete_removes_slipways_service(engine: KnativeEngine, kube: k8s.ApiClient) -> None:
    svc, revisions = deployed(doc("gone"), ["Pending"])
    engine.apply_service(service=svc, revisions=revisions)
    assert "gone" in engine.list_services()
    engine.delete_service("gone")
    engine.delete_service("never-existed")
    eventually("the deleted Service gone", lambda: engine.service_state("gone") is None)


def test_private_services_istio_objects_are_accepted_then_removed(
    engine: KnativeEngine, api: KubeApi
) -> None:
    private = {"slipway.dev/private": "true", "slipway.dev/invokers": "checkout,billing"}
    svc, revisions = deployed(doc("priv"), ["Pending"], annotations=private)
    engine.apply_service(service=svc, revisions=revisions)
    authn = api.get(REQUEST_AUTHENTICATIONS, "priv-slipway-jwt")
    policy = api.get(AUTHORIZATION_POLICIES, "priv-slipway-invokers")
    assert authn is not None and policy is not None
    assert authn["spec"]["jwtRules"][0]["issuer"] == "https://slipway.example.com"
    public, _ = deployed(doc("priv"), ["Pending"])
    engine.apply_service(service=public, revisions=revisions)
    assert api.get(REQUEST_AUTHENTICATIONS, "priv-slipway-jwt") is None
    assert api.get(AUTHORIZATION_POLICIES, "priv-slipway-invokers") is None


def test_a_resource_type_the_server_does_not_serve(api: KubeApi) -> None:
    missing = Resource("serving.knative.dev", "v9", "services", "Knative Serving")
    with pytest.raises(Unavailable, match="Knative Serving is not installed in the cluster"):
        api.get(missing, "hello")


# ---- RBAC: the API server's 403 ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rules", "call", "attempted", "missing"),
    [
        pytest.param([rule(SERVICES, "get", "list"), READ_REVISIONS], "apply",
                     "patch and create", "patch", id="apply-without-patch"),
        pytest.param([rule(SERVICES, "get", "list", "patch"), READ_REVISIONS], "apply",
                     "patch and create", "create", id="apply-without-create"),
        pytest.param([], "list", "list", "list", id="list-without-anything"),
    ],
)  # fmt: skip
def test_a_403_names_the_verb_the_account_and_the_fix(
    kube: k8s.ApiClient, ns: str, rules: list[dict[str, Any]], call: str, attempted: str,
    missing: str,
) -> None:  # fmt: skip
    who, denied = account(kube, ns, rules)
    engine = KnativeEngine(denied)
    svc, revisions = deployed(doc(f"denied-{secrets.token_hex(2)}"), ["Pending"])
    with pytest.raises(Forbidden) as caught:
        if call == "apply":
            engine.apply_service(service=svc, revisions=revisions)
        else:
            engine.list_services()
    message = caught.value.message
    assert f"denied Slipway '{attempted}' on services.serving.knative.dev in namespace {ns}" in (
        message
    )
    assert f'cannot {missing} resource "services"' in message  # the API server's own words
    assert f"Grant the service account {who} the verb '{missing}'" in message
    assert "helm upgrade" in message and "rbac.yaml" in message
    assert caught.value.verb == missing


def test_a_reconciler_pass_survives_a_cluster_that_refuses_and_says_why(
    kube: k8s.ApiClient, ns: str, tmp_path: Path
) -> None:
    """A pass logs the 403 and goes on (the server starts; the next pass retries the rest); the
    new revision fails at once, long before its readiness timeout, as Forbidden with the 403's
    words and the fix (RBAC's no stays a no until an admin changes the Role)."""
    who, denied = account(kube, ns, [])
    engine_db = db.make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate(engine_db)
    store = Store(db.session_factory(engine_db))
    svc, (row,) = deployed(doc("refused"), ["Pending"])
    store.put_service("refused", spec=svc.spec)
    store.create_revision("refused", image=row.image, template=row.template, template_hash="h1")
    created = store.get_revision("refused-00001").created_at.timestamp()
    reconciler = KnativeReconciler(
        store=store, engine=KnativeEngine(denied), readiness_timeout_s=60,
        clock=lambda: created + 1,
    )  # fmt: skip
    reconciler.reconcile_once()
    failed = store.get_revision("refused-00001")
    assert (failed.status, failed.reason) == ("Failed", "Forbidden"), failed
    assert failed.message.startswith("Kubernetes denied Slipway 'get'"), failed.message
    assert f"Grant the service account {who}" in failed.message


# ---- pods: the metadata server's lookup, and logs -----------------------------------------------
@pytest.fixture(scope="module")
def sleeper(
    docker_client: docker.DockerClient, busybox: str, cluster: Cluster,
    tmp_path_factory: pytest.TempPathFactory,
) -> str:  # fmt: skip
    folder = tmp_path_factory.mktemp("sleeper")
    (folder / "Dockerfile").write_text(
        f"FROM {busybox}\nUSER 65532:65532\n"
        """CMD ["sh", "-c", "echo first line; echo second line; """
        """trap 'exit 0' TERM; sleep 3600 & wait"]\n"""
    )
    return push(docker_client, folder, f"{cluster.registry}/slipway-kt/sleeper:1").pinned


def knative_labels(svc: str, rev: str, *, platform: str = PLATFORM) -> dict[str, str]:
    """The labels Knative's pods of a Slipway revision carry: the template's and Knative's own."""
    rendered = render_service(service=service(svc), revisions=[revision(svc, 1)],
                              namespace="any", platform=platform)  # fmt: skip
    assert rendered is not None
    labels = dict(rendered["spec"]["template"]["metadata"]["labels"])
    return labels | {"serving.knative.dev/service": svc, "serving.knative.dev/revision": rev,
                     "serving.knative.dev/configuration": svc}  # fmt: skip


def run_pod(
    kube: k8s.ApiClient, ns: str, image: str, labels: dict[str, str], *, host_network: bool = False
) -> Any:
    name = f"pod-{secrets.token_hex(3)}"
    core = k8s.CoreV1Api(kube)
    core.create_namespaced_pod(ns, {
        "metadata": {"name": name, "labels": labels},
        "spec": {"hostNetwork": host_network, "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "user-container", "image": image}]},
    })  # fmt: skip

    def running() -> Any:
        pod = core.read_namespaced_pod(name, ns)
        return pod if pod.status.phase == "Running" and pod.status.pod_ip else None

    return eventually(f"pod {name} running", running, timeout_s=180)


def test_the_pod_lookup_finds_the_caller_by_its_pod_ip(
    api: KubeApi, kube: k8s.ApiClient, ns: str, sleeper: str
) -> None:
    mine = run_pod(kube, ns, sleeper, knative_labels("hello", "hello-00001"))
    other = run_pod(kube, ns, sleeper, knative_labels("hello", "hello-00001", platform="other"))
    lookup = pod_lookup(api)
    caller = Caller(service="hello", revision="hello-00001", instance=mine.metadata.name)
    assert lookup(mine.status.pod_ip) == caller
    assert lookup(f"::ffff:{mine.status.pod_ip}") == caller
    assert lookup(other.status.pod_ip) is None  # another Slipway's pod
    assert lookup("10.255.255.254") is None


def test_two_running_pods_with_one_ip_identify_no_one(
    api: KubeApi, kube: k8s.ApiClient, ns: str, sleeper: str
) -> None:
    """hostNetwork pods share the node's address: the server cannot tell who calls."""
    a = run_pod(kube, ns, sleeper, knative_labels("a", "a-00001"), host_network=True)
    b = run_pod(kube, ns, sleeper, knative_labels("b", "b-00001"), host_network=True)
    assert a.status.pod_ip == b.status.pod_ip
    assert pod_lookup(api)(a.status.pod_ip) is None


def test_logs_come_from_the_kubelet_with_their_times(
    api: KubeApi, kube: k8s.ApiClient, ns: str, sleeper: str
) -> None:
    labels = knative_labels("logged", "logged-00001")
    pod = run_pod(kube, ns, sleeper, labels)
    reader = KnativeLogs(api)
    (source,) = reader.sources(service="logged", revision="logged-00001")
    assert (source.id, source.container) == (pod.metadata.name, "user-container")

    def read(query: LogQuery) -> list[LogLine]:
        lines: list[LogLine] = []
        stream_logs(reader, query, emit=lambda x: lines.append(x) or True, stop=threading.Event())
        return lines

    def both() -> list[LogLine]:
        found = read(LogQuery(service="logged"))
        return found if len(found) == 2 else []

    lines = eventually("both lines in the pod's log", both)
    assert [(x.revision, x.instance, x.text) for x in lines] == [
        ("logged-00001", pod.metadata.name, "first line"),
        ("logged-00001", pod.metadata.name, "second line"),
    ]
    assert abs(lines[0].time_ns / 1e9 - time.time()) < 600
    assert read(LogQuery(service="logged", since=lines[1].time_ns / 1e9 + 0.001)) == []
    # A followed log blocks on the kubelet's stream; closing it ends the read.
    log = reader.open(source, stream="output", follow=True, since=None, tail=None)
    got: list[tuple[int, str]] = []
    reading = threading.Thread(target=lambda: got.extend(log))
    reading.start()
    eventually("the followed log's lines", lambda: len(got) == 2, timeout_s=30)
    log.close()
    reading.join(timeout=10)
    assert not reading.is_alive()


# ---- DomainMappings ----------------------------------------------------------------------------
def test_domain_mappings_are_applied_once_and_pruned(api: KubeApi, kube: k8s.ApiClient) -> None:
    wanted = [mapping("shop.example.com", "shop"), mapping("blog.example.com", "blog")]
    sync = DomainMappingSync(api, mappings=lambda: wanted)
    assert sync.sync() == []

    def owned() -> set[str]:
        selector = f"slipway.dev/platform={PLATFORM}"
        found = api.list_objects(DOMAIN_MAPPINGS, selector=selector)
        return {str(o["metadata"]["name"]) for o in found}

    assert owned() == {"shop.example.com", "blog.example.com"}
    assert sync.sync() == []
    custom(kube).create_namespaced_custom_object(
        "serving.knative.dev", "v1beta1", api.namespace, "domainmappings",
        {"apiVersion": "serving.knative.dev/v1beta1", "kind": "DomainMapping",
         "metadata": {"name": "theirs.example.com"},
         "spec": {"ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                          "name": "theirs"}}},
    )  # fmt: skip
    wanted.pop()
    assert sync.sync() == []
    eventually("blog.example.com pruned", lambda: owned() == {"shop.example.com"})
    wanted.append(mapping("theirs.example.com", "shop"))
    (problem,) = sync.sync()
    assert problem.startswith("theirs.example.com: ") and "not created by this Slipway" in problem
