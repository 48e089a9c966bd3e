"""Private services on Knative: Istio policies that check Slipway's JWTs, rendered purely.

On one machine HAProxy checks the token; on Knative with Istio the sidecar of each pod does:

- `RequestAuthentication`: tokens must be signed by a key in Slipway's JWKS
  (`<Slipway URL>/.well-known/jwks.json`) with `iss` = Slipway's URL and `aud` one of the
  service's URLs. A token that fails is rejected with 401.
- `AuthorizationPolicy` (ALLOW): only requests whose principal (`<iss>/<sub>`) belongs to an
  invoker get through, `sub` being the member the metadata server mints (`service:checkout`);
  anything else, a request without a token included, gets 403 from Istio (HAProxy answers 401
  for a missing token: the one visible difference). Knative's own probe and
  metrics paths stay open, as Knative documents for clusters with authorization policies.

A service opts in with annotations on its Knative Service (Cloud Run's "require
authentication", in Knative's vocabulary):

    metadata:
      annotations:
        slipway.dev/private: "true"
        slipway.dev/invokers: "checkout,user:alice"   # services (or service:<name>) and users

The keys and their grammar are `core.annotations`, the same as next to Docker; the engine reads
them with `access_of`, which refuses an entry it cannot read rather than skip it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.core import names
from pipeline.core.annotations import (
    KNATIVE_SERVICE_LABEL,
    PRIVATE_ANNOTATION,
    SERVICE_LABEL,
    k8s_labels,
)
from pipeline.core.errors import InvalidSpec

API_VERSION = "security.istio.io/v1"
GROUP = "security.istio.io"
VERSION = "v1"
JWKS_PATH = "/.well-known/jwks.json"
# Knative's system pods probe and scrape these paths without a token (Knative docs, "Enabling
# requests to Knative services when additional authorization policies are enabled").
KNATIVE_SYSTEM_PATHS = ("/metrics", "/healthz")


def render_policies(
    *,
    service: str,
    namespace: str,
    platform: str,
    issuer: str,
    audiences: Sequence[str],
    invokers: Sequence[str],
) -> list[dict[str, Any]]:
    """RequestAuthentication and AuthorizationPolicy for one private service; `invokers` are
    members (`core.annotations.access_of`), each the `sub` of the tokens it may send."""
    if not issuer:
        raise InvalidSpec(
            "private services on Knative need Slipway's public URL as the JWT issuer: "
            "set SLIPWAY_PUBLIC_URL (the chart's `publicUrl`)",
            path=f"metadata.annotations.{PRIVATE_ANNOTATION}",
        )
    labels = k8s_labels(platform=platform, **{SERVICE_LABEL: service})
    selector = {"matchLabels": {KNATIVE_SERVICE_LABEL: service}}
    jwt_rule: dict[str, Any] = {
        "issuer": issuer,
        "jwksUri": issuer + JWKS_PATH,
        "forwardOriginalToken": True,
    }
    if audiences:
        jwt_rule["audiences"] = list(audiences)
    authn = {
        "apiVersion": API_VERSION,
        "kind": "RequestAuthentication",
        "metadata": {
            "name": names.request_authentication_name(service),
            "namespace": namespace,
            "labels": labels,
        },
        "spec": {"selector": selector, "jwtRules": [jwt_rule]},
    }
    rules: list[dict[str, Any]] = [
        {"to": [{"operation": {"paths": list(KNATIVE_SYSTEM_PATHS)}}]},
    ]
    if invokers:
        principals = [f"{issuer}/{member}" for member in invokers]
        rules.insert(0, {"from": [{"source": {"requestPrincipals": principals}}]})
    authz = {
        "apiVersion": API_VERSION,
        "kind": "AuthorizationPolicy",
        "metadata": {
            "name": names.authorization_policy_name(service),
            "namespace": namespace,
            "labels": labels,
        },
        "spec": {"selector": selector, "action": "ALLOW", "rules": rules},
    }
    return [authn, authz]


def audiences_for(
    service: str, *, domain: str, tags: Sequence[str], urls: Sequence[str]
) -> list[str]:
    """Every URL a caller may name as `aud`: Slipway's URL scheme plus what Knative published."""
    hosts = [names.service_host(service, domain)]
    hosts.extend(names.tag_host(tag, service, domain) for tag in tags)
    out = [f"{scheme}://{host}" for host in hosts for scheme in ("http", "https")]
    out.extend(url for url in urls if url not in out)
    return out
