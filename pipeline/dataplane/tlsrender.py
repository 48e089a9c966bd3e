"""HTTPS in haproxy.cfg, pure: the TLS listener's bind, the plain listener's ACME and redirect
rules, and the crt-list file that names each certificate.

With `Site.https_bind` set, `render` adds a third frontend (`frontend https`) that routes exactly
as the public one does, terminating TLS with a certificate picked by SNI from the crt-list, or
the fallback certificate when none matches. The public plain-HTTP frontend then does two things
before anything else (private-service token checks included): it answers ACME HTTP-01 challenges
itself from a map (`pipeline.dataplane.challenges` fills it at runtime), and redirects every
other request to HTTPS with a 308, which keeps the method and body. The internal listener
instances use is left as it is: plain HTTP on the bridge.

Certificates are not part of the config text: which ones exist changes at runtime (`add ssl
crt-list`, `set ssl cert`, see `tlschanges`), so issuing or renewing one never reloads HAProxy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pipeline.core.errors import InvalidSpec
from pipeline.dataplane.checks import HOST_FETCH
from pipeline.dataplane.model import CertFile, Site

CHALLENGE_PREFIX = "/.well-known/acme-challenge/"
# path `/.well-known/acme-challenge/<token>`: the token is its fourth '/'-separated field.
_TOKEN = "path,field(4,/)"
_CERT_NAME = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")


def bind(site: Site) -> str:
    """The HTTPS listener: the fallback certificate first (the default), then the list."""
    return (
        f"{site.https_bind} ssl crt {site.fallback_cert} crt-list {site.crt_list} "
        "alpn h2,http/1.1"
    )


def plain_lines(site: Site) -> list[str]:
    """First rules of the public plain-HTTP frontend once HTTPS is on."""
    challenge = f"{{ path_beg {CHALLENGE_PREFIX} }}"
    answer = f"{_TOKEN},map({site.challenges_map})"
    port = "" if site.https_port == 443 else f":{site.https_port}"
    return [
        f'http-request return status 200 content-type text/plain lf-string "%[{answer}]" '
        f"if {challenge} {{ {answer} -m found }}",
        f"http-request redirect location https://%[{HOST_FETCH}]{port}%[capture.req.uri] "
        f"code 308 unless {challenge}",
    ]


def crt_list_text(site: Site, certificates: Iterable[CertFile]) -> str:
    """One certificate file per line; HAProxy takes each one's names from the certificate."""
    names = sorted(c.name for c in certificates)
    return "".join(f"{site.cert_file(name)}\n" for name in names)


def check(certificates: Iterable[CertFile]) -> None:
    """Refuse names that would make a bad file name or crt-list line."""
    seen: set[str] = set()
    for cert in certificates:
        if not _CERT_NAME.match(cert.name) or cert.name in seen:
            raise InvalidSpec(f"invalid or duplicate certificate name {cert.name!r}")
        seen.add(cert.name)
