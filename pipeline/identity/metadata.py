"""The metadata server instances reach at `$GCE_METADATA_HOST`: identity tokens on request.

It speaks the slice of the GCE metadata API that google-auth's `id_token.fetch_id_token` and
Cloud Run code use: the root ping, `.../service-accounts/default/identity?audience=&format=`,
`.../service-accounts/default/?recursive=true` (the account, which google-auth reads first),
`.../service-accounts/default/email` and `/project/project-id`. Every answer carries
`Metadata-Flavor: Google`; a request without that header, with an `X-Forwarded-For` (GCE refuses
proxied requests the same way), or from an address that is not one of this platform's running
instances gets 403. The caller is its TCP source address, never anything the request says about
itself, found by a `CallerLookup` (`identity.callers`): next to Docker, an owned container on
Slipway's bridge network (`identity.dockercallers`); on Kubernetes, the running Slipway pod with
that pod IP (`knative.callers`). `app.metadataserver` picks one and starts the server.

`answer` is the whole protocol as a function of the request, the lookup and the issuer, so it is
tested without sockets; `serve` puts it behind a threading HTTP server whose connections are
bounded in time and number (`identity.connections`), so no caller can starve the others. The
server runs as its own daemon (started like the internal resolver, see `app.daemons`), not in
the control plane: a control-plane restart must not fail every service-to-service call in the
meantime. On Kubernetes
it is the second container of the control-plane pod behind its own Service (the Helm chart), for
the same reason.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from pipeline.core.errors import SlipwayError
from pipeline.identity import tokens
from pipeline.identity.callers import Caller, CallerLookup
from pipeline.identity.connections import BoundedHandler, BoundedServer, Limits
from pipeline.identity.keys import KeyStore

FLAVOR = ("Metadata-Flavor", "Google")
PREFIX = "/computeMetadata/v1/"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, kw_only=True)
class Reply:
    status: int
    body: str
    content_type: str = "application/text"  # what GCE's server sends for plain values


@dataclass(frozen=True, kw_only=True)
class Issuer:
    """What the server needs to mint: the platform's URL and domain, and the signing key."""

    issuer: str
    domain: str
    project: str
    keys: KeyStore
    clock: Callable[[], float] = time.time

    def token(self, caller: Caller, *, audience: str, full: bool) -> str:
        identity = tokens.service_identity(caller.service, domain=self.domain)
        extra = (
            {
                "slipway": {
                    "service": caller.service,
                    "revision": caller.revision,
                    "instance": caller.instance,
                    "project": self.project,
                }
            }
            if full
            else None
        )
        payload = tokens.claims(
            identity, issuer=self.issuer, audience=audience, now=int(self.clock()), extra=extra
        )
        key = self.keys.signing()
        return tokens.mint(payload, kid=key.kid, private_pem=key.private_pem())


def answer(
    *,
    method: str,
    target: str,
    headers: dict[str, str],
    peer: str,
    lookup: CallerLookup,
    issuer: Issuer,
) -> Reply:
    """One metadata request; `headers` keys are lowercase."""
    if headers.get("metadata-flavor") != "Google":
        return Reply(status=403, body="missing the request header 'Metadata-Flavor: Google'\n")
    if "x-forwarded-for" in headers:
        return Reply(status=403, body="requests carrying X-Forwarded-For are refused\n")
    if method not in ("GET", "HEAD"):
        return Reply(status=405, body="only GET is served\n")
    try:
        caller = lookup(peer)
    except SlipwayError as e:  # e.g. the Kubernetes API is unreachable: not the caller's fault
        return Reply(status=503, body=f"cannot tell who is calling right now: {e.message}\n")
    if caller is None:
        return Reply(
            status=403,
            body=f"{peer} is not an instance of this Slipway: no identity for it\n",
        )
    parts = urlsplit(target)
    path, query = parts.path, parse_qs(parts.query)
    email = tokens.service_identity(caller.service, domain=issuer.domain).email
    if path in ("/", "/computeMetadata/", "/computeMetadata/v1/"):
        return Reply(status=200, body="computeMetadata/\n" if path == "/" else "v1/\n")
    if path == f"{PREFIX}project/project-id":
        return Reply(status=200, body=issuer.project)
    account = path.removeprefix(f"{PREFIX}instance/service-accounts/")
    if account == path:
        return Reply(status=404, body=f"no metadata at {path}\n")
    name, _, leaf = account.partition("/")
    if name not in ("default", email):
        return Reply(status=404, body=f"no service account {name!r}: use 'default'\n")
    if leaf == "email":
        return Reply(status=200, body=email)
    if leaf == "" and query.get("recursive") == ["true"]:
        # google-auth's IDTokenCredentials reads the account first (email, aliases, scopes).
        info = {"aliases": ["default"], "email": email, "scopes": [SCOPE]}
        return Reply(status=200, body=json.dumps(info), content_type="application/json")
    if leaf == "identity":
        audience = (query.get("audience") or [""])[0]
        if not audience:
            return Reply(status=400, body="the audience parameter is required\n")
        full = (query.get("format") or ["standard"])[0] == "full"
        return Reply(status=200, body=issuer.token(caller, audience=audience, full=full))
    return Reply(status=404, body=f"no metadata at {path}\n")


def make_server(
    *, bind: str, port: int, lookup: CallerLookup, issuer: Issuer, limits: Limits = DEFAULT_LIMITS
) -> BoundedServer:
    """The server, bound and not yet serving (`serve_forever`); port 0 picks a free one."""

    class Handler(BoundedHandler):
        protocol_version = "HTTP/1.1"
        server_version = "Metadata Server for Slipway"

        def do_GET(self) -> None:
            self._reply()

        def do_HEAD(self) -> None:
            self._reply(body=False)

        def do_POST(self) -> None:
            self._reply()

        def _reply(self, *, body: bool = True) -> None:
            reply = answer(
                method=self.command,
                target=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                peer=self.client_address[0],
                lookup=lookup,
                issuer=issuer,
            )
            data = reply.body.encode()
            self.send_response(reply.status)
            self.send_header(*FLAVOR)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass  # no access log: a line per token request says nothing the caller does not

    return BoundedServer((bind, port), Handler, limits=limits)


def serve(*, bind: str, port: int, lookup: CallerLookup, issuer: Issuer) -> None:
    make_server(bind=bind, port=port, lookup=lookup, issuer=issuer).serve_forever()
