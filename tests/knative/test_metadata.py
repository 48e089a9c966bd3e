"""The metadata server on the real cluster: a pod Slipway deployed runs google-auth's
`id_token.fetch_id_token` against `GCE_METADATA_HOST` (which Slipway put in its revision) and
gets a token whose `sub` names its service, signed by a key in Slipway's JWKS.

The path is the one docs/kubernetes.md describes: the pod resolves the metadata Service's cluster
DNS name, kube-proxy forwards to its endpoint, the server sees the pod's IP as the source address
and asks the real API server for the running Slipway pod with that IP (`status.podIP` field
selector, the labels Knative copied from Slipway's template). The server runs on the host here
(the control plane does), behind a selector-less Service whose endpoint is the host's pod-network
address: the chart's Service selects the control-plane pod instead, the hop is the same.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
from kubernetes import client as k8s

from tests.knative.conftest import DOMAIN, Identity, Kube, TokenCaller, eventually

AUDIENCE = "http://kt-somebody.example.localhost"


def verified(token: str, identity: Identity, audience: str) -> dict[str, Any]:
    """The token's claims, its RS256 signature checked against the JWKS Slipway serves."""
    kid = jwt.get_unverified_header(token)["kid"]
    keys = [k for k in identity.jwks()["keys"] if k["kid"] == kid]
    assert keys, f"kid {kid!r} is not in Slipway's JWKS"
    key = jwt.PyJWK.from_dict(keys[0])
    claims: dict[str, Any] = jwt.decode(
        token, key.key, algorithms=["RS256"], audience=audience, issuer=identity.issuer
    )
    return claims


@pytest.fixture(scope="module")
def pod(token_caller: TokenCaller, kube_reader: Kube) -> Any:
    def running() -> list[Any]:
        return [p for p in kube_reader.pods(token_caller.revision) if p.status.phase == "Running"]

    return eventually(f"a running pod of {token_caller.revision}", running, timeout_s=240)[0]


def test_the_revision_gets_the_metadata_service_as_gce_metadata_host(
    pod: Any, identity: Identity
) -> None:
    env = {e.name: e.value for e in pod.spec.containers[0].env or ()}
    assert env["GCE_METADATA_HOST"] == identity.metadata_host, env
    assert env["GCE_METADATA_IP"] == identity.metadata_host, env


def test_google_auth_in_the_pod_gets_a_token_naming_its_service(
    pod: Any, token_caller: TokenCaller, identity: Identity
) -> None:
    started = time.monotonic()
    token = token_caller.token(AUDIENCE)
    claims = verified(token, identity, AUDIENCE)
    assert claims["sub"] == f"service:{token_caller.service}", claims
    assert claims["email"] == f"{token_caller.service}@{DOMAIN}", claims
    assert claims["iss"] == identity.issuer and claims["aud"] == AUDIENCE, claims
    assert 0 < claims["exp"] - claims["iat"] <= 3600, claims
    print(f"first token through the cluster: {time.monotonic() - started:.1f}s")


def test_the_server_knew_the_caller_by_its_pod_ip(
    pod: Any, token_caller: TokenCaller, identity: Identity
) -> None:
    """`format=full` names the revision and the instance: the very pod the API server lists
    with that IP, so the source address arrived unchanged (no SNAT on the way)."""
    path = (
        "/computeMetadata/v1/instance/service-accounts/default/identity"
        f"?audience={AUDIENCE}&format=full"
    )
    resp = token_caller.get("/metadata?" + urlencode({"path": path}))
    assert resp.status_code == 200, resp.text
    claims = verified(resp.text, identity, AUDIENCE)
    assert claims["slipway"] == {
        "service": token_caller.service,
        "revision": token_caller.revision,
        "instance": pod.metadata.name,
        "project": identity.slipway.platform_id,
    }, json.dumps(claims)


def test_a_pod_slipway_did_not_deploy_gets_no_identity(
    pod: Any, identity: Identity, kube: k8s.ApiClient, namespace: str
) -> None:
    """A bare pod in the same namespace, on the same image, asking the same Service: 403 (it
    carries none of the labels Knative copies from Slipway's template)."""
    image = pod.spec.containers[0].image
    name = f"kt-stranger-{pod.metadata.name[-5:]}"
    script = (
        "import os, urllib.error, urllib.request\n"
        "r = urllib.request.Request('http://' + os.environ['GCE_METADATA_HOST'] + "
        "'/computeMetadata/v1/instance/service-accounts/default/email', "
        "headers={'Metadata-Flavor': 'Google'})\n"
        "try:\n"
        "    print('answer', urllib.request.urlopen(r, timeout=10).status)\n"
        "except urllib.error.HTTPError as e:\n"
        "    print('answer', e.code, e.read().decode().strip())\n"
    )
    core = k8s.CoreV1Api(kube)
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "stranger",
                        "image": image,
                        "command": ["python3", "-c", script],
                        "env": [{"name": "GCE_METADATA_HOST", "value": identity.metadata_host}],
                    }
                ],
            },
        },
    )
    try:

        def finished() -> str:
            phase = core.read_namespaced_pod(name, namespace).status.phase
            return str(phase) if phase in ("Succeeded", "Failed") else ""

        eventually(f"pod {name} finishing", finished, timeout_s=120)
        log = core.read_namespaced_pod_log(name, namespace)
        assert "answer 403" in log, log
        assert "is not an instance of this Slipway" in log, log
    finally:
        core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
