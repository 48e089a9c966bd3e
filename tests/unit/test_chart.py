"""The Helm chart, rendered and linted by the real helm (tests/unit/helm.py runs the pinned
v3.22.0 that `scripts/tools helm` builds): every object `helm template` prints must pass
`kubernetes-validate` (strict, the Kubernetes version helm renders for), the Role must grant what
pipeline/knative/apply.py calls and nothing else, and values the chart refuses must stop helm with
the chart's own message. `helm install` into the real cluster: tests/knative/test_chart_install.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.knative import apply
from tests.unit import helm
from tests.unit.helm import CHART, HelmFailed
from tests.unit.kubeschemas import validate_core

REQUIRED = {
    "signingKeys": {
        "privateKeyPem": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
    },
    "registry": {"dockerConfigJson": '{"auths": {"registry.example.com": {"auth": "eDp5"}}}'},
}
REPLICATED = {
    "replicaCount": 3, "targetNamespace": "apps",
    "database": {"url": "postgresql://s:p@db/slipway"},
    "persistence": {"accessMode": "ReadWriteMany", "storageClassName": "nfs"},
    "ingress": {"className": "nginx", "tlsSecretName": "tls",
                "annotations": {"a.example.com/b": "c"}},
}  # fmt: skip
EXISTING_SECRETS = {
    "signingKeys": {"existingSecret": "keys"},
    "registry": {"existingSecret": "push"},
    "ingress": {"enabled": False},
}
# Each case is a list of override files, given to helm in order (helm merges them).
CASES = [
    pytest.param((REQUIRED,), {"Deployment": 1, "Service": 2, "ServiceAccount": 1, "Role": 1,
                               "RoleBinding": 1, "PersistentVolumeClaim": 1, "Secret": 2,
                               "Ingress": 1}, id="defaults"),
    pytest.param((REQUIRED, REPLICATED), {"Deployment": 1, "Secret": 3, "Ingress": 1},
                 id="replicated-postgres-tls"),
    pytest.param((EXISTING_SECRETS,), {"Secret": 0, "Ingress": 0},
                 id="existing-secrets-no-ingress"),
]  # fmt: skip


def by_kind(objects: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        out.setdefault(obj["kind"], []).append(obj)
    return out


@pytest.mark.parametrize(("overrides", "kinds"), CASES)
def test_chart_renders_valid_objects(overrides: tuple[dict[str, Any], ...],
                                     kinds: dict[str, int]) -> None:  # fmt: skip
    objects = helm.template(*overrides)
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
    # The notes print Knative's own templates for the user to paste: helm must not expand them.
    notes = helm.notes(*overrides)
    assert '"domain-template":"{{.Name}}.{{.Domain}}"' in notes
    assert '"tag-template":"{{.Tag}}--{{.Name}}"' in notes


@pytest.mark.parametrize(("overrides", "kinds"), CASES)
def test_chart_passes_helm_lint(overrides: tuple[dict[str, Any], ...],
                                kinds: dict[str, int]) -> None:  # fmt: skip
    done = helm.lint(*overrides)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout
    assert "[WARNING]" not in done.stdout and "[ERROR]" not in done.stdout
    assert "Missing required value" not in done.stderr


def test_lint_reports_a_template_that_cannot_render() -> None:
    """A value of the wrong shape (a string where the chart reads image.repository) is an error
    lint finds by executing the templates, and names where."""
    done = helm.lint(REQUIRED, {"image": "slipway/slipway:0.1.0"})
    assert done.returncode != 0
    assert "[ERROR] templates/" in done.stdout
    assert "deployment.yaml" in done.stdout and "<.Values.image.repository>" in done.stdout


def test_lint_does_not_enforce_required_values_template_does() -> None:
    """helm lint runs `required` and `fail` in lint mode: logged, not failed. So the checks below
    (replicas need PostgreSQL, required values) go through `helm template`, as an install would."""
    done = helm.lint({"replicaCount": 2})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Missing required value: set signingKeys.privateKeyPem" in done.stderr
    assert "Fail: replicaCount > 1 needs PostgreSQL" in done.stderr


def test_metadata_server_is_a_service_pods_reach_by_their_own_address() -> None:
    objects = helm.template(REQUIRED, {"targetNamespace": "apps", "platformId": "prod"})
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


@pytest.mark.parametrize(
    "database", [pytest.param({}, id="sqlite-default"),
                 pytest.param({"database": {"url": "sqlite:////data/x.db"}}, id="sqlite-url")],
)  # fmt: skip
def test_replicas_need_postgresql(database: dict[str, Any]) -> None:
    with pytest.raises(HelmFailed) as caught:
        helm.template(REQUIRED, {"replicaCount": 2}, database)
    assert caught.value.returncode != 0
    assert caught.value.stderr.startswith(
        "Error: execution error at (slipway/templates/deployment.yaml:"
    )
    assert "replicaCount > 1 needs PostgreSQL: set database.url to postgresql://" in (
        caught.value.stderr
    )


@pytest.mark.parametrize(
    ("overrides", "template", "message"),
    [
        pytest.param({"registry": REQUIRED["registry"]}, "secrets.yaml",
                     "set signingKeys.privateKeyPem (openssl genpkey -algorithm RSA -pkeyopt "
                     "rsa_keygen_bits:2048) or signingKeys.existingSecret", id="signing-key"),
        pytest.param({"signingKeys": REQUIRED["signingKeys"]}, "secrets.yaml",
                     "set registry.dockerConfigJson (push credentials) or "
                     "registry.existingSecret", id="registry-credentials"),
    ],
)  # fmt: skip
def test_required_values(overrides: dict[str, Any], template: str, message: str) -> None:
    with pytest.raises(HelmFailed) as caught:
        helm.template(overrides)
    assert caught.value.returncode != 0
    assert caught.value.stderr.startswith(
        f"Error: execution error at (slipway/templates/{template}:"
    )
    assert message in caught.value.stderr


def test_extra_env_comes_after_the_charts_own_in_the_control_plane_only() -> None:
    extra = [
        {"name": "HTTP_PROXY", "value": "http://proxy.example.com:3128"},
        {"name": "SLIPWAY_READINESS_TIMEOUT", "valueFrom": {
            "configMapKeyRef": {"name": "tuning", "key": "readiness"}}},
    ]  # fmt: skip
    objects = helm.template(REQUIRED, {"extraEnv": extra})
    for obj in objects:
        validate_core(obj)
    (deployment,) = by_kind(objects)["Deployment"]
    slipway, metadata = deployment["spec"]["template"]["spec"]["containers"]
    assert slipway["env"][-2:] == extra
    assert [e["name"] for e in slipway["env"]].count("SLIPWAY_ENGINE") == 1
    assert not any(e["name"] == "HTTP_PROXY" for e in metadata.get("env") or [])
    linted = helm.lint(REQUIRED, {"extraEnv": extra})
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_role_grants_exactly_what_the_code_calls() -> None:
    objects = helm.template(REQUIRED, {"targetNamespace": "apps"})
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


def test_no_helm_fails_the_tests_with_the_reason(tmp_path: Path) -> None:
    """A stand-in for scripts/tools on a machine that cannot build helm (no Go): the chart tests
    must fail, saying why, rather than skip."""
    tools = tmp_path / "tools"
    tools.write_text("#!/bin/sh\necho 'error: Go is not installed' >&2\nexit 1\n")
    tools.chmod(0o755)
    with pytest.raises(pytest.fail.Exception) as caught:
        helm.helm_binary(tools)
    assert "helm is missing and could not be built; the chart was NOT checked" in str(caught.value)
    assert "exited 1" in str(caught.value) and "error: Go is not installed" in str(caught.value)


def test_the_chart_runs_the_image_scripts_image_builds() -> None:
    """scripts/image tags slipway/slipway:<pipeline.__version__>; the chart must ask for it."""
    import pipeline

    chart_meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["tag"] == chart_meta["appVersion"] == pipeline.__version__
    assert values["image"]["repository"] == "slipway/slipway"
