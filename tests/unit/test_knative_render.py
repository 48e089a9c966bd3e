"""Slipway state in -> Knative Service and Istio policies out, each checked against a schema.

Knative Services are validated against Knative's own CRD schema (closed, see kubeschemas). The
Istio objects have no schema fixture here: golden files pin them. Regenerate golden files after
an intended change with `SLIPWAY_UPDATE_GOLDEN=1 pytest tests/unit/test_knative_render.py` and
review the diff.
"""

from __future__ import annotations

import copy
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from pipeline import spec
from pipeline.core.errors import InvalidSpec
from pipeline.core.records import Revision, Service
from pipeline.knative import istio, render
from pipeline.knative.engine import KnativeEngine
from tests.unit.kubeschemas import validate_knative

GOLDEN = Path(__file__).parent / "golden" / "knative"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
DIGEST = "sha256:" + "ab" * 32

HELLO = """
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/min-scale: "1"
        autoscaling.knative.dev/max-scale: "5"
        autoscaling.knative.dev/target: "50"
    spec:
      containerConcurrency: 20
      timeoutSeconds: 60
      containers:
        - image: registry.example.com/hello:1.0
          env:
            - {name: GREETING, value: hi}
          ports:
            - containerPort: 9000
          resources:
            limits: {cpu: "1", memory: 512Mi}
            requests: {cpu: 250m, memory: 256Mi}
          readinessProbe:
            httpGet: {path: /healthz}
"""


def deployed(
    document: str,
    statuses: list[str],
    *,
    traffic: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> tuple[Service, list[Revision]]:
    """A service and its revision rows as the deployer stores them (image pinned by digest)."""
    document_map = yaml.safe_load(document)
    if traffic is not None:
        document_map["spec"]["traffic"] = traffic
    document_map["metadata"].setdefault("labels", {}).update(labels or {})
    document_map["metadata"].setdefault("annotations", {}).update(annotations or {})
    ks = spec.parse_service(document_map, require_image=False)
    name = ks.name
    revisions = []
    for number, status in enumerate(statuses, start=1):
        image = f"registry.example.com/{name}@sha256:{number:064d}"
        pinned = ks.with_image(image)
        template = copy.deepcopy(pinned.to_manifest()["spec"]["template"])
        template.get("metadata", {}).pop("name", None)
        revisions.append(
            Revision(
                name=f"{name}-{number:05d}",
                service=name,
                number=number,
                image=image,
                template=template,
                template_hash=spec.template_hash(pinned.template),
                status=status,
                reason="",
                message="",
                build_id=f"b{number:05d}",
                created_at=T0,
                ready_at=None,
            )
        )
    service = Service(name=name, spec=ks.to_manifest(), generation=1, created_at=T0)
    return service, revisions


def ksvc(service: Service, revisions: list[Revision], **kwargs: Any) -> dict[str, Any]:
    rendered = render.render_service(
        service=service, revisions=revisions, namespace="apps", platform="prod", **kwargs
    )
    assert rendered is not None
    return rendered


SPLIT_TRAFFIC = [
    {"revisionName": "hello-00001", "percent": 90},
    {"latestRevision": True, "percent": 10},
    {"tag": "commit-0a1b2c3", "revisionName": "hello-00001", "percent": 0},
    {"tag": "commit-9f8e7d6", "revisionName": "hello-00002", "percent": 0},
    {"tag": "branch-feature-login", "revisionName": "hello-00002", "percent": 0},
    {"tag": "pr-12", "revisionName": "hello-00002", "percent": 0},
    {"tag": "canary", "latestRevision": True, "percent": 0},
]


# --- table: state in -> Knative Service out, schema-valid ----------------------------------------


@pytest.mark.parametrize(
    ("statuses", "traffic", "extra", "expect"),
    [
        pytest.param(["Ready"], None, {}, {"template": "hello-00001",
                     "traffic": [{"latestRevision": True, "percent": 100}]}, id="one-revision"),
        pytest.param(["Ready", "Pending"], None, {}, {"template": "hello-00002",
                     "traffic": [{"latestRevision": True, "percent": 100}]},
                     id="newest-revision-is-the-template"),
        pytest.param(["Ready", "Ready"], SPLIT_TRAFFIC, {}, {"template": "hello-00002",
                     "tags": ["commit-0a1b2c3", "commit-9f8e7d6", "branch-feature-login",
                              "pr-12", "canary"]}, id="split-and-tags"),
        pytest.param(
            ["Ready", "Failed"],
            [{"latestRevision": True, "percent": 100},
             {"tag": "commit-9f8e7d6", "revisionName": "hello-00002", "percent": 0}],
            {}, {"template": "hello-00002", "tags": []}, id="tag-on-failed-revision-dropped"),
        pytest.param(
            ["Ready"],
            [{"latestRevision": True, "percent": 100},
             {"tag": "old", "revisionName": "hello-00007", "percent": 0}],
            {}, {"tags": []}, id="tag-on-unknown-revision-dropped"),
        pytest.param(["Ready"], None, {"metadata_host": "metadata.slipway.svc:80"},
                     {"env": {"GREETING": "hi", "GCE_METADATA_HOST": "metadata.slipway.svc:80",
                              "GCE_METADATA_IP": "metadata.slipway.svc:80"}},
                     id="metadata-service-env"),
    ],
)  # fmt: skip
def test_render_service(
    statuses: list[str],
    traffic: list[dict[str, Any]] | None,
    extra: dict[str, Any],
    expect: dict[str, Any],
) -> None:
    service, revisions = deployed(HELLO, statuses, traffic=traffic)
    out = ksvc(service, revisions, **extra)
    validate_knative(out)
    template = out["spec"]["template"]
    if "template" in expect:
        assert template["metadata"]["name"] == expect["template"]
        number = int(expect["template"][-5:])
        assert template["spec"]["containers"][0]["image"] == revisions[number - 1].image
    if "traffic" in expect:
        assert out["spec"]["traffic"] == expect["traffic"]
    if "tags" in expect:
        assert [t["tag"] for t in out["spec"]["traffic"] if "tag" in t] == expect["tags"]
    if "env" in expect:
        env = {e["name"]: e["value"] for e in template["spec"]["containers"][0]["env"]}
        assert env == expect["env"]
    # What Knative needs from Slipway, whatever the case.
    assert out["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "slipway"
    assert out["metadata"]["labels"]["slipway.dev/platform"] == "prod"
    assert out["metadata"]["namespace"] == "apps"
    assert template["spec"]["containerConcurrency"] == 20
    assert template["spec"]["timeoutSeconds"] == 60
    assert template["metadata"]["annotations"]["autoscaling.knative.dev/max-scale"] == "5"
    assert sum(t["percent"] for t in out["spec"]["traffic"]) == 100


def test_no_revision_yet_renders_nothing() -> None:
    service, _ = deployed(HELLO, [])
    assert render.render_service(service=service, revisions=[], namespace="a", platform="p") is None


def test_rendering_is_deterministic_and_reread_by_slipway_spec() -> None:
    service, revisions = deployed(HELLO, ["Ready", "Ready"], traffic=SPLIT_TRAFFIC)
    first, second = ksvc(service, revisions), ksvc(service, list(reversed(revisions)))
    assert first == second
    assert render.manifest_hash(first) == render.manifest_hash(second)
    # The rendered Service is itself a Knative Service Slipway accepts (the same YAML).
    reparsed = copy.deepcopy(first)
    reparsed["metadata"].pop("namespace")
    spec.parse_service(reparsed)


def test_closed_schema_refuses_an_unknown_field() -> None:
    service, revisions = deployed(HELLO, ["Ready"])
    out = ksvc(service, revisions)
    out["spec"]["template"]["spec"]["containers"][0]["imagee"] = "x"
    with pytest.raises(jsonschema.ValidationError):
        validate_knative(out)


# --- Istio policies (the access annotations themselves: test_annotations.py) ---------------------


def test_private_service_needs_an_issuer() -> None:
    with pytest.raises(InvalidSpec, match="SLIPWAY_PUBLIC_URL"):
        istio.render_policies(
            service="s", namespace="n", platform="p", issuer="", audiences=[], invokers=[]
        )


# --- golden files -------------------------------------------------------------------------------


class _NoCluster:
    """KnativeEngine.manifests only renders; no call reaches this."""

    namespace = "apps"
    platform = "prod"


def _golden_case(case: str) -> list[dict[str, Any]]:
    engine = KnativeEngine(
        _NoCluster(),  # type: ignore[arg-type]
        issuer="https://slipway.example.com",
        domain="apps.example.com",
    )
    if case == "split-90-10-commit-tags":
        service, revisions = deployed(HELLO, ["Ready", "Ready"], traffic=SPLIT_TRAFFIC)
    elif case == "private-service":
        service, revisions = deployed(
            HELLO,
            ["Ready"],
            traffic=[
                {"latestRevision": True, "percent": 100},
                {"tag": "commit-0a1b2c3", "revisionName": "hello-00001", "percent": 0},
            ],
            annotations={"slipway.dev/private": "true", "slipway.dev/invokers": "checkout,billing"},
        )
    else:
        service, revisions = deployed(
            HELLO, ["Ready"], labels={"networking.knative.dev/visibility": "cluster-local"}
        )
    ksvc_out, policies = engine.manifests(service=service, revisions=revisions)
    assert ksvc_out is not None
    return [ksvc_out, *policies]


@pytest.mark.parametrize("case", ["split-90-10-commit-tags", "private-service", "cluster-local"])
def test_golden(case: str) -> None:
    objects = _golden_case(case)
    validate_knative(objects[0])
    text = yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False)
    path = GOLDEN / f"{case}.yaml"
    if os.environ.get("SLIPWAY_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{path} differs; SLIPWAY_UPDATE_GOLDEN=1 to regenerate"


def test_private_service_policies() -> None:
    _, authn, authz = _golden_case("private-service")
    assert authn["kind"] == "RequestAuthentication"
    (rule,) = authn["spec"]["jwtRules"]
    assert rule["issuer"] == "https://slipway.example.com"
    assert rule["jwksUri"] == "https://slipway.example.com/.well-known/jwks.json"
    assert "http://hello.apps.example.com" in rule["audiences"]
    assert "https://commit-0a1b2c3--hello.apps.example.com" in rule["audiences"]
    assert authz["spec"]["action"] == "ALLOW"
    principals = authz["spec"]["rules"][0]["from"][0]["source"]["requestPrincipals"]
    # `<iss>/<sub>`, and the metadata server mints `sub` = service:<caller> (test_annotations).
    assert principals == [
        "https://slipway.example.com/service:checkout",
        "https://slipway.example.com/service:billing",
    ]
    selector = {"serving.knative.dev/service": "hello"}
    assert authn["spec"]["selector"]["matchLabels"] == selector
    assert authz["spec"]["selector"]["matchLabels"] == selector


def test_cluster_local_label_kept() -> None:
    (ksvc_out,) = _golden_case("cluster-local")
    assert ksvc_out["metadata"]["labels"]["networking.knative.dev/visibility"] == "cluster-local"
