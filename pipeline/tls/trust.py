"""What a client of Slipway trusts: the system's CAs, and Slipway's local CA when there is one.

The CLI talks to the bare domain; once HTTPS is on, that is `https://localhost:8443` with a
certificate from the local CA (`<data dir>/tls/ca.pem`), which no system store knows. Adding
the local root to the default context keeps public certificates (an ACME domain) verified as
before.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import urlsplit


def client_context(local_ca: Path) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if local_ca.is_file():
        context.load_verify_locations(cafile=str(local_ca))
    return context


def upgraded(url: str, location: str) -> str:
    """The HTTPS origin a redirect from `url` leads to, if it is the same host moving to
    HTTPS (what the plain listener answers once HTTPS is on); else ""."""
    before, after = urlsplit(url), urlsplit(location)
    if before.scheme == "http" and after.scheme == "https" and after.hostname == before.hostname:
        return f"https://{after.netloc}"
    return ""
