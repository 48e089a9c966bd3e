"""The key register (`core.annotations`): one spelling of every key, one grammar per key, the
same on both engines.

The invoker examples are read out of the README and docs/, so what the docs promise is what is
tested: each parses next to Docker (`identity.access`, the HAProxy invoker pairs) and on Knative
(the Knative Service and its Istio policies render), and the Istio principal is exactly the `sub`
the metadata server mints for that caller.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
import yaml

from pipeline.core import annotations
from pipeline.core.annotations import Access, access_of, read_access
from pipeline.core.errors import InvalidInput, InvalidSpec
from pipeline.core.records import Service
from pipeline.deploy.gitpush import deploy_branch
from pipeline.identity import access, keys
from pipeline.identity.callers import Caller
from pipeline.identity.metadata import Issuer, answer
from pipeline.knative.engine import KnativeEngine
from pipeline.reconcile.routing import build_plane
from pipeline.spec import parse_service
from pipeline.spec.autoscaling import AutoscalingAnnotations
from tests.unit.factories import revision, service, snapshot
from webhooks.tracking import tracking_of

ROOT = Path(__file__).resolve().parents[2]
ISSUER = "https://slipway.example.com"
PRIVATE = annotations.PRIVATE_ANNOTATION
INVOKERS = annotations.INVOKERS_ANNOTATION
IDENTITY = "/computeMetadata/v1/instance/service-accounts/default/identity"


def readme_invoker_examples() -> list[str]:
    """Every `slipway.dev/invokers: "..."` value the README and docs/ show."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    text = "\n".join(page.read_text() for page in pages)
    return re.findall(re.escape(INVOKERS) + r':\s*"([^"]*)"', text)


README_EXAMPLES = readme_invoker_examples()


def with_annotations(name: str, found: dict[str, str]) -> Service:
    svc = service(name)
    svc.spec["metadata"] = {"name": name, "annotations": found}
    return svc


# --- one spelling ---------------------------------------------------------------------------------

_KEY = re.compile(r"^([a-z0-9-]+\.)*(slipway|knative)\.dev/[A-Za-z0-9._-]+$")


def _annotation_nodes(tree: ast.AST) -> set[int]:
    """Nodes inside type annotations: a `Literal[...]` type has to spell its value."""
    roots: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign | ast.arg) and node.annotation is not None:
            roots.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            roots.append(node.returns)
    return {id(inner) for root in roots for inner in ast.walk(root)}


def test_no_key_is_spelled_outside_the_register() -> None:
    """A string literal that *is* a key (not prose naming one) appears only in the register."""
    register = ROOT / "pipeline" / "core" / "annotations.py"
    found = []
    for top in ("pipeline", "webhooks"):
        for path in sorted((ROOT / top).rglob("*.py")):
            tree = ast.parse(path.read_text())
            in_types = _annotation_nodes(tree)
            found += [
                f"{path.relative_to(ROOT)}:{node.lineno}: {node.value}"
                for node in ast.walk(tree)
                if isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and _KEY.match(node.value)
                and id(node) not in in_types
                and path != register
            ]
    assert not found, "declare these in pipeline/core/annotations.py:\n" + "\n".join(found)


# --- the invoker grammar --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        pytest.param({}, Access(), id="public-by-default"),
        pytest.param({PRIVATE: "true"}, Access(private=True), id="private"),
        pytest.param({PRIVATE: " True "}, Access(private=True), id="private-any-case"),
        pytest.param({PRIVATE: "false"}, Access(), id="public-said-so"),
        pytest.param({PRIVATE: "true", INVOKERS: " a, b ,a,"},
                     Access(private=True, invokers=("service:a", "service:b")),
                     id="bare-names-are-services-deduplicated"),
        pytest.param({INVOKERS: "service:caller,user:alice"},
                     Access(invokers=("service:caller", "user:alice")), id="members"),
        pytest.param({INVOKERS: "checkout,service:checkout,user:alice"},
                     Access(invokers=("service:checkout", "user:alice")),
                     id="both-forms-one-member"),
    ],
)  # fmt: skip
def test_access_of(found: dict[str, str], expected: Access) -> None:
    assert access_of(found) == expected == read_access(found)


@pytest.mark.parametrize(
    ("found", "path", "message"),
    [
        pytest.param({PRIVATE: "yes"}, PRIVATE, "expected", id="private-not-bool"),
        pytest.param({INVOKERS: "Billing"}, INVOKERS, "invalid invoker 'Billing'",
                     id="invoker-not-a-service-name"),
        pytest.param({INVOKERS: "group:admins"}, INVOKERS, "service:<service name>",
                     id="unknown-kind"),
        pytest.param({INVOKERS: "user:"}, INVOKERS, "user:<name>", id="empty-user"),
        pytest.param({INVOKERS: "service:a b"}, INVOKERS, "invalid invoker", id="space"),
    ],
)  # fmt: skip
def test_access_of_refuses_what_it_cannot_read(
    found: dict[str, str], path: str, message: str
) -> None:
    """The Knative engine refuses; next to Docker the same entries are skipped (below)."""
    with pytest.raises(InvalidSpec, match=re.escape(message)) as caught:
        access_of(found)
    assert caught.value.path == f"metadata.annotations.{path}"
    lenient = read_access(found)
    assert lenient.refused and lenient.refused[0][0] == path
    assert lenient.invokers == () and lenient.private is False


def test_the_data_plane_skips_what_the_knative_engine_refuses() -> None:
    found = {PRIVATE: "true", INVOKERS: "service:caller, user:alice,bad entry"}
    assert read_access(found).invokers == ("service:caller", "user:alice")
    with pytest.raises(InvalidSpec):
        access_of(found)


@pytest.mark.parametrize(
    ("member", "ok"),
    [
        pytest.param("service:caller", True, id="service"),
        pytest.param("user:alice", True, id="user"),
        pytest.param("user:a.b-c_d", True, id="user-punctuation"),
        pytest.param("service:Caller", False, id="service-uppercase"),
        pytest.param("group:admins", False, id="unknown-kind"),
        pytest.param("service:a b", False, id="space"),
        pytest.param("user:", False, id="empty-name"),
        pytest.param("caller", False, id="no-kind: a member is always explicit"),
        pytest.param("service:" + "a" * 48, False, id="longer-than-any-service-name"),
    ],
)
def test_members(member: str, ok: bool) -> None:
    """What the API and CLI take for add/remove-invoker, and what a token's `sub` holds."""
    if ok:
        assert annotations.parse_member(member) == member
    else:
        with pytest.raises(InvalidInput, match="invalid invoker"):
            annotations.parse_member(member)


# --- the README's examples, on both engines -------------------------------------------------------


def test_the_readme_shows_both_forms() -> None:
    assert "service:caller,user:alice" in README_EXAMPLES
    assert "checkout,billing" in README_EXAMPLES


class _NoCluster:
    """KnativeEngine.manifests only renders; no call reaches this."""

    namespace = "apps"
    platform = "prod"


def _knative_manifests(found: dict[str, str]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    cluster: Any = _NoCluster()
    engine = KnativeEngine(cluster, issuer=ISSUER, domain="apps.example.com")
    target = with_annotations("target", found)
    return engine.manifests(service=target, revisions=[revision("target", 1)])


def _principals(policies: list[dict[str, Any]]) -> list[str]:
    (authz,) = [p for p in policies if p["kind"] == "AuthorizationPolicy"]
    principals: list[str] = authz["spec"]["rules"][0]["from"][0]["source"]["requestPrincipals"]
    return principals


@pytest.mark.parametrize("example", README_EXAMPLES)
def test_readme_examples_parse_on_both_engines(example: str) -> None:
    found = {PRIVATE: "true", INVOKERS: example}
    members = [annotations.parse_invoker(entry.strip()) for entry in example.split(",")]
    # Next to Docker: the invoker pairs HAProxy checks `<service>/<sub>` against.
    target = with_annotations("target", found)
    plane = build_plane(
        snapshot([target], [revision("target", 1)]),
        instances=[], ready=set(), draining=set(), domain="localhost",
    )  # fmt: skip
    assert access.invokers(target.spec) == members
    assert plane.invokers == tuple(sorted(("target", m) for m in members))
    # On Knative: the Service and the Istio policies render, principals `<iss>/<member>`.
    ksvc, policies = _knative_manifests(found)
    assert ksvc is not None and len(policies) == 2
    assert _principals(policies) == [f"{ISSUER}/{m}" for m in members]


@pytest.mark.parametrize("invoker", ["checkout", "service:checkout"])
def test_istio_principal_is_the_sub_the_metadata_server_mints(invoker: str, tmp_path: Path) -> None:
    store = keys.KeyStore(tmp_path)
    store.ensure()
    issuer = Issuer(issuer=ISSUER, domain="apps.example.com", project="prod", keys=store)
    caller = Caller(service="checkout", revision="checkout-00001", instance="checkout-00001-pod")
    reply = answer(
        method="GET",
        target=f"{IDENTITY}?audience=http://target.apps.example.com",
        headers={"metadata-flavor": "Google"},
        peer="10.0.0.7",
        lookup={"10.0.0.7": caller}.get,
        issuer=issuer,
    )
    assert reply.status == 200, reply.body
    claims = pyjwt.decode(reply.body, options={"verify_signature": False})
    _, policies = _knative_manifests({PRIVATE: "true", INVOKERS: invoker})
    assert _principals(policies) == [f"{claims['iss']}/{claims['sub']}"]


# --- the repository a service follows, read once for git push and webhooks ---------------------


@pytest.mark.parametrize(
    ("found", "branch"),
    [
        pytest.param({}, "main", id="unset"),
        pytest.param({annotations.DEPLOY_BRANCH_ANNOTATION: "prod"}, "prod", id="set"),
        pytest.param({annotations.DEPLOY_BRANCH_ANNOTATION: " prod "}, "prod", id="spaces"),
        pytest.param({annotations.DEPLOY_BRANCH_ANNOTATION: ""}, "main", id="empty"),
    ],
)
def test_git_push_and_webhooks_agree_on_the_deploy_branch(
    found: dict[str, str], branch: str
) -> None:
    svc = with_annotations("hello", found)

    class _Store:
        def find_service(self, name: str) -> Service | None:
            return svc if name == "hello" else None

    assert annotations.deploy_branch(found) == branch
    assert deploy_branch(_Store(), "hello") == branch  # type: ignore[arg-type]
    assert tracking_of(svc).branch == branch
    assert deploy_branch(_Store(), "other") == "main"  # type: ignore[arg-type]


def test_k8s_labels_recognise_slipways_objects() -> None:
    assert annotations.k8s_labels(platform="prod", **{annotations.SERVICE_LABEL: "hello"}) == {
        "app.kubernetes.io/managed-by": "slipway",
        "slipway.dev/platform": "prod",
        "slipway.dev/service": "hello",
    }


# --- Knative's legacy autoscaling spellings, and empty annotations --------------------------------

SCALE = "autoscaling.knative.dev/"


def knative_service(template_metadata: Any, service_metadata: Any = None) -> str:
    """A Knative Service as YAML, with the metadata blocks as written (None: the key is there,
    nothing under it)."""
    meta = {"name": "hello", **({} if service_metadata is None else service_metadata)}
    doc = {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": meta,
           "spec": {"template": {"metadata": template_metadata,
                                 "spec": {"containers": [{"image": "r/x:1"}]}}}}  # fmt: skip
    return yaml.safe_dump(doc)


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        pytest.param({SCALE + "minScale": "1", SCALE + "maxScale": "5"},
                     AutoscalingAnnotations(min_scale=1, max_scale=5), id="legacy"),
        pytest.param({SCALE + "minScale": "2", SCALE + "min-scale": "2"},
                     AutoscalingAnnotations(min_scale=2), id="both-spellings-agreeing"),
        pytest.param({SCALE + "initialScale": "0", SCALE + "scaleDownDelay": "5m",
                      SCALE + "targetUtilizationPercentage": "80"},
                     AutoscalingAnnotations(initial_scale=0, scale_down_delay_seconds=300,
                                            target_utilization_percentage=80), id="other-legacy"),
    ],
)  # fmt: skip
def test_legacy_autoscaling_keys_read_like_the_current_ones(
    found: dict[str, str], expected: AutoscalingAnnotations
) -> None:
    parsed = parse_service(knative_service({"annotations": found}))
    assert parsed.template.autoscaling == expected
    # Kept as written: a pasted object round-trips, and Knative reads both spellings too.
    assert parsed.to_manifest()["spec"]["template"]["metadata"]["annotations"] == found


@pytest.mark.parametrize(
    ("found", "path", "message"),
    [
        pytest.param(
            {SCALE + "minScale": "1", SCALE + "min-scale": "2"}, "minScale",
            "'1' here but '2' in 'autoscaling.knative.dev/min-scale', the current spelling of the "
            "same setting (Knative reads 'autoscaling.knative.dev/min-scale'): keep "
            "'autoscaling.knative.dev/min-scale' and remove this one",
            id="both-spellings-disagreeing",
        ),
        pytest.param({SCALE + "maxScale": "many"}, "maxScale",
                     "expected a whole number of instances, 0 or more, got 'many'",
                     id="legacy-bad-value-named-as-written"),
        pytest.param({SCALE + "minScale": "5", SCALE + "maxScale": "2"}, "maxScale",
                     "max-scale 2 is below min-scale 5", id="legacy-bounds"),
        pytest.param({SCALE + "targetBurstCapacity": "200"}, "targetBurstCapacity",
                     "not supported by Slipway yet", id="legacy-knative-only"),
    ],
)  # fmt: skip
def test_legacy_autoscaling_keys_refused_as_written(
    found: dict[str, str], path: str, message: str
) -> None:
    with pytest.raises(InvalidSpec) as caught:
        parse_service(knative_service({"annotations": found}))
    assert caught.value.path == f"spec.template.metadata.annotations.{SCALE}{path}"
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("template_metadata", "service_metadata"),
    [
        pytest.param({"annotations": None}, {"annotations": None}, id="null-annotations"),
        pytest.param({"annotations": {}}, {"annotations": {}}, id="empty-annotations"),
        pytest.param({"labels": None}, {"labels": None}, id="null-labels"),
        pytest.param(None, None, id="null-template-metadata"),
    ],
)
def test_empty_metadata_blocks_are_no_metadata(
    template_metadata: Any, service_metadata: Any
) -> None:
    parsed = parse_service(knative_service(template_metadata, service_metadata))
    assert parsed.to_manifest() == parse_service(knative_service({})).to_manifest()


def test_annotations_keys_with_nothing_under_them_parse() -> None:
    """What a user writes with every annotation commented out."""
    text = """\
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
  annotations:
    # slipway.dev/private: "true"
spec:
  template:
    metadata:
      annotations:
        # autoscaling.knative.dev/minScale: "1"
    spec:
      containers:
        - image: r/x:1
"""
    parsed = parse_service(text)
    assert parsed.metadata.annotations == parsed.template.metadata.annotations == {}
