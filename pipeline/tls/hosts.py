"""Hosts, pure: which certificate covers a host, who signs it, and which hosts a mapping may take.

Slipway answers for the bare domain, `<svc>.<domain>`, `<tag>--<svc>.<domain>` and mapped custom
hosts. Each needs a certificate once HTTPS is on:

- names no public CA signs (`localhost` and the other special-use names of RFC 6761/6762/8375,
  IP addresses, single labels) get one from Slipway's local CA; so does everything when no ACME
  directory is configured;
- the rest come from the ACME directory, one per host over HTTP-01 (on demand, as hosts
  appear), or, when a DNS-01 hook is configured, one wildcard `*.<domain>` for the bare domain,
  every service and every tag host (tag hosts are one label deep, so the wildcard covers them).

A custom host may not be the bare domain nor sit under it: names under the domain belong to
services and their tags, and a mapping there would shadow one now or later.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Literal

Issuer = Literal["local", "acme"]

# Special-use names (RFC 6761, 6762, 8375, 9476) and the private-use `.internal`.
LOCAL_SUFFIXES = (
    "localhost", "test", "invalid", "example", "local", "home.arpa", "internal", "alt",
)  # fmt: skip


def is_local(host: str) -> bool:
    """True for names no public CA will sign."""
    host = host.removeprefix("*.")
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    return "." not in host or any(host == s or host.endswith(f".{s}") for s in LOCAL_SUFFIXES)


def wildcard_of(domain: str) -> str:
    return f"*.{domain}"


def certificate_name(host: str, *, domain: str, wildcard: bool) -> str:
    """The certificate that covers `host`: the domain's wildcard (one label deep) or its own."""
    if wildcard and (host == domain or host.split(".", 1)[-1] == domain):
        return wildcard_of(domain)
    return host


def certificate_hosts(name: str, *, domain: str) -> tuple[str, ...]:
    """The names a certificate is ordered for: a wildcard also covers the bare domain."""
    return (name, domain) if name == wildcard_of(domain) else (name,)


def issuer_of(name: str, *, acme: bool) -> Issuer:
    return "acme" if acme and not is_local(name) else "local"


def wanted(hosts: Iterable[str], *, domain: str, wildcard: bool) -> dict[str, tuple[str, ...]]:
    """Certificate name -> the names it is ordered for, for every host (and the bare domain)."""
    names = {certificate_name(h, domain=domain, wildcard=wildcard) for h in [*hosts, domain]}
    return {name: certificate_hosts(name, domain=domain) for name in sorted(names)}


def mapping_refusal(
    host: str,
    *,
    service: str,
    domain: str,
    services: Iterable[str],
    mapped: Mapping[str, str],
) -> str | None:
    """Why `host` may not be mapped to `service` (None: it may)."""
    if host == domain:
        return f"host {host!r} is the bare domain: it serves Slipway's own API"
    if host.endswith(f".{domain}"):
        label = host.removesuffix(f".{domain}")
        owner = label.rsplit("--", 1)[-1]
        if owner in set(services) and "." not in label:
            what = "URL" if owner == label else "tag URL"
            return f"host {host!r} is the {what} of service {owner!r}"
        return (
            f"host {host!r} is under the platform domain {domain!r}, whose names belong to "
            "services and their tags; map a host outside it"
        )
    holder = mapped.get(host)
    if holder is not None and holder != service:
        return f"host {host!r} is already mapped to service {holder!r}"
    return None
