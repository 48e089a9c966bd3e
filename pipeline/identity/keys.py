"""Signing keys for identity tokens: RS256 key pairs in `<data dir>/keys`, one `kid` each.

The newest key signs; older ones stay published (JWKS, HAProxy's verify rules) until every token
they signed has expired — at most `MAX_TOKEN_LIFETIME_S` after the next key took over, plus a
margin for clock skew — and are then deleted. Private key files are 0600; the public PEM files
are what HAProxy's `jwt_verify` reads. Which keys are live is decided purely (`live`), from the
key list and the time.

Files: `<kid>.key` (private, PKCS#8 PEM) and `<kid>.pub` (SubjectPublicKeyInfo PEM). A kid is
`<unix seconds>-<8 hex>`: it sorts by age, so the newest is the signing key without any index.
"""

from __future__ import annotations

import base64
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pipeline.core.errors import Unavailable

MAX_TOKEN_LIFETIME_S = 3600
SKEW_S = 300  # tokens a clock slightly behind still accepts
KEY_BITS = 2048


@dataclass(frozen=True, kw_only=True)
class Key:
    kid: str
    created: int  # unix seconds, from the kid
    public_pem: bytes
    public_path: Path
    private_path: Path

    def private_pem(self) -> bytes:
        return self.private_path.read_bytes()


def live(keys: list[Key], *, now: float) -> list[Key]:
    """Keys still needed, oldest first: the newest (it signs) and every older key whose successor
    took over less than a token lifetime (plus skew) ago."""
    ordered = sorted(keys, key=lambda k: (k.created, k.kid))
    keep = []
    for key, successor in zip(ordered, [*ordered[1:], None], strict=True):
        if successor is None or now < successor.created + MAX_TOKEN_LIFETIME_S + SKEW_S:
            keep.append(key)
    return keep


def jwk(key: Key) -> dict[str, Any]:
    """The public key as a JWK (RFC 7517), as Google's and every OIDC JWKS publishes it."""
    public = serialization.load_pem_public_key(key.public_pem)
    if not isinstance(public, rsa.RSAPublicKey):
        raise Unavailable(f"signing key {key.kid} is not an RSA key; delete it and rotate")
    numbers = public.public_numbers()
    return {
        "kty": "RSA",
        "alg": "RS256",
        "use": "sig",
        "kid": key.kid,
        "n": _b64(numbers.n),
        "e": _b64(numbers.e),
    }


def jwks(keys: list[Key]) -> dict[str, Any]:
    return {"keys": [jwk(k) for k in sorted(keys, key=lambda k: k.kid)]}


class KeyStore:
    """The keys directory. Several processes read it (control plane, metadata server)."""

    def __init__(self, directory: Path, *, clock: Any = time.time) -> None:
        self.directory = directory
        self._clock = clock

    def ensure(self, *, seed: Path | None = None) -> Key:
        """The signing key, creating the first one if there is none.

        `seed` is an operator's PEM (the Helm chart's signing-key Secret): imported as the newest
        key unless a key with its public half is already here, so replacing the Secret rotates at
        the next start and an unchanged Secret changes nothing (not even after `keys rotate`).
        """
        if seed is not None:
            self._import(seed)
        keys = self.all()
        return keys[-1] if keys else self.rotate()

    def rotate(self) -> Key:
        """Make a new key; it signs from now on. Older keys stay until `prune` drops them."""
        return self._store(rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS))

    def _import(self, path: Path) -> None:
        try:
            private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as e:
            raise Unavailable(
                f"cannot read the signing key {path}: {e}; it must be an unencrypted RSA private "
                "key in PEM (openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048)"
            ) from e
        if not isinstance(private, rsa.RSAPrivateKey) or private.key_size < KEY_BITS:
            raise Unavailable(
                f"the signing key {path} is not an RSA key of at least {KEY_BITS} bits: tokens "
                "are RS256 (openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048)"
            )
        public_pem = _public_pem(private)
        if not any(k.public_pem == public_pem for k in self.all()):
            self._store(private)

    def _store(self, private: rsa.RSAPrivateKey) -> Key:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        now = int(self._clock())
        kid = f"{now}-{secrets.token_hex(4)}"
        private_pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        public_pem = _public_pem(private)
        # Public part first: a reader that sees the private file can rely on the public one.
        _write(self.directory / f"{kid}.pub", public_pem, mode=0o600)  # the data dir is private
        _write(self.directory / f"{kid}.key", private_pem, mode=0o600)
        return self._load(kid)

    def all(self) -> list[Key]:
        """Every complete key pair on disk, oldest first."""
        if not self.directory.is_dir():
            return []
        kids = sorted(
            p.name.removesuffix(".key")
            for p in self.directory.glob("*.key")
            if (self.directory / p.name.replace(".key", ".pub")).exists()
        )
        keys = [self._load(k) for k in kids]
        return sorted(keys, key=lambda k: (k.created, k.kid))

    def live(self) -> list[Key]:
        return live(self.all(), now=self._clock())

    def signing(self) -> Key:
        keys = self.all()
        if not keys:
            raise Unavailable(
                f"no signing key in {self.directory}: the control plane creates one at start"
            )
        return keys[-1]

    def prune(self) -> list[str]:
        """Delete keys no token can still need; return their kids."""
        keep = {k.kid for k in self.live()}
        gone = []
        for key in self.all():
            if key.kid not in keep:
                key.private_path.unlink(missing_ok=True)
                key.public_path.unlink(missing_ok=True)
                gone.append(key.kid)
        return gone

    def _load(self, kid: str) -> Key:
        public_path = self.directory / f"{kid}.pub"
        return Key(
            kid=kid,
            created=int(kid.split("-", 1)[0]),
            public_pem=public_path.read_bytes(),
            public_path=public_path,
            private_path=self.directory / f"{kid}.key",
        )


def _public_pem(private: rsa.RSAPrivateKey) -> bytes:
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _write(path: Path, data: bytes, *, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _b64(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
