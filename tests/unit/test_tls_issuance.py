"""The certificates HAProxy serves, end to end without a network: the local CA, the store (rows
and key files), and `Certificates` with a stand-in ACME CA that issues, refuses and answers
renewal information on cue."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store

from pipeline.store import db
from pipeline.store.certificates import Certificate, CertificateStore
from pipeline.tls import pems
from pipeline.tls.issuance import FALLBACK, Certificates
from pipeline.tls.localca import LocalCA
from pipeline.tls.orders import OrderFailed

NOW = datetime(2027, 1, 1, 12, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


class StandInCA:
    """What `Certificates` needs of an `AcmeIssuer`: a second local CA plays the public one."""

    def __init__(self, folder: Path, clock: Clock) -> None:
        self.ca = LocalCA(folder, name="Stand-in public CA")
        self.clock = clock
        self.refuse: OrderFailed | None = None
        self.revoked: set[str] = set()  # serials whose renewal information says "now"
        self.orders: list[tuple[str, ...]] = []

    def issue(self, hosts: tuple[str, ...]) -> tuple[str, str]:
        self.orders.append(hosts)
        if self.refuse is not None:
            raise self.refuse
        return self.ca.issue(hosts, now=self.clock())

    def renewal_info(self, chain_pem: str) -> tuple[datetime | None, datetime]:
        now = self.clock()
        revoked = pems.facts(chain_pem).serial in self.revoked
        return (now - timedelta(hours=1) if revoked else None), now + timedelta(hours=6)


@pytest.fixture
def store(tmp_path: Path) -> CertificateStore:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate(engine)
    return CertificateStore(db.session_factory(engine), key_dir=tmp_path / "keys")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def public(tmp_path: Path, clock: Clock) -> StandInCA:
    return StandInCA(tmp_path / "public", clock)


def certificates(
    tmp_path: Path, store: CertificateStore, clock: Clock, public: StandInCA | None
) -> Certificates:
    return Certificates(
        store=store,
        local=LocalCA(tmp_path / "tls"),
        acme=public,  # type: ignore[arg-type]
        domain="apps.example.com" if public else "localhost",
        clock=clock,
    )


def verify(chain_pem: str, *, root: Path, host: str, now: datetime) -> None:
    roots = Store(x509.load_pem_x509_certificates(root.read_bytes()))
    verifier = PolicyBuilder().store(roots).time(now).build_server_verifier(x509.DNSName(host))
    verifier.verify(pems.leaf(chain_pem), [])


def test_local_ca_is_made_once_and_signs_leaves_clients_verify(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path / "tls")
    root = ca.ensure(now=NOW)
    assert ca.ensure(now=NOW + timedelta(days=1)).serial_number == root.serial_number
    assert stat.S_IMODE(ca.key_file.stat().st_mode) == 0o600
    chain, key = ca.issue(("hello.localhost",), now=NOW)
    verify(chain, root=ca.cert_file, host="hello.localhost", now=NOW)
    facts = pems.facts(chain)
    assert facts.names == ("hello.localhost",)
    assert facts.issuer == "Slipway local CA"
    assert facts.not_after - facts.not_before == timedelta(days=90, minutes=5)
    assert "PRIVATE KEY" in key
    bundle = pems.bundle(chain, key)
    assert "\n\n" not in bundle and bundle.index("CERTIFICATE") < bundle.index("PRIVATE KEY")


def test_store_keeps_one_key_per_serial_and_drops_older_ones(store: CertificateStore) -> None:
    _, first = pems.new_key()
    _, second = pems.new_key()
    cert = Certificate(name="a.localhost", hosts=("a.localhost",), issuer="local", serial="0a")
    store.save(cert, key_pem=first)
    store.save(
        Certificate(name="a.localhost.b", hosts=(), issuer="local", serial="0c"), key_pem=first
    )
    store.save(cert.__class__(**{**cert.__dict__, "serial": "0b"}), key_pem=second)
    assert sorted(p.name for p in store.key_dir.iterdir()) == [
        "a.localhost.0b.key",
        "a.localhost.b.0c.key",  # another certificate's key: kept
    ]
    assert stat.S_IMODE((store.key_dir / "a.localhost.0b.key").stat().st_mode) == 0o600
    (loaded,) = [c for c in store.list() if c.name == "a.localhost"]
    assert store.key_pem(loaded) == second
    assert loaded.not_after is None  # and naive SQLite times come back in UTC when set


def test_local_names_are_issued_in_the_pass_that_routes_them(
    tmp_path: Path, store: CertificateStore, clock: Clock
) -> None:
    certs = certificates(tmp_path, store, clock, public=None)
    tls = certs.tls_for(["hello.localhost", "v2--hello.localhost"])
    assert tls.fallback.name == FALLBACK
    assert [c.name for c in tls.certificates] == [
        "hello.localhost", "localhost", "v2--hello.localhost",
    ]  # fmt: skip
    for cert in tls.certificates:
        assert pems.facts(cert.pem).serial == cert.serial
        assert "PRIVATE KEY" in cert.pem
    again = certs.tls_for(["hello.localhost", "v2--hello.localhost"])
    assert again == tls  # nothing due: nothing reissued
    # Past two thirds of its life, a local certificate is renewed in the next pass.
    clock.now = NOW + timedelta(days=61)
    renewed = certs.tls_for(["hello.localhost"])
    assert {c.name for c in renewed.certificates} == {"hello.localhost", "localhost"}
    assert renewed.certificates[0].serial != tls.certificates[0].serial
    assert {c.reason for c in certs.known() if c.name == "hello.localhost"} == {"Renewed"}


def test_acme_names_are_ordered_by_the_worker_and_served_once_issued(
    tmp_path: Path, store: CertificateStore, clock: Clock, public: StandInCA
) -> None:
    certs = certificates(tmp_path, store, clock, public)
    woken: list[bool] = []
    certs.on_change = lambda: woken.append(True)
    tls = certs.tls_for(["hello.apps.example.com"])
    assert tls.certificates == ()  # ordered off the reconciler's pass, served from the next
    certs.run_once()
    assert sorted(public.orders) == [("apps.example.com",), ("hello.apps.example.com",)]
    assert woken
    served = certs.tls_for(["hello.apps.example.com"])
    assert [c.name for c in served.certificates] == ["apps.example.com", "hello.apps.example.com"]
    verify(
        served.certificates[1].pem, root=public.ca.cert_file, host="hello.apps.example.com",
        now=NOW,
    )  # fmt: skip


def test_a_failed_renewal_keeps_the_old_certificate_and_says_why(
    tmp_path: Path, store: CertificateStore, clock: Clock, public: StandInCA
) -> None:
    certs = certificates(tmp_path, store, clock, public)
    certs.tls_for(["hello.apps.example.com"])
    certs.run_once()
    before = certs.tls_for(["hello.apps.example.com"]).certificates
    public.refuse = OrderFailed("the CA could not validate x", reason="ChallengeFailed",
                                reachable=True)  # fmt: skip
    certs.renew("hello.apps.example.com")
    certs.run_once()
    assert certs.tls_for(["hello.apps.example.com"]).certificates == before
    cert = certs.covering("hello.apps.example.com")
    assert cert is not None
    assert (cert.status, cert.reason, cert.failures) == ("Failed", "ChallengeFailed", 1)
    assert "still serving the certificate valid until" in cert.message
    assert cert.retry_at == NOW + timedelta(minutes=1)
    orders = len(public.orders)
    certs.run_once()
    assert len(public.orders) == orders  # not before retry_at
    public.refuse = None
    clock.now = NOW + timedelta(minutes=2)
    certs.run_once()
    cert = certs.covering("hello.apps.example.com")
    assert cert is not None and (cert.status, cert.failures) == ("Ready", 0)


def test_renewal_information_asking_for_renewal_replaces_the_certificate(
    tmp_path: Path, store: CertificateStore, clock: Clock, public: StandInCA
) -> None:
    certs = certificates(tmp_path, store, clock, public)
    certs.tls_for(["hello.apps.example.com"])
    certs.run_once()
    old = certs.covering("hello.apps.example.com")
    assert old is not None and old.check_at == NOW + timedelta(hours=6)  # asked at once
    public.revoked.add(old.serial)  # Pebble (and Let's Encrypt) then say: renew now
    certs.run_once()
    assert certs.covering("hello.apps.example.com") == old  # not asked again before check_at
    clock.now = NOW + timedelta(hours=7)
    certs.run_once()  # asks, finds renewal due now, orders on the next pass
    certs.run_once()
    new = certs.covering("hello.apps.example.com")
    assert new is not None and new.serial != old.serial
    assert new.message.startswith("the CA asked for a new certificate (renewal information)")


def test_certificates_survive_a_restart_and_expired_unwanted_ones_go(
    tmp_path: Path, store: CertificateStore, clock: Clock, public: StandInCA
) -> None:
    certs = certificates(tmp_path, store, clock, public)
    certs.tls_for(["a.apps.example.com", "b.apps.example.com"])
    certs.run_once()
    restarted = certificates(tmp_path, store, clock, public)
    orders = len(public.orders)
    assert len(restarted.tls_for(["a.apps.example.com"]).certificates) == 2
    restarted.run_once()
    assert len(public.orders) == orders
    clock.now = NOW + timedelta(days=200)  # b expired, and no route wants it
    restarted.tls_for(["a.apps.example.com"])
    restarted.run_once()
    assert "b.apps.example.com" not in {c.name for c in store.list()}
    assert "a.apps.example.com" in {c.name for c in store.list()}


def test_new_keys_are_p256() -> None:
    key, pem = pems.new_key()
    assert isinstance(key.curve, ec.SECP256R1) and pem.startswith("-----BEGIN PRIVATE KEY-----")
