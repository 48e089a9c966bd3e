"""Secrets: key/value sets, versioned, encrypted at rest in the data dir (Fernet, AES-128-CBC +
HMAC-SHA256) with a key file only root can read.

A revision pins the version of every secret it uses when it is created (the versions go into
its template, so a new version means a new revision, as on Cloud Run); instances get the values
as env vars at start. Values never reach logs, API listings or the database.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from pipeline.core.errors import InvalidInput, NotFound, SlipwayError
from pipeline.core.revisions import RevisionConfig

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


@dataclass(frozen=True, kw_only=True)
class SecretInfo:
    name: str
    version: int
    keys: tuple[str, ...]


class SecretStore:
    def __init__(self, root: Path) -> None:
        self._root = root
        self._key_file = root / "secret.key"

    def _fernet(self) -> Fernet:
        if not self._key_file.exists():
            self._root.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self._key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(Fernet.generate_key())
        return Fernet(self._key_file.read_bytes().strip())

    def _dir(self, name: str) -> Path:
        if not _NAME.fullmatch(name) or len(name) > 63:
            raise InvalidInput(
                f"invalid secret name {name!r}: lowercase letters, digits and '-' (a DNS label)"
            )
        return self._root / "secrets" / name

    def versions(self, name: str) -> list[int]:
        folder = self._dir(name)
        if not folder.is_dir():
            return []
        return sorted(int(p.stem) for p in folder.glob("*.enc") if p.stem.isdigit())

    def put(self, name: str, data: dict[str, str]) -> int:
        """Store a new version; returns its number."""
        if not data:
            raise InvalidInput("a secret needs at least one KEY=VALUE")
        for key in data:
            if not _KEY.fullmatch(key):
                raise InvalidInput(f"invalid secret key {key!r}: letters, digits, '-', '_', '.'")
        folder = self._dir(name)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        version = (self.versions(name) or [0])[-1] + 1
        token = self._fernet().encrypt(json.dumps(data, sort_keys=True).encode())
        path = folder / f"{version}.enc"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(token)
        return version

    def latest(self, name: str) -> int:
        versions = self.versions(name)
        if not versions:
            raise NotFound(
                f"secret {name!r} does not exist: create it with "
                f"`slipway secrets set {name} KEY=VALUE`"
            )
        return versions[-1]

    def get(self, name: str, version: int) -> dict[str, str]:
        path = self._dir(name) / f"{version}.enc"
        if not path.exists():
            if not self.versions(name):  # deleted (with --force) while a revision still reads it
                raise NotFound(f"secret {name!r} does not exist")
            raise NotFound(f"secret {name!r} has no version {version}")
        try:
            data: dict[str, str] = json.loads(self._fernet().decrypt(path.read_bytes()))
        except InvalidToken as e:
            raise SlipwayError(
                f"secret {name!r} v{version} cannot be decrypted with {self._key_file}: "
                "was the key file replaced?"
            ) from e
        return data

    def value(self, name: str, key: str, version: int) -> str:
        data = self.get(name, version)
        if key not in data:
            raise NotFound(
                f"secret {name!r} v{version} has no key {key!r} (keys: {', '.join(sorted(data))})"
            )
        return data[key]

    def latest_value(self, name: str, key: str) -> bytes | None:
        """The newest version's value of `key`, or None when the secret or key is missing (a
        webhook secret that was never set signs nothing)."""
        try:
            return self.value(name, key, self.latest(name)).encode()
        except (NotFound, InvalidInput):
            return None

    def list(self) -> list[SecretInfo]:
        folder = self._root / "secrets"
        out = []
        for d in sorted(folder.iterdir()) if folder.is_dir() else []:
            versions = self.versions(d.name)
            if versions:
                keys = tuple(sorted(self.get(d.name, versions[-1])))
                out.append(SecretInfo(name=d.name, version=versions[-1], keys=keys))
        return out

    def delete(self, name: str) -> None:
        folder = self._dir(name)
        if not folder.is_dir():
            raise NotFound(f"secret {name!r} does not exist")
        for p in folder.glob("*"):
            p.unlink()
        folder.rmdir()


def resolve(store: SecretStore, config: RevisionConfig) -> RevisionConfig:
    """The config with its pinned secret versions read into env values (at instance start)."""
    if not config.secret_env:
        return config
    values = tuple(
        (env, store.value(name, key, version)) for env, name, key, version in config.secret_env
    )
    return replace(config, env=config.env + values)
