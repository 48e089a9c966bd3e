"""The Helm chart, rendered WITHOUT helm: tests/unit/gotemplate.py evaluates the subset of Go
templates the chart uses (helm is not installed here), every rendered document must parse as YAML
and pass `kubernetes-validate` (strict, one Kubernetes version), and the Role must grant what
pipeline/knative/apply.py calls and nothing else. `helm lint`/`helm template` themselves, and an
install into a cluster, were not run (see docs/kubernetes.md).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.knative import apply
from tests.unit.gotemplate import TemplateFail, Unsupported, parse, render_chart
from tests.unit.kubeschemas import validate_core

CHART = Path(__file__).resolve().parents[2] / "charts" / "slipway"
RELEASE = {"Name": "slipway", "Namespace": "slipway", "Service": "Helm"}
REQUIRED = {
    "signingKeys": {
        "privateKeyPem": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
    },
    "registry": {"dockerConfigJson": '{"auths": {"registry.example.com": {"auth": "eDp5"}}}'},
}


def merged(base: dict[str, Any], *overrides: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for override in overrides:
        for key, value in override.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merged(out[key], value)
            else:
                out[key] = value
    return out


def render(*overrides: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    chart_meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = merged(yaml.safe_load((CHART / "values.yaml").read_text()), *overrides)
    templates = {p.name: p.read_text() for p in sorted((CHART / "templates").iterdir())}
    rendered = render_chart(
        templates,
        values=values,
        release=RELEASE,
        chart={"Name": chart_meta["name"], "AppVersion": chart_meta["appVersion"]},
    )
    notes = rendered.pop("NOTES.txt")
    objects = [
        doc
        for name, text in rendered.items()
        for doc in yaml.safe_load_all(text)
        if doc is not None
    ]
    return objects, notes


def by_kind(objects: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        out.setdefault(obj["kind"], []).append(obj)
    return out


@pytest.mark.parametrize(
    ("overrides", "kinds"),
    [
        pytest.param(REQUIRED, {"Deployment": 1, "Service": 2, "ServiceAccount": 1, "Role": 1,
                                "RoleBinding": 1, "PersistentVolumeClaim": 1, "Secret": 2,
                                "Ingress": 1}, id="defaults"),
        pytest.param(merged(REQUIRED, {"replicaCount": 3, "targetNamespace": "apps",
                                       "database": {"url": "postgresql://s:p@db/slipway"},
                                       "persistence": {"accessMode": "ReadWriteMany",
                                                       "storageClassName": "nfs"},
                                       "ingress": {"className": "nginx", "tlsSecretName": "tls",
                                                   "annotations": {"a.example.com/b": "c"}}}),
                     {"Deployment": 1, "Secret": 3, "Ingress": 1}, id="replicated-postgres-tls"),
        pytest.param({"signingKeys": {"existingSecret": "keys"},
                      "registry": {"existingSecret": "push"}, "ingress": {"enabled": False}},
                     {"Secret": 0, "Ingress": 0}, id="existing-secrets-no-ingress"),
    ],
)  # fmt: skip
def test_chart_renders_valid_objects(overrides: dict[str, Any], kinds: dict[str, int]) -> None:
    objects, notes = render(overrides)
    for obj in objects:
        validate_core(obj)
    found = by_kind(objects)
    for kind, count in kinds.items():
        assert len(found.get(kind, [])) == count, kind
    (deployment,) = found["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in pod["containers"][0]["env"]}
    assert env["SLIPWAY_ENGINE"] == "knative"
    assert env["SLIPWAY_SOURCE_URL"] == "http://slipway-slipway.slipway.svc:8081"
    assert pod["serviceAccountName"] == "slipway-slipway"
    assert "{{.Tag}}--{{.Name}}" in notes


def test_metadata_server_is_a_service_pods_reach_by_their_own_address() -> None:
    objects, _ = render(REQUIRED, {"targetNamespace": "apps", "platformId": "prod"})
    found = by_kind(objects)
    (deployment,) = found["Deployment"]
    template = deployment["spec"]["template"]
    assert template["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
    slipway, metadata = template["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in slipway["env"]}
    host = "slipway-slipway-metadata.slipway.svc"
    assert env["SLIPWAY_METADATA_HOST"] == host  # rendered into every revision's env
    assert env["SLIPWAY_PLATFORM_ID"] == "prod"
    assert env["SLIPWAY_SIGNING_KEY_FILE"] == "/etc/slipway/keys/signing-key.pem"
    mounts = {m["name"]: m["mountPath"] for m in slipway["volumeMounts"]}
    assert env["SLIPWAY_SIGNING_KEY_FILE"].startswith(mounts["keys"] + "/")
    # The container runs the real CLI command; its options must parse.
    assert metadata["args"][0] == "metadata"
    options = dict(a.removeprefix("--").split("=", 1) for a in metadata["args"][1:])
    assert options == {
        "engine": "knative", "namespace": "apps", "bind": "0.0.0.0", "port": "8080",
        "keys-dir": "/var/lib/slipway/keys", "platform": "prod",
        "issuer": "https://slipway.example.com", "domain": "apps.example.com",
    }  # fmt: skip
    assert {m["mountPath"] for m in metadata["volumeMounts"]} == {"/var/lib/slipway"}
    (service,) = [s for s in found["Service"] if s["metadata"]["name"].endswith("-metadata")]
    assert f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc" == host
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == 80  # GCE_METADATA_HOST carries no port
    assert port["targetPort"] in {p["name"] for p in metadata["ports"]}
    (container_port,) = metadata["ports"]
    assert str(container_port["containerPort"]) == options["port"]


def test_replicas_need_postgresql() -> None:
    with pytest.raises(TemplateFail, match="needs PostgreSQL"):
        render(REQUIRED, {"replicaCount": 2})
    with pytest.raises(TemplateFail, match="needs PostgreSQL"):
        render(REQUIRED, {"replicaCount": 2, "database": {"url": "sqlite:////data/x.db"}})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param({"registry": REQUIRED["registry"]}, "signingKeys.privateKeyPem",
                     id="signing-key"),
        pytest.param({"signingKeys": REQUIRED["signingKeys"]}, "registry.dockerConfigJson",
                     id="registry-credentials"),
    ],
)  # fmt: skip
def test_required_values(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(TemplateFail, match=message):
        render(overrides)


def test_role_grants_exactly_what_the_code_calls() -> None:
    objects, _ = render(REQUIRED, {"targetNamespace": "apps"})
    (role,) = by_kind(objects)["Role"]
    assert role["metadata"]["namespace"] == "apps"
    granted = {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert granted == {
        (apply.KSERVICES.group, "services"): {"get", "list", "watch", "create", "patch", "delete"},
        (apply.KREVISIONS.group, "revisions"): {"get", "list", "watch"},
        (apply.JOBS.group, "jobs"): {"create", "get", "list", "watch", "delete"},
        ("", "pods"): {"get", "list"},
        ("", "pods/log"): {"get"},
        ("", "secrets"): {"get", "create"},
        ("security.istio.io", "requestauthentications"): {"get", "list", "create", "patch",
                                                          "delete"},
        ("security.istio.io", "authorizationpolicies"): {"get", "list", "create", "patch",
                                                         "delete"},
    }  # fmt: skip
    (binding,) = by_kind(objects)["RoleBinding"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "slipway-slipway", "namespace": "slipway"}
    ]


@pytest.mark.parametrize(
    "source",
    ["{{ range .Values.x }}{{ end }}", "{{ $x := 1 }}", '{{ lookup "v1" "Secret" "a" "b" }}',
     "{{ tpl .Values.x . }}"],
)  # fmt: skip
def test_evaluator_refuses_what_it_does_not_implement(source: str) -> None:
    with pytest.raises(Unsupported):
        parse(source)
        render_chart({"t.yaml": source}, values={"x": []}, release=RELEASE, chart={})


def test_the_chart_runs_the_image_scripts_image_builds() -> None:
    """scripts/image tags slipway/slipway:<pipeline.__version__>; the chart must ask for it."""
    import pipeline

    chart_meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["tag"] == chart_meta["appVersion"] == pipeline.__version__
    assert values["image"]["repository"] == "slipway/slipway"
