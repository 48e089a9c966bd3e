"""The desired state the activator keeps for when the control plane is down: what it needs to
start an instance of a revision on its own.

The control plane writes it (`DesiredCache.update`, from each reconcile pass's snapshot) and the
activator process reads it (`read`) only when the control plane does not answer its ask
(`wakeups`). One entry per Ready revision: its service, and the `RevisionConfig` the reconciler
passes to the engine (secrets still as references: the activator resolves them at start exactly
as the reconciler does, so no secret value is written here). The engine adds the platform's
labels, so an instance started from this is one a restarted control plane adopts.

Written atomically (a temporary file renamed over the old one, 0600), only when a revision's
spec changed: a pass that changes nothing writes nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.core.logs import get as get_log
from pipeline.core.records import Snapshot
from pipeline.core.revisions import Readiness, RevisionConfig, config_of

FORMAT = 1  # bumped when the encoding changes; a cache of another format reads as empty


@dataclass(frozen=True, kw_only=True)
class Wanted:
    """One revision the activator may start alone."""

    service: str
    revision: str
    config: RevisionConfig


def wanted_of(snapshot: Snapshot) -> tuple[Wanted, ...]:
    """Pure: the revisions that can serve (Ready), as the engine would be asked to start them."""
    return tuple(
        Wanted(service=r.service, revision=r.name, config=config_of(r.template, image=r.image))
        for r in sorted(snapshot.revisions, key=lambda r: r.name)
        if r.status == "Ready"
    )


def encode(wanted: tuple[Wanted, ...]) -> bytes:
    """Pure: the cache file's bytes (sorted keys: the same state always encodes the same)."""
    doc = {"format": FORMAT, "revisions": [asdict(w) for w in wanted]}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def decode(data: bytes) -> dict[str, Wanted]:
    """Pure: revision name -> what to start. Raises ValueError on a file that is not a cache of
    this format (the activator then knows no revision rather than a wrong one)."""
    try:
        doc = json.loads(data)
    except json.JSONDecodeError as e:
        raise ValueError(f"not a desired-state cache: {e}") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError("not a desired-state cache of this format")
    out: dict[str, Wanted] = {}
    for entry in doc.get("revisions") or []:
        try:
            wanted = Wanted(
                service=str(entry["service"]),
                revision=str(entry["revision"]),
                config=_config(entry["config"]),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"a desired-state cache entry is malformed: {e!r}") from e
        out[wanted.revision] = wanted
    return out


def _config(raw: Mapping[str, Any]) -> RevisionConfig:
    """JSON has lists where the dataclass has tuples: turned back, so a decoded config equals
    the one encoded (and the engine gets the same values either way)."""
    readiness = Readiness(**raw["readiness"])
    return RevisionConfig(
        image=str(raw["image"]),
        port=int(raw["port"]),
        env=tuple((str(k), str(v)) for k, v in raw["env"]),
        secret_env=tuple((str(e), str(n), str(k), int(v)) for e, n, k, v in raw["secret_env"]),
        command=tuple(str(x) for x in raw["command"]),
        args=tuple(str(x) for x in raw["args"]),
        working_dir=str(raw["working_dir"]),
        container_concurrency=int(raw["container_concurrency"]),
        timeout_s=int(raw["timeout_s"]),
        memory_limit=str(raw["memory_limit"]),
        cpu_limit=str(raw["cpu_limit"]),
        readiness=readiness,
    )


def write_atomically(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never half of one; 0600 whatever the umask."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read(path: Path) -> dict[str, Wanted]:
    """What the control plane last wrote; empty if it never wrote or the file is not readable."""
    try:
        return decode(path.read_bytes())
    except (OSError, ValueError) as e:
        get_log(component="activator").warning("desired_state_unreadable", path=str(path),
                                               error=str(e))  # fmt: skip
        return {}


class DesiredCache:
    """The control plane's side: `update` is called with every pass's snapshot."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: frozenset[tuple[str, str, str, str]] | None = None
        self._log = get_log(component="activator")

    def update(self, snapshot: Snapshot) -> bool:
        """Write the cache if a revision's spec or status changed since the last write (a
        cheap key first: most passes change nothing and encode nothing); True if written."""
        key = frozenset((r.name, r.template_hash, r.image, r.status) for r in snapshot.revisions)
        if key == self._key:
            return False
        try:
            write_atomically(self.path, encode(wanted_of(snapshot)))
        except OSError as e:  # a full disk must not stop the pass; the next one tries again
            self._log.warning("desired_state_not_written", path=str(self.path), error=str(e))
            return False
        self._key = key
        return True
