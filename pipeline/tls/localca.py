"""Slipway's local CA: a root made at first start, signing names no public CA will.

`hello.localhost`, `localhost` and the other special-use names get their certificates here, at
once and offline, so `curl --cacert <data dir>/tls/ca.pem https://hello.localhost:8443/` works
as soon as the service does. The root certificate is `ca.pem` in the TLS directory (what
`./scripts/up` prints); its key `ca.key` is 0600 beside it and never leaves the machine. Leaves
live 90 days like Let's Encrypt's, so renewal runs here exactly as it does for ACME.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pipeline.store.certificates import write_private
from pipeline.tls import pems

ROOT_DAYS = 3650
LEAF_DAYS = 90
BACKDATE = timedelta(minutes=5)  # a client whose clock runs a little behind still accepts it


class LocalCA:
    def __init__(self, directory: Path, *, name: str = "Slipway local CA") -> None:
        self.directory = directory
        self.name = name

    @property
    def cert_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def key_file(self) -> Path:
        return self.directory / "ca.key"

    def ensure(self, *, now: datetime) -> x509.Certificate:
        """The root, made on first use (key first, 0600; then the certificate, atomically)."""
        if not self.cert_file.exists():
            self._make(now=now)
        return x509.load_pem_x509_certificate(self.cert_file.read_bytes())

    def issue(self, hosts: tuple[str, ...], *, now: datetime) -> tuple[str, str]:
        """(chain PEM, key PEM) of a new leaf for `hosts`, signed by the root."""
        root = self.ensure(now=now)
        root_key = serialization.load_pem_private_key(self.key_file.read_bytes(), password=None)
        assert isinstance(root_key, ec.EllipticCurvePrivateKey)
        key, key_pem = pems.new_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0][:64])]))
            .issuer_name(root.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + timedelta(days=LEAF_DAYS))
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False
            )
            .sign(root_key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem

    def _make(self, *, now: datetime) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        key, key_pem = pems.new_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.name)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + timedelta(days=ROOT_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        write_private(self.key_file, key_pem)
        write_private(
            self.cert_file, cert.public_bytes(serialization.Encoding.PEM).decode(), mode=0o644
        )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )
