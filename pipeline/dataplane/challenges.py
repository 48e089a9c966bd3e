"""ACME HTTP-01 answered by HAProxy itself: tokens in a map the running worker is given at once.

An order (`pipeline.tls.orders`) calls `present(token, key_authorization)` before asking the CA to
validate and `cleanup(token)` after. Each goes to the map file (what a reload or restart loads)
and to the running worker (`add map` / `del map`), where the plain listener's first rule
(`tlsrender.plain_lines`) answers `/.well-known/acme-challenge/<token>` for any host, before any
redirect, route or token check: the challenge never reaches Python.
"""

from __future__ import annotations

import re
import threading

from pipeline.dataplane.model import Site
from pipeline.dataplane.runtime import Runtime
from pipeline.store.certificates import write_private

# RFC 8555: tokens are base64url; a key authorization is `<token>.<base64url thumbprint>`.
_VALUE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)?$")


class HAProxyChallenges:
    def __init__(self, *, site: Site, runtime: Runtime) -> None:
        self.site = site
        self.runtime = runtime
        self._entries: dict[str, str] = {}
        self._lock = threading.Lock()

    def present(self, token: str, key_authorization: str) -> None:
        if not (_VALUE.match(token) and _VALUE.match(key_authorization)):
            raise ValueError(f"not an ACME token or key authorization: {token!r}")
        with self._lock:
            self._entries[token] = key_authorization
            self._write()
            self.runtime.add_map(self.site.challenges_map, token, key_authorization)

    def cleanup(self, token: str) -> None:
        with self._lock:
            if self._entries.pop(token, None) is None:
                return
            self._write()
            self.runtime.del_map(self.site.challenges_map, token)

    def _write(self) -> None:
        text = "".join(f"{token} {value}\n" for token, value in sorted(self._entries.items()))
        write_private(self.site.challenges_map, text)
