"""Who answers an ACME challenge: HTTP-01 through HAProxy, DNS-01 through the operator's hook.

HTTP-01: the CA fetches `http://<host>/.well-known/acme-challenge/<token>` on port 80 (or
Pebble's configured port); HAProxy answers it itself from a map the running worker is given at
runtime (`pipeline.dataplane.challenges`), before any redirect, route or token check. The
`HttpChallenges` protocol is all an order needs of it.

DNS-01 (`SLIPWAY_ACME_DNS_HOOK`): the hook is a command Slipway runs as
`<hook> set <fqdn> <value>` before asking the CA to validate and `<hook> clear <fqdn> <value>`
after; `set` must return once the TXT record is published. With it Slipway orders one wildcard
certificate for the whole domain instead of one per host.
"""

from __future__ import annotations

import shlex
import subprocess
from typing import Protocol

from pipeline.core.errors import Unavailable

HOOK_TIMEOUT_S = 300.0


class HttpChallenges(Protocol):
    def present(self, token: str, key_authorization: str) -> None: ...

    def cleanup(self, token: str) -> None: ...


class DnsChallenges(Protocol):
    def present(self, fqdn: str, value: str) -> None: ...

    def cleanup(self, fqdn: str, value: str) -> None: ...


class DnsHook:
    """The operator's DNS-01 command."""

    def __init__(self, command: str, *, timeout_s: float = HOOK_TIMEOUT_S) -> None:
        self.argv = shlex.split(command)
        self.timeout_s = timeout_s

    def present(self, fqdn: str, value: str) -> None:
        self._run("set", fqdn, value)

    def cleanup(self, fqdn: str, value: str) -> None:
        self._run("clear", fqdn, value)

    def _run(self, verb: str, fqdn: str, value: str) -> None:
        try:
            result = subprocess.run(
                [*self.argv, verb, fqdn, value],
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise Unavailable(f"the DNS-01 hook {self.argv[0]!r} could not run: {exc}") from exc
        if result.returncode != 0:
            said = (result.stderr or result.stdout).strip()[-500:]
            raise Unavailable(
                f"the DNS-01 hook `{self.argv[0]} {verb} {fqdn}` exited {result.returncode}"
                + (f": {said}" if said else "")
            )
