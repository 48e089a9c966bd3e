"""tls.hosts and tls.renewals, pure: who signs which name, which certificate covers a host, which
hosts a mapping may take, and when a certificate is ordered, renewed, retried or forgotten."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.store.certificates import Certificate
from pipeline.tls import hosts, renewals

NOW = datetime(2027, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("name", "local"),
    [
        pytest.param("localhost", True, id="localhost"),
        pytest.param("hello.localhost", True, id="under-localhost"),
        pytest.param("commit-abc1234--hello.localhost", True, id="tag-under-localhost"),
        pytest.param("shop.test", True, id="test"),
        pytest.param("printer.local", True, id="mdns"),
        pytest.param("nas.home.arpa", True, id="home-arpa"),
        pytest.param("db.internal", True, id="internal"),
        pytest.param("intranet", True, id="single-label"),
        pytest.param("127.0.0.1", True, id="ipv4"),
        pytest.param("::1", True, id="ipv6"),
        pytest.param("*.apps.localhost", True, id="local-wildcard"),
        pytest.param("shop.example.com", False, id="public"),
        pytest.param("localhost.example.com", False, id="localhost-label-in-a-public-name"),
        pytest.param("mytest.com", False, id="suffix-is-not-a-label"),
    ],
)  # fmt: skip
def test_names_no_public_ca_signs(name: str, local: bool) -> None:
    assert hosts.is_local(name) is local
    assert hosts.issuer_of(name, acme=True) == ("local" if local else "acme")
    assert hosts.issuer_of(name, acme=False) == "local"


@pytest.mark.parametrize(
    ("host", "wildcard", "name"),
    [
        pytest.param("hello.apps.example.com", False, "hello.apps.example.com", id="own"),
        pytest.param("hello.apps.example.com", True, "*.apps.example.com", id="service-wildcard"),
        pytest.param("canary--hello.apps.example.com", True, "*.apps.example.com", id="tag"),
        pytest.param("apps.example.com", True, "*.apps.example.com", id="bare-domain"),
        pytest.param("a.b.apps.example.com", True, "a.b.apps.example.com", id="two-deep"),
        pytest.param("shop.example.org", True, "shop.example.org", id="mapped-host"),
    ],
)  # fmt: skip
def test_certificate_covering_a_host(host: str, wildcard: bool, name: str) -> None:
    assert hosts.certificate_name(host, domain="apps.example.com", wildcard=wildcard) == name


def test_wanted_certificates_include_the_bare_domain_and_the_wildcards_names() -> None:
    domain = "apps.example.com"
    assert hosts.wanted(["hello.apps.example.com"], domain=domain, wildcard=False) == {
        "apps.example.com": ("apps.example.com",),
        "hello.apps.example.com": ("hello.apps.example.com",),
    }
    wanted = hosts.wanted(["a.apps.example.com", "shop.example.org"], domain=domain, wildcard=True)
    assert wanted == {
        "*.apps.example.com": ("*.apps.example.com", "apps.example.com"),
        "shop.example.org": ("shop.example.org",),
    }


@pytest.mark.parametrize(
    ("host", "service", "said"),
    [
        pytest.param("shop.example.com", "shop", None, id="free"),
        pytest.param("www.example.com", "shop", None, id="same-service-again"),
        pytest.param("www.example.com", "blog", "already mapped to service 'shop'", id="taken"),
        pytest.param("localhost", "shop", "the bare domain", id="bare-domain"),
        pytest.param("shop.localhost", "blog", "is the URL of service 'shop'", id="a-service-url"),
        pytest.param("v2--shop.localhost", "blog", "is the tag URL of service 'shop'", id="tag"),
        pytest.param("future.localhost", "shop", "under the platform domain", id="under-domain"),
        pytest.param("a.shop.localhost", "shop", "under the platform domain", id="deeper"),
    ],
)  # fmt: skip
def test_mapping_refusals(host: str, service: str, said: str | None) -> None:
    refusal = hosts.mapping_refusal(
        host,
        service=service,
        domain="localhost",
        services=["shop", "blog"],
        mapped={"www.example.com": "shop"},
    )
    assert refusal == said if said is None else said in (refusal or "")


# --- renewals ----------------------------------------------------------------------------------


def issued(**changes: object) -> Certificate:
    cert = Certificate(
        name="hello.example.com",
        hosts=("hello.example.com",),
        issuer="acme",
        chain_pem="-----BEGIN CERTIFICATE-----",
        serial="1a",
        not_before=NOW - 30 * DAY,
        not_after=NOW + 60 * DAY,
        renew_at=renewals.renew_time(NOW - 30 * DAY, NOW + 60 * DAY),
        status="Ready",
    )
    return replace(cert, **changes)  # type: ignore[arg-type]


def test_renewal_when_a_third_of_the_life_is_left() -> None:
    assert renewals.renew_time(NOW, NOW + 90 * DAY) == NOW + 60 * DAY


@pytest.mark.parametrize(
    ("cert", "why"),
    [
        pytest.param(None, "first certificate", id="none-yet"),
        pytest.param(issued(), "", id="fresh"),
        pytest.param(issued(renew_at=NOW), "renewal time reached", id="renewal-time"),
        pytest.param(issued(renew_at=NOW - DAY, reason=renewals.ARI_RENEW_NOW),
                     "the CA asked for a new certificate (renewal information)", id="ari-now"),
        pytest.param(issued(not_after=NOW - DAY, renew_at=None), "expired", id="expired"),
        pytest.param(issued(hosts=("old.example.com",)), "names changed to hello.example.com",
                     id="names-changed"),
        pytest.param(issued(issuer="local"), "issuer changed to the ACME directory",
                     id="issuer-changed"),
        pytest.param(issued(renew_at=NOW, failures=2, retry_at=NOW + DAY), "",
                     id="waiting-to-retry"),
        pytest.param(issued(renew_at=NOW - DAY, failures=2, retry_at=NOW - 1 * DAY),
                     "retry of the renewal", id="retry-due"),
        pytest.param(issued(chain_pem="", failures=1, retry_at=NOW - DAY), "retry",
                     id="never-issued-retry"),
    ],
)  # fmt: skip
def test_why_an_order_is_due(cert: Certificate | None, why: str) -> None:
    assert renewals.why_due(cert, hosts=("hello.example.com",), issuer="acme", now=NOW) == why


def test_due_orders_by_name_with_their_issuer() -> None:
    wanted = {"a.localhost": ("a.localhost",), "b.example.com": ("b.example.com",)}
    have = {"b.example.com": issued(name="b.example.com", hosts=("b.example.com",))}
    orders = renewals.due(
        wanted, have, issuers={"a.localhost": "local", "b.example.com": "acme"}, now=NOW
    )
    assert orders == [
        renewals.Order(
            name="a.localhost", hosts=("a.localhost",), issuer="local", why="first certificate"
        )
    ]


@pytest.mark.parametrize(
    ("failures", "reachable", "delay"),
    [
        pytest.param(1, False, timedelta(seconds=5), id="unreachable-first"),
        pytest.param(3, False, timedelta(seconds=20), id="unreachable-doubles"),
        pytest.param(30, False, timedelta(minutes=10), id="unreachable-capped"),
        pytest.param(1, True, timedelta(minutes=1), id="refused-first"),
        pytest.param(4, True, timedelta(minutes=8), id="refused-doubles"),
        pytest.param(40, True, timedelta(hours=12), id="refused-capped"),
    ],
)  # fmt: skip
def test_retry_delay(failures: int, reachable: bool, delay: timedelta) -> None:
    assert renewals.retry_delay(failures, reachable=reachable) == delay


@pytest.mark.parametrize(
    ("cert", "due"),
    [
        pytest.param(issued(), True, id="never-checked"),
        pytest.param(issued(check_at=NOW + DAY), False, id="checked-recently"),
        pytest.param(issued(check_at=NOW - DAY), True, id="check-due"),
        pytest.param(issued(issuer="local"), False, id="local-ca-has-no-ari"),
        pytest.param(issued(chain_pem=""), False, id="not-issued"),
        pytest.param(issued(renew_at=NOW - DAY), False, id="renewal-already-due"),
    ],
)  # fmt: skip
def test_when_to_ask_the_ca_for_renewal_information(cert: Certificate, due: bool) -> None:
    assert renewals.ari_due(cert, now=NOW) is due


def test_only_expired_unwanted_certificates_are_forgotten() -> None:
    have = {
        "wanted.example.com": issued(name="wanted.example.com", not_after=NOW - DAY),
        "old-tag.example.com": issued(name="old-tag.example.com", not_after=NOW - DAY),
        "recent.example.com": issued(name="recent.example.com"),
        "failed.example.com": Certificate(name="failed.example.com", hosts=(), issuer="acme"),
    }
    wanted = {"wanted.example.com": ("wanted.example.com",)}
    assert renewals.expired_unwanted(have, wanted, now=NOW) == [
        "failed.example.com",
        "old-tag.example.com",
    ]
