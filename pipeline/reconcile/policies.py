"""The JWT policy the loop hands HAProxy, read from the key files only when they can have changed.

`identity.access.policy` loads every public key and deletes the keys no token can still need;
doing that on every reconcile pass (once a second) is disk work and deletions for nothing. A
`KeyPolicy` keeps the last policy and reads again when the file names in the keys directory
changed (a rotation or an import added a key: HAProxy must know it before the API answers) or
when `max_age_s` passed (a key retires by the clock, with no file changing; a retired key signs
nothing any longer, so its lingering a minute more lets no token through).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from pipeline.dataplane.model import JwtPolicy
from pipeline.identity import access
from pipeline.identity.keys import KeyStore

MAX_AGE_S = 60.0


class KeyPolicy:
    def __init__(
        self,
        *,
        keys: KeyStore,
        issuer: str,
        max_age_s: float = MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._policy: JwtPolicy | None = None
        self._names: frozenset[str] = frozenset()  # the directory as the last read left it
        self._read_at = 0.0

    def __call__(self) -> JwtPolicy:
        with self._lock:
            now = self._clock()
            stale = now - self._read_at >= self._max_age_s
            if self._policy is None or stale or self._listing() != self._names:
                self._policy = access.policy(self._keys, issuer=self._issuer)
                self._names = self._listing()  # after the read: its own deletions are not news
                self._read_at = now
            return self._policy

    def _listing(self) -> frozenset[str]:
        try:
            return frozenset(os.listdir(self._keys.directory))
        except FileNotFoundError:
            return frozenset()
