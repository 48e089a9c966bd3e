"""PEM in, facts out: keys, CSRs, and what a certificate chain says about itself (pure).

Every issuer (the local CA, ACME) hands back a chain PEM and a key PEM; the store keeps the
facts read here (serial, validity, names), HAProxy gets `bundle` (chain, then key), and the data
plane compares serials in the form `serial_hex` gives (lowercase hex, no leading zeros), which is
also how HAProxy's `show ssl cert` serial reads once normalised.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pipeline.core.errors import InvalidInput


@dataclass(frozen=True, kw_only=True)
class ChainFacts:
    serial: str
    not_before: datetime
    not_after: datetime
    names: tuple[str, ...]  # the leaf's DNS names
    issuer: str  # the leaf issuer's common name (what `describe` shows)


def new_key() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A P-256 key (what Let's Encrypt and every browser take) and its PKCS#8 PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key, pem.decode()


def csr_pem(key: ec.EllipticCurvePrivateKey, names: tuple[str, ...]) -> bytes:
    """A CSR for `names` (all as subjectAltName DNS names; ACME reads only those)."""
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM)


def serial_hex(serial: int | str) -> str:
    value = serial if isinstance(serial, int) else int(serial, 16)
    return format(value, "x")


def leaf(chain_pem: str) -> x509.Certificate:
    try:
        certs = x509.load_pem_x509_certificates(chain_pem.encode())
    except ValueError as exc:
        raise InvalidInput(f"not a PEM certificate chain: {exc}") from exc
    return certs[0]


def facts(chain_pem: str) -> ChainFacts:
    cert = leaf(chain_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    issuer = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return ChainFacts(
        serial=serial_hex(cert.serial_number),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        names=names,
        issuer=str(issuer[0].value) if issuer else cert.issuer.rfc4514_string(),
    )


def bundle(chain_pem: str, key_pem: str) -> str:
    """What HAProxy loads for one certificate: the chain, then the key; no blank lines (the
    runtime API ends a payload at the first empty line)."""
    text = f"{chain_pem.strip()}\n{key_pem.strip()}\n"
    return "".join(line + "\n" for line in text.splitlines() if line.strip())
