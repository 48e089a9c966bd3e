"""The identity check of private services, as HAProxy rules: pure, like the rest of `render`.

`frontend_lines` gives the lines a frontend needs so that a request for a private service's host
(its URL or a tag URL) reaches a backend only with a valid identity token of one of its invokers;
`render` puts them after the host ACLs of both listeners. `invokers_map` renders the map file
those rules consult; the manager writes it and changes the running HAProxy with `add map` /
`del map`, so granting or revoking an invoker never reloads.

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

HAProxy's `sub` converter and `strcmp` compare a variable with the sample, which is how the
expiry and the audience's service are checked without Python.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.dataplane.model import JwtPolicy, Route, Site

ALGORITHM = "RS256"
_CLAIMS = (("iss", "str"), ("aud", "str"), ("sub", "str"), ("exp", "int"), ("nbf", "int"))


def frontend_lines(routes: Iterable[Route], *, site: Site, policy: JwtPolicy | None) -> list[str]:
    """Rules for the private routes among `routes`; none when no route is private."""
    private = sorted((r for r in routes if r.private), key=lambda r: r.host)
    if not private:
        return []
    hosts: dict[str, list[str]] = {}
    for route in private:
        hosts.setdefault(route.service or route.host, []).append(route.host)
    port = int(site.bind.rsplit(":", 1)[1])
    # One line per host, never one per service: HAProxy reads at most 64 words a line and
    # rejects the whole file past that, so a private service with many tags would freeze the
    # data plane for every service.
    lines = [
        *(
            f"http-request set-var(txn.svc) str({svc}) if host:{h}"
            for svc, hs in sorted(hosts.items())
            for h in sorted(hs)
        ),
        "acl private var(txn.svc) -m found",
        "http-request set-var(txn.jwt) http_auth_bearer if private",
        "http-request set-var(txn.jwt) http_auth_bearer(x-serverless-authorization) "
        "if private { req.hdr(x-serverless-authorization) -m found }",
        "http-request set-var(txn.now) date if private",
        "http-request set-var(txn.alg) var(txn.jwt),jwt_header_query('$.alg') if private",
        "http-request set-var(txn.kid) var(txn.jwt),jwt_header_query('$.kid') if private",
    ]
    for kid, path in sorted((policy.keys if policy else ()), key=lambda k: k[0]):
        lines.append(
            f'http-request set-var(txn.sig) var(txn.jwt),jwt_verify("{ALGORITHM}","{path}") '
            f"if private {{ var(txn.alg) -m str {ALGORITHM} }} {{ var(txn.kid) -m str {kid} }}"
        )
    https = site.https_port
    lines += [
        "acl jwt_signed var(txn.sig) -m int 1",
        *(
            f"http-request set-var(txn.{claim}) var(txn.jwt),jwt_payload_query('$.{claim}'"
            f"{',int' if kind == 'int' else ''}) if private jwt_signed"
            for claim, kind in _CLAIMS
        ),
        *(
            f"http-request set-var(txn.aud_svc) str({svc}) if private jwt_signed "
            f"{{ var(txn.aud) -m str {' '.join(audiences([h], port=port, https=https))} }}"
            for svc, hs in sorted(hosts.items())
            for h in sorted(hs)
        ),
        f"acl jwt_iss var(txn.iss) -m str {_issuer(policy)}",
        "acl jwt_live var(txn.exp),sub(txn.now) -m int gt 0",
        "acl jwt_nbf var(txn.nbf) -m found",
        "acl jwt_started var(txn.nbf),sub(txn.now) -m int le 0",
        "acl jwt_aud var(txn.aud_svc),strcmp(txn.svc) -m int eq 0",
        "http-request set-var(txn.member) var(txn.svc),concat(/,txn.sub,) if private jwt_signed",
        f"acl jwt_invoker var(txn.member),map({site.invokers_map}) -m str 1",
        "http-request return status 401 content-type text/plain "
        "hdr www-authenticate 'Bearer realm=\"slipway\"' lf-string "
        "\"slipway: service '%[var(txn.svc)]' is private: send an identity token for its URL "
        '(Authorization: Bearer TOKEN; `slipway auth print-identity-token --audience URL`)\\n" '
        "if private !jwt_signed || private !jwt_iss || private !jwt_live "
        "|| private jwt_nbf !jwt_started || private !jwt_aud",
        "http-request return status 403 content-type text/plain lf-string "
        "\"slipway: '%[var(txn.sub)]' may not invoke service '%[var(txn.svc)]': "
        '`slipway services add-invoker %[var(txn.svc)] --member %[var(txn.sub)]` allows it\\n" '
        "if private !jwt_invoker",
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
