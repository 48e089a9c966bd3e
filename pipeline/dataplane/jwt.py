"""The identity check of private services, as HAProxy rules: pure, like the rest of `render`.

`backend_lines` gives the lines that lead each revision backend of a private service, so that a
request reaches one of its instances (or the activator) only with a valid identity token of one
of its invokers; `guarded_backends` says which backends those are and for which service.
`invokers_map` renders the map file those rules consult; the manager writes it and changes the
running HAProxy with `add map` / `del map`, so granting or revoking an invoker never reloads.

Why in the backends and not the frontends: a revision backend belongs to one service, so the
rules run only for requests that service takes, whichever listener (public, HTTPS, internal)
or host (service URL, tag URL, split) led there, and a public service's request walks past none
of them (in the frontend every request evaluated every one of these rules, about 4.7k
instructions on a public request: docs/benchmarks.md). The service is a constant there, so no
variable has to carry it from the host.

What HAProxy checks, in order (no Python is called per request):

1. The token: `X-Serverless-Authorization: Bearer` if present (as Cloud Run), else
   `Authorization: Bearer`.
2. The header: `alg` is RS256 and `kid` names a live key. `jwt_verify` takes its key as a literal
   file path (HAProxy loads every key at start-up; a variable is "not advised" by its manual), so
   there is one verify rule per key, selected by `kid`: rotation adds a rule and reloads.
3. The claims: `iss` is Slipway's URL, `exp` is in the future, `nbf` (if present) is not, and
   `aud` is one of the service's URLs (service URL or any tag URL, with or without a trailing
   slash). Any failure: 401 with `WWW-Authenticate: Bearer`.
4. The caller: `<service>/<sub>` is a key of the invokers map; else 403.

HAProxy's `sub` converter compares a claim with the time of the request, which is how the expiry
is checked without Python.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.dataplane.model import JwtPolicy, Route, Site

ALGORITHM = "RS256"
_CLAIMS = (("iss", "str"), ("aud", "str"), ("sub", "str"), ("exp", "int"), ("nbf", "int"))


def guarded_backends(routes: Iterable[Route]) -> dict[str, tuple[str, list[str]]]:
    """backend -> (service, that service's private hosts) for every backend a private route
    sends traffic to (a 0% split included: a tag may still reach it).

    A backend is one revision of one service, so one service per backend is the rule; if two
    services' private routes ever named the same backend, the first by name guards it, which
    refuses the other's callers rather than letting anyone in (fail closed). Likewise a public
    route to a guarded backend would need a token."""
    hosts: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for route in sorted((r for r in routes if r.private), key=lambda r: r.host):
        hosts.setdefault(route.service, []).append(route.host)
        for split in route.splits:
            owner[split.backend] = min(owner.get(split.backend, route.service), route.service)
    return {backend: (svc, hosts[svc]) for backend, svc in sorted(owner.items())}


def backend_lines(
    service: str, hosts: Iterable[str], *, site: Site, policy: JwtPolicy | None
) -> list[str]:
    """The rules that lead a backend of private `service` reached by `hosts`."""
    port = int(site.bind.rsplit(":", 1)[1])
    lines = [
        "http-request set-var(txn.jwt) http_auth_bearer",
        "http-request set-var(txn.jwt) http_auth_bearer(x-serverless-authorization) "
        "if { req.hdr(x-serverless-authorization) -m found }",
        "http-request set-var(txn.now) date",
        "http-request set-var(txn.alg) var(txn.jwt),jwt_header_query('$.alg')",
        "http-request set-var(txn.kid) var(txn.jwt),jwt_header_query('$.kid')",
    ]
    for kid, path in sorted((policy.keys if policy else ()), key=lambda k: k[0]):
        lines.append(
            f'http-request set-var(txn.sig) var(txn.jwt),jwt_verify("{ALGORITHM}","{path}") '
            f"if {{ var(txn.alg) -m str {ALGORITHM} }} {{ var(txn.kid) -m str {kid} }}"
        )
    https = site.https_port
    lines += [
        "acl jwt_signed var(txn.sig) -m int 1",
        *(
            f"http-request set-var(txn.{claim}) var(txn.jwt),jwt_payload_query('$.{claim}'"
            f"{',int' if kind == 'int' else ''}) if jwt_signed"
            for claim, kind in _CLAIMS
        ),
        f"acl jwt_iss var(txn.iss) -m str {_issuer(policy)}",
        "acl jwt_live var(txn.exp),sub(txn.now) -m int gt 0",
        "acl jwt_nbf var(txn.nbf) -m found",
        "acl jwt_started var(txn.nbf),sub(txn.now) -m int le 0",
        # One line per host, never one per service: HAProxy reads at most 64 words a line and
        # rejects the whole file past that, so a private service with many tags would freeze
        # the data plane for every service. Lines of one ACL name are ORed.
        *(
            f"acl jwt_aud var(txn.aud) -m str {' '.join(audiences([h], port=port, https=https))}"
            for h in sorted(hosts)
        ),
        f"acl jwt_invoker str({map_key(service, '')}),concat(,txn.sub,),"
        f"map({site.invokers_map}) -m str 1",
        "http-request return status 401 content-type text/plain "
        "hdr www-authenticate 'Bearer realm=\"slipway\"' lf-string "
        f"\"slipway: service '{service}' is private: send an identity token for its URL "
        '(Authorization: Bearer TOKEN; `slipway auth print-identity-token --audience URL`)\\n" '
        "if !jwt_signed || !jwt_iss || !jwt_live || jwt_nbf !jwt_started || !jwt_aud",
        "http-request return status 403 content-type text/plain lf-string "
        f"\"slipway: '%[var(txn.sub)]' may not invoke service '{service}': "
        f'`slipway services add-invoker {service} --member %[var(txn.sub)]` allows it\\n" '
        "if !jwt_invoker",
    ]
    return lines


def audiences(hosts: Iterable[str], *, port: int, https: int = 0) -> list[str]:
    """The `aud` values a token for these hosts may carry: each URL, with and without '/' (and
    its HTTPS URL too when the ingress has an HTTPS port)."""
    out = []
    for host in sorted(hosts):
        for authority in [host, f"{host}:{port}"] if port == 80 else [f"{host}:{port}"]:
            out += [f"http://{authority}", f"http://{authority}/"]
        if https:
            authority = host if https == 443 else f"{host}:{https}"
            out += [f"https://{authority}", f"https://{authority}/"]
    return out


def invokers_map(invokers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The invokers map as key -> value: `<service>/<member>` -> "1"."""
    return {map_key(svc, member): "1" for svc, member in invokers}


def map_key(service: str, member: str) -> str:
    return f"{service}/{member}"


def map_text(entries: dict[str, str]) -> str:
    return "".join(f"{key} {value}\n" for key, value in sorted(entries.items()))


def _issuer(policy: JwtPolicy | None) -> str:
    # Without a policy no token can pass: an issuer no token carries keeps the check closed.
    return policy.issuer if policy else "slipway:no-issuer-configured"
