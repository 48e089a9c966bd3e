"""The metadata server on Kubernetes: callers known by pod IP, asked of the API server.

The API server is the STAND-IN of tests/unit/kubestandin.py (no Kubernetes runs here); the pods
it lists are written the way Knative makes them, with the labels `render` puts on a revision
template plus Knative's own. The last test runs the real `slipway metadata --engine knative`
process, with a kubeconfig pointing at the stand-in, and asks it for a token over real HTTP.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt as pyjwt
import pytest
import yaml

from pipeline.core.annotations import (
    KNATIVE_REVISION_LABEL,
    KNATIVE_SERVICE_LABEL,
    MANAGED_BY_LABEL,
    PLATFORM_LABEL,
    SERVICE_LABEL,
)
from pipeline.core.errors import Unavailable
from pipeline.identity import keys
from pipeline.identity.callers import Caller
from pipeline.identity.metadata import Issuer, answer
from pipeline.knative.apply import KubeApi
from pipeline.knative.callers import caller_of_pod, pod_lookup
from pipeline.knative.render import render_service
from tests.unit import kubestandin
from tests.unit.factories import revision, service
from tests.unit.kubestandin import StandIn

PODS = "/api/v1/namespaces/apps/pods"
FLAVOR = {"Metadata-Flavor": "Google"}


def knative_pod(
    name: str,
    *,
    ip: str,
    svc: str = "hello",
    rev: str = "hello-00001",
    platform: str = "prod",
    phase: str = "Running",
) -> dict[str, Any]:
    """A pod as Knative creates it for `rev`: the rendered template's labels + Knative's own."""
    ksvc = render_service(
        service=service(svc), revisions=[revision(svc, 1)], namespace="apps", platform=platform
    )
    assert ksvc is not None
    labels = dict(ksvc["spec"]["template"]["metadata"]["labels"])
    labels |= {
        KNATIVE_SERVICE_LABEL: svc,
        KNATIVE_REVISION_LABEL: rev,
        "serving.knative.dev/configuration": svc,
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "apps", "labels": labels},
        "status": {"phase": phase, "podIP": ip},
    }


def kubeconfig_for(server: str) -> str:
    """A kubeconfig that points the real client at the stand-in."""
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "standin", "cluster": {"server": server}}],
            "users": [{"name": "slipway", "user": {"token": "not-checked-by-the-stand-in"}}],
            "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "slipway"}}],
            "current-context": "standin",
        }
    )


def test_rendered_templates_carry_the_labels_pods_are_recognised_by() -> None:
    pod = knative_pod("hello-00001-deployment-7d9f-x2x", ip="10.0.0.7")
    assert caller_of_pod(pod, platform="prod") == Caller(
        service="hello", revision="hello-00001", instance="hello-00001-deployment-7d9f-x2x"
    )


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda p: p["status"].update(phase="Succeeded"), "finished: its IP may be reused"),
        (lambda p: p["status"].update(phase="Pending"), "not running yet"),
        (lambda p: p["metadata"]["labels"].update({PLATFORM_LABEL: "staging"}), "other"),
        (lambda p: p["metadata"]["labels"].pop(MANAGED_BY_LABEL), "not Slipway's"),
        (lambda p: p["metadata"]["labels"].pop(KNATIVE_SERVICE_LABEL), "not Knative's"),
        (lambda p: p["metadata"]["labels"].update({SERVICE_LABEL: "admin"}), "labels disagree"),
        (lambda p: p["metadata"]["labels"].pop("serving.knative.dev/revision"), "no revision"),
    ],
)
def test_pods_that_speak_for_no_one(change: Any, why: str) -> None:
    pod = knative_pod("p", ip="10.0.0.7")
    change(pod)
    assert caller_of_pod(pod, platform="prod") is None, why


@pytest.fixture
def cluster() -> Iterator[tuple[StandIn, KubeApi]]:
    for state, api in kubestandin.serve():
        yield state, KubeApi(api, namespace="apps", platform="prod")


def test_lookup_asks_for_the_pod_with_that_ip(cluster: tuple[StandIn, KubeApi]) -> None:
    state, api = cluster
    state.put(PODS, knative_pod("a", ip="10.0.0.7"))
    state.put(PODS, knative_pod("b", ip="10.0.0.8", svc="other", rev="other-00003"))
    lookup = pod_lookup(api)
    caller = lookup("10.0.0.8")
    assert caller == Caller(service="other", revision="other-00003", instance="b")
    sent = state.requests[-1]
    assert (sent.method, sent.path) == ("GET", PODS)
    assert sent.query["fieldSelector"] == "status.podIP=10.0.0.8"
    assert (
        sent.query["labelSelector"]
        == "app.kubernetes.io/managed-by=slipway,slipway.dev/platform=prod"
    )
    assert lookup("::ffff:10.0.0.7") == Caller(
        service="hello", revision="hello-00001", instance="a"
    )
    assert state.requests[-1].query["fieldSelector"] == "status.podIP=10.0.0.7"
    assert lookup("10.0.0.9") is None
    assert lookup("not an address") is None


def test_two_running_pods_with_one_ip_identify_no_one(cluster: tuple[StandIn, KubeApi]) -> None:
    state, api = cluster
    state.put(PODS, knative_pod("a", ip="10.0.0.7"))
    state.put(PODS, knative_pod("b", ip="10.0.0.7", svc="admin", rev="admin-00001"))
    assert pod_lookup(api)("10.0.0.7") is None


def test_an_api_that_refuses_is_a_503_naming_the_verb(
    cluster: tuple[StandIn, KubeApi], tmp_path: Path
) -> None:
    state, api = cluster
    state.forbidden.add(("list", "pods"))
    lookup = pod_lookup(api)
    with pytest.raises(Unavailable, match="'list' on pods"):
        lookup("10.0.0.7")
    store = keys.KeyStore(tmp_path)
    store.ensure()
    issuer = Issuer(issuer="https://slipway.example.com", domain="example.com", project="prod",
                    keys=store)  # fmt: skip
    reply = answer(
        method="GET",
        target="/computeMetadata/v1/instance/service-accounts/default/identity?audience=x",
        headers={"metadata-flavor": "Google"},
        peer="10.0.0.7",
        lookup=lookup,
        issuer=issuer,
    )
    assert reply.status == 503
    assert "'list' on pods" in reply.body and "Role" in reply.body


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_metadata_process_mints_for_the_pod_at_the_callers_address(
    cluster: tuple[StandIn, KubeApi], tmp_path: Path
) -> None:
    """`slipway metadata --engine knative` as its own process: this test's connections come
    from 127.0.0.1, so a Slipway pod listed with that pod IP is who calls."""
    state, api = cluster
    state.put(PODS, knative_pod("hello-pod", ip="127.0.0.1"))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(kubeconfig_for(api.host))
    store = keys.KeyStore(tmp_path / "keys")
    store.ensure()
    port = _free_port()
    # The options as the Helm chart's metadata container passes them (--name=value).
    options = {
        "engine": "knative", "namespace": "apps", "kubeconfig": str(kubeconfig),
        "bind": "127.0.0.1", "port": str(port), "keys-dir": str(tmp_path / "keys"),
        "platform": "prod", "issuer": "https://slipway.example.com", "domain": "example.com",
    }  # fmt: skip
    args = [sys.executable, "-m", "pipeline.cli", "metadata"]
    args += [f"--{name}={value}" for name, value in options.items()]
    log = tmp_path / "metadata.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(args, env=os.environ.copy(), stderr=stderr)
    base = f"http://127.0.0.1:{port}/computeMetadata/v1/instance/service-accounts/default"
    try:
        deadline = time.monotonic() + 60  # a loaded 2-core machine starts Python slowly
        while True:
            try:
                reply = httpx.get(f"{base}/identity?audience=https://target.example.com&format=full",
                                  headers=FLAVOR, timeout=5)  # fmt: skip
                break
            except httpx.TransportError:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the metadata server did not start"
                time.sleep(0.1)
        assert reply.status_code == 200, reply.text
        jwks = pyjwt.PyJWKSet.from_dict(keys.jwks(store.live()))
        claims = pyjwt.decode(
            reply.text,
            key=jwks.keys[0].key,
            algorithms=["RS256"],
            audience="https://target.example.com",
            issuer="https://slipway.example.com",
        )
        assert (claims["sub"], claims["email"]) == ("service:hello", "hello@example.com")
        assert claims["slipway"] == {
            "service": "hello", "revision": "hello-00001", "instance": "hello-pod",
            "project": "prod",
        }  # fmt: skip
        assert state.requests[-1].query["fieldSelector"] == "status.podIP=127.0.0.1"

        # The pod is gone (its IP could be anyone's next): no identity for that address.
        del state.objects[f"{PODS}/hello-pod"]
        gone = httpx.get(f"{base}/email", headers=FLAVOR, timeout=5)
        assert gone.status_code == 403
        assert "127.0.0.1 is not an instance" in gone.text
    finally:
        proc.terminate()
        proc.wait(timeout=10)
