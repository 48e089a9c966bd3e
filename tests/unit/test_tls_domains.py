"""Domain mappings: the DomainMapping document (parse and refuse by name), the routes a mapped
host gets (pure), the rows (one host, one service; migration 0005 up and down), and the Knative
engine's DomainMappings rendered against Knative's own CRD schema (applied and pruned against the
real API server in tests/knative/test_kubeapi.py)."""

from __future__ import annotations

import functools
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import sqlalchemy as sa
import yaml
from alembic import command
from alembic.config import Config

from pipeline.core.errors import Conflict, InvalidSpec, NotFound
from pipeline.dataplane.model import DataPlane, Route, Split
from pipeline.knative.domainmappings import render_domain_mapping
from pipeline.spec.domainmappings import manifest, parse_domain_mapping
from pipeline.store import db
from pipeline.store.domains import DomainMapping, DomainMappings
from pipeline.tls.plane import public_hosts, with_mappings
from tests.unit.kubeschemas import closed, shared_fixtures

SHOP = manifest(host="shop.example.com", service="shop")
DM = "/apis/serving.knative.dev/v1beta1/namespaces/apps/domainmappings"


def mapping(host: str, service: str) -> DomainMapping:
    return DomainMapping(host=host, service=service, created_at=datetime(2027, 1, 1, tzinfo=UTC))


# --- the document -------------------------------------------------------------------------------


def test_the_document_round_trips_and_server_fields_are_dropped() -> None:
    pasted = {
        **SHOP,
        "metadata": {"name": "shop.example.com", "namespace": "default", "uid": "x",
                     "resourceVersion": "7", "annotations": {"a": "b"}},
        "status": {"url": "https://shop.example.com"},
    }  # fmt: skip
    document = parse_domain_mapping(yaml.safe_dump(pasted))
    assert (document.host, document.service) == ("shop.example.com", "shop")
    assert parse_domain_mapping(SHOP).host == "shop.example.com"


def edited(path: str, value: Any) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(yaml.safe_dump(SHOP))
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        node = node[part]
    node[last] = value
    return doc


@pytest.mark.parametrize(
    ("document", "said"),
    [
        pytest.param(edited("apiVersion", "serving.knative.dev/v1alpha1"),
                     "apiVersion: expected 'serving.knative.dev/v1beta1'", id="old-api-version"),
        pytest.param(edited("kind", "Service"), "kind: expected 'DomainMapping'", id="kind"),
        pytest.param(edited("metadata.name", "*.example.com"), "metadata.name: invalid host",
                     id="wildcard-host"),
        pytest.param(edited("metadata.name", "example"), "metadata.name: invalid host",
                     id="one-label"),
        pytest.param(edited("metadata.name", "shop.example.com:8443"), "invalid host",
                     id="with-a-port"),
        pytest.param(edited("metadata.namespace", "prod"), "metadata.namespace: Slipway has one",
                     id="namespace"),
        pytest.param(edited("spec.ref.kind", "Route"), "spec.ref.kind: expected 'Service'",
                     id="ref-to-a-route"),
        pytest.param(edited("spec.ref.name", "Shop"), "spec.ref.name: invalid service name",
                     id="ref-name"),
        pytest.param(edited("spec.tls", {"secretName": "shop-tls"}),
                     "spec.tls: Slipway brings the certificate", id="tls-secret"),
        pytest.param(edited("spec.ref.address", "x"), "spec.ref.address:", id="ref-address"),
        pytest.param(edited("spec.rev", {}), "spec.rev: unknown field; did you mean 'ref'?",
                     id="typo"),
        pytest.param("a: [", "not valid YAML", id="bad-yaml"),
        pytest.param("- 1\n- 2\n", "expected a Knative DomainMapping", id="a-list"),
        pytest.param("a: 1\n---\nb: 2\n", "expected one DomainMapping document, found 2",
                     id="two-documents"),
    ],
)  # fmt: skip
def test_refused_documents_name_the_field(document: Any, said: str) -> None:
    with pytest.raises(InvalidSpec) as refused:
        parse_domain_mapping(document)
    assert said in refused.value.message


# --- routes ------------------------------------------------------------------------------------


def route(host: str, service: str, **kw: Any) -> Route:
    split = (Split(backend=f"rev-{service}-00001", percent=100),)
    return Route(host=host, service=service, splits=split, **kw)


PLANE = DataPlane(
    routes=(
        route("shop.localhost", "shop", private=True),
        route("v2--shop.localhost", "shop"),
        route("db.localhost", "db", internal_only=True),
    )
)


def test_a_mapped_host_takes_its_services_split_and_access() -> None:
    mapped = with_mappings(
        PLANE,
        [mapping("www.example.com", "shop"), mapping("idle.example.com", "idle"),
         mapping("shop.localhost", "db"), mapping("db.example.com", "db")],
        domain="localhost",
    )  # fmt: skip
    hosts = {r.host: r for r in mapped.routes}
    assert hosts["www.example.com"] == route("www.example.com", "shop", private=True)
    assert hosts["db.example.com"].internal_only  # a cluster-local service stays internal
    assert "idle.example.com" not in hosts  # no route yet: nothing to follow
    assert hosts["shop.localhost"].service == "shop"  # never shadows a platform host
    assert public_hosts(mapped) == ["shop.localhost", "v2--shop.localhost", "www.example.com"]
    assert with_mappings(PLANE, [], domain="localhost") is PLANE


# --- rows --------------------------------------------------------------------------------------


@pytest.fixture
def sessions(tmp_path: Path) -> Any:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate(engine)
    return db.session_factory(engine)


def test_a_host_maps_to_one_service(sessions: Any) -> None:
    domains = DomainMappings(sessions)
    assert domains.put(host="shop.example.com", service="shop")[1] is True
    assert domains.put(host="shop.example.com", service="shop")[1] is False
    with pytest.raises(Conflict, match="already mapped to service 'shop'"):
        domains.put(host="shop.example.com", service="blog")
    assert [(m.host, m.service) for m in domains.list()] == [("shop.example.com", "shop")]
    assert domains.delete("shop.example.com").service == "shop"
    with pytest.raises(NotFound, match="is not mapped"):
        domains.delete("shop.example.com")
    assert domains.find("shop.example.com") is None


def test_migration_0005_upgrades_and_downgrades(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate(engine)
    assert {"domain_mappings", "certificates"} <= set(sa.inspect(engine).get_table_names())
    config = Config()
    config.set_main_option("script_location", str(db.MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0004")
    tables = set(sa.inspect(engine).get_table_names())
    assert not {"domain_mappings", "certificates"} & tables and "deployed_refs" in tables


# --- Knative -----------------------------------------------------------------------------------


@functools.cache
def domain_mapping_schema() -> dict[str, Any]:
    """Knative Serving's DomainMapping CRD: from the shared fixtures when they carry it, else
    from `scripts/tools knative-crds` (which scripts/test runs), else the Go module cache."""
    candidates = [shared_fixtures() / "knative-crds" / "domain-mapping.yaml"]
    tools = Path(os.environ.get("SLIPWAY_TOOLS_CACHE", "/var/cache/slipway/tools"))
    candidates += sorted(tools.glob("knative-crds-v*/config/domain-mapping.yaml"), reverse=True)
    cache = Path(os.environ.get("SLIPWAY_GO_CACHE", "/var/cache/slipway/go")) / "mod"
    candidates += sorted(
        (cache / "knative.dev").glob("serving@v*/config/core/300-resources/domain-mapping.yaml"),
        reverse=True,
    )
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        pytest.skip(
            "!!! no DomainMapping CRD found, so the rendered manifest was NOT checked against it: "
            "shared/fixtures/knative-crds has no domain-mapping.yaml and the knative.dev/serving "
            "module is not in the tools or Go cache; `scripts/tools knative-crds` puts it there !!!"
        )
    crd = yaml.safe_load(found.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    return dict(closed(version["schema"]["openAPIV3Schema"]))


def test_rendered_domain_mapping_fits_knatives_schema() -> None:
    rendered = render_domain_mapping(mapping("shop.example.com", "shop"),
                                     namespace="apps", platform="prod")  # fmt: skip
    jsonschema.validate(rendered, domain_mapping_schema())
    assert rendered == {
        "apiVersion": "serving.knative.dev/v1beta1",
        "kind": "DomainMapping",
        "metadata": {
            "name": "shop.example.com",
            "namespace": "apps",
            "labels": {"app.kubernetes.io/managed-by": "slipway", "slipway.dev/platform": "prod",
                       "slipway.dev/service": "shop"},
        },
        "spec": {"ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                         "name": "shop", "namespace": "apps"}},
    }  # fmt: skip
