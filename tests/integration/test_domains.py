"""Custom domains (Knative DomainMappings) on the embedded engine, HTTPS off: a mapped host
routes to its service's traffic split through HAProxy, taken hosts are refused, the same YAML
works through the API, and an unmapped host stops routing."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import yaml

from pipeline.spec.domainmappings import manifest
from tests.integration.conftest import Slipway, write_app

pytestmark = pytest.mark.integration


def wait_status(slipway: Slipway, host: str, status: int) -> httpx.Response:
    """The first answer for `host` with `status`: a mapping routes from the next reconcile pass."""
    deadline = time.monotonic() + 15
    while True:
        resp = slipway.get(host)
        if resp.status_code == status or time.monotonic() > deadline:
            return resp
        time.sleep(0.2)


@pytest.fixture(scope="module")
def shop(slipway: Slipway, tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("apps")
    slipway.cli("deploy", "shop", "--source", str(write_app(folder / "shop", body="shop v1\n")))
    slipway.cli("deploy", "other", "--source", str(write_app(folder / "other", body="other\n")))
    return "shop"


def test_mapped_host_routes_to_the_service_split(
    slipway: Slipway, shop: str, tmp_path: Path
) -> None:
    out = slipway.cli("domains", "map", "shop.example.com", "--service", shop).stdout
    assert f"shop.example.com mapped to shop  http://shop.example.com:{slipway.ingress_port}" in out
    resp = wait_status(slipway, "shop.example.com", 200)
    assert (resp.status_code, resp.text) == (200, "shop v1\n")

    # A second revision at 0%, then half the traffic: the mapped host follows the split.
    slipway.cli(
        "deploy", "shop", "--source", str(write_app(tmp_path / "v2", body="shop v2\n")),
        "--no-traffic",
    )  # fmt: skip
    slipway.cli("traffic", "shop", "--to-revisions", "shop-00001=50,shop-00002=50")
    with httpx.Client(timeout=10) as client:
        bodies = {slipway.get("shop.example.com", client=client).text for _ in range(60)}
    assert bodies == {"shop v1\n", "shop v2\n"}

    listing = slipway.cli("domains", "list").stdout
    assert "shop.example.com" in listing and "shop" in listing
    described = slipway.cli("services", "describe", "shop").stdout
    assert "Domains: shop.example.com" in described
    slipway.cli("traffic", "shop", "--to-latest")


@pytest.mark.parametrize(
    ("host", "service", "said"),
    [
        pytest.param("shop.example.com", "other", "already mapped to service 'shop'",
                     id="mapped-to-another-service"),
        pytest.param("shop.localhost", "other", "is the URL of service 'shop'",
                     id="another-services-url"),
        pytest.param("commit-abc1234--shop.localhost", "other", "tag URL of service 'shop'",
                     id="another-services-tag-url"),
        pytest.param("localhost", "other", "invalid host", id="the-bare-domain"),
        pytest.param("new.localhost", "other", "under the platform domain", id="under-domain"),
        pytest.param("Shop.Example.com", "other", "invalid host", id="not-lowercase"),
        pytest.param("x.example.com", "missing", "service 'missing' not found",
                     id="no-such-service"),
    ],
)  # fmt: skip
def test_taken_or_bad_hosts_are_refused(
    slipway: Slipway, shop: str, host: str, service: str, said: str
) -> None:
    slipway.cli("domains", "map", "shop.example.com", "--service", shop)
    result = slipway.cli("domains", "map", host, "--service", service, check=False)
    assert result.returncode == 1
    assert said in result.stderr
    assert "shop.example.com" in slipway.cli("domains", "list").stdout  # nothing else moved


def test_same_yaml_through_the_api_and_unmap(slipway: Slipway, shop: str, tmp_path: Path) -> None:
    document = manifest(host="api.example.net", service="other")
    headers = {"Authorization": f"Bearer {slipway.token}", "Content-Type": "application/yaml"}
    url = f"http://127.0.0.1:{slipway.api_port}/v1/domainmappings/api.example.net"
    resp = httpx.put(url, content=yaml.safe_dump(document), headers=headers, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.json()["manifest"] == document
    assert wait_status(slipway, "api.example.net", 200).text == "other\n"

    wrong = {**document, "spec": {"ref": {"kind": "Route", "name": "other"}}}
    refused = httpx.put(url, content=yaml.safe_dump(wrong), headers=headers, timeout=30)
    assert refused.status_code == 400
    assert "spec.ref.kind" in refused.json()["detail"]

    (tmp_path / "dm.yaml").write_text(yaml.safe_dump(manifest(host="b.example.net", service=shop)))
    replaced = slipway.cli("domains", "replace", str(tmp_path / "dm.yaml")).stdout
    assert "b.example.net mapped to shop" in replaced

    unmapped = slipway.cli("domains", "unmap", "api.example.net").stdout
    assert "Unmapped api.example.net (was other)" in unmapped
    gone = wait_status(slipway, "api.example.net", 404)
    assert gone.status_code == 404
    assert "no service answers to host 'api.example.net'" in gone.text
    missing = slipway.cli("domains", "unmap", "api.example.net", check=False)
    assert missing.returncode == 1 and "is not mapped" in missing.stderr
