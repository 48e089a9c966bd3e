"""Private services on the real cluster: the Istio objects Slipway applies are accepted by the
API server (Istio's CRDs are installed by scripts/cluster, so each is checked against Istio's own
schema and stored), and the principal they allow is exactly the `<iss>/<sub>` of the token the
metadata server mints for the invoker's pod, which the test gets the way that pod would: google-
auth in it, asking for the private service's URL as the audience.

Enforcement needs Envoy (an Istio sidecar or gateway and istiod), which cannot run here: no
request is sent through the policies; what is checked is that they say what they must.

Issue 14's invoker bug is what these tests catch: the invoker annotation had two grammars, so
the Knative engine refused `service:<name>` entries and turned a bare `<name>` into the principal
`<iss>/<name>`, while the metadata server mints `sub: service:<name>`: on Knative a private
service would have refused every invoker.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import docker
import jwt
import pytest
import yaml

from pipeline.core import names
from tests.knative.conftest import (
    Identity,
    Kube,
    PushedImage,
    TokenCaller,
    eventually,
    httpd_app,
    push,
)

ISTIO = ("security.istio.io", "v1")


def istio_object(kube: Kube, plural: str, name: str) -> dict[str, Any] | None:
    from kubernetes import client as k8s

    try:
        obj: Any = kube.custom.get_namespaced_custom_object(
            *ISTIO, kube.namespace, plural, name
        )
    except k8s.exceptions.ApiException as e:
        if e.status == 404:
            return None
        raise
    return dict(obj)


def policies(kube: Kube, service: str) -> tuple[dict[str, Any], dict[str, Any]]:
    def both() -> tuple[dict[str, Any], dict[str, Any]] | None:
        authn = istio_object(
            kube, "requestauthentications", names.request_authentication_name(service)
        )
        authz = istio_object(
            kube, "authorizationpolicies", names.authorization_policy_name(service)
        )
        return (authn, authz) if authn and authz else None

    found: tuple[dict[str, Any], dict[str, Any]] = eventually(
        f"the API server holding the Istio policies of {service}", both, timeout_s=60
    )
    return found


def principals(authz: dict[str, Any]) -> list[str]:
    return [
        p
        for rule in authz["spec"].get("rules") or ()
        for src in rule.get("from") or ()
        for p in src["source"].get("requestPrincipals") or ()
    ]


def published_url(kube: Kube, service: str) -> str:
    def url() -> str:
        route = kube.knative("routes", service) or {}
        return str((route.get("status") or {}).get("url") or "")

    return str(eventually(f"Knative publishing the URL of {service}", url, timeout_s=120))


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


@pytest.fixture(scope="module")
def target_image(
    docker_client: docker.DockerClient,
    busybox: str,
    tmp_path_factory: pytest.TempPathFactory,
    cluster: Any,
) -> PushedImage:
    root = tmp_path_factory.mktemp("private")
    return push(
        docker_client,
        httpd_app(root / "app", "private\n"),
        f"{cluster.registry}/slipway-kt/kt-private:1",
    )


def test_add_invoker_allows_exactly_the_sub_the_callers_pod_is_minted(
    identity: Identity, token_caller: TokenCaller, target_image: PushedImage, kube_reader: Kube
) -> None:
    """`slipway deploy --no-allow-unauthenticated` then `services add-invoker --member
    service:<caller>`, as the docs tell a user."""
    service = f"kt-private-{secrets.token_hex(2)}"
    sw = identity.slipway
    sw.cli("deploy", service, "--image", target_image.ref, "--no-allow-unauthenticated")
    sw.cli("services", "add-invoker", service, "--member", f"service:{token_caller.service}")
    url = published_url(kube_reader, service)

    token = token_caller.token(url)  # what the caller's code would send to the service
    claims = claims_of(token)
    assert claims["sub"] == f"service:{token_caller.service}", claims

    def current() -> tuple[dict[str, Any], dict[str, Any]] | None:
        authn, authz = policies(kube_reader, service)
        audiences = authn["spec"]["jwtRules"][0].get("audiences") or []
        return (authn, authz) if url in audiences and principals(authz) else None

    authn, authz = eventually(
        f"the policies of {service} naming its URL and an invoker", current, timeout_s=60
    )
    assert principals(authz) == [f"{claims['iss']}/{claims['sub']}"], authz["spec"]
    rule = authn["spec"]["jwtRules"][0]
    assert rule["issuer"] == claims["iss"], rule
    assert claims["aud"] in rule["audiences"], rule
    assert rule["jwksUri"] == f"{identity.issuer}/.well-known/jwks.json", rule
    # The jwksUri serves the key that signed the caller's token.
    kid = jwt.get_unverified_header(token)["kid"]
    (key,) = [k for k in identity.jwks()["keys"] if k["kid"] == kid]
    jwt.decode(
        token, jwt.PyJWK.from_dict(key).key, algorithms=["RS256"], audience=url,
        issuer=rule["issuer"],
    )  # fmt: skip
    assert authz["spec"]["action"] == "ALLOW", authz["spec"]


def test_an_annotated_service_allows_bare_names_and_users_as_members(
    identity: Identity,
    token_caller: TokenCaller,
    target_image: PushedImage,
    kube_reader: Kube,
    tmp_path: Path,
) -> None:
    """The annotation as a user writes it in YAML (`services replace`): a bare service name
    is short for `service:<name>`; a user is `user:<name>`, the `sub` of `slipway auth token`."""
    service = f"kt-annotated-{secrets.token_hex(2)}"
    doc = tmp_path / "service.yaml"
    doc.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "serving.knative.dev/v1",
                "kind": "Service",
                "metadata": {
                    "name": service,
                    "annotations": {
                        "slipway.dev/private": "true",
                        "slipway.dev/invokers": f"{token_caller.service},user:alice",
                    },
                },
                "spec": {"template": {"spec": {"containers": [{"image": target_image.ref}]}}},
            }
        )
    )
    identity.slipway.cli("services", "replace", str(doc))
    url = published_url(kube_reader, service)
    claims = claims_of(token_caller.token(url))

    def current() -> list[str]:
        _, authz = policies(kube_reader, service)
        return principals(authz)

    allowed = eventually(f"the AuthorizationPolicy of {service} naming invokers", current)
    assert allowed == [
        f"{claims['iss']}/{claims['sub']}",
        f"{identity.issuer}/user:alice",
    ], allowed


def test_the_policies_select_the_private_services_pods(
    identity: Identity, target_image: PushedImage, kube_reader: Kube
) -> None:
    """The selector is what Istio matches workloads by: it must match the labels the pods of
    the service really carry (Knative's, copied to every revision pod)."""
    service = f"kt-selected-{secrets.token_hex(2)}"
    identity.slipway.cli(
        "deploy", service, "--image", target_image.ref, "--no-allow-unauthenticated",
        "--min-instances", "1",
    )  # fmt: skip
    authn, authz = policies(kube_reader, service)

    def running() -> list[Any]:
        return [p for p in kube_reader.pods(f"{service}-00001") if p.status.phase == "Running"]

    pod = eventually(f"a running pod of {service}", running, timeout_s=240)[0]
    for policy in (authn, authz):
        wanted = policy["spec"]["selector"]["matchLabels"]
        assert wanted.items() <= (pod.metadata.labels or {}).items(), (wanted, pod.metadata.labels)
        assert policy["metadata"]["labels"]["slipway.dev/platform"] == identity.slipway.platform_id
