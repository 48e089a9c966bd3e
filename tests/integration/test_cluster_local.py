"""Service-to-service calls by name, and cluster-local services, on the real engine.

Instances resolve `<svc>.localhost` through Slipway's internal resolver to the internal listener
on the bridge gateway; a cluster-local service answers there and nowhere else.
"""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from tests.integration.conftest import Slipway, push_image, write_app

pytestmark = pytest.mark.integration

CALLER = """
import os, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Call(BaseHTTPRequestHandler):
    def do_GET(self):
        target = "http://" + self.path.lstrip("/") + "/"
        try:
            with urllib.request.urlopen(target, timeout=5) as r:
                body = f"{r.status} {r.read().decode().strip()}"
        except urllib.error.HTTPError as e:
            body = f"{e.code} {e.read().decode().strip()}"
        except Exception as e:
            body = f"error {e}"
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Call).serve_forever()
"""


def test_cluster_local_service_is_reachable_only_from_services(
    slipway: Slipway, tmp_path: Path, docker_client: docker.DockerClient, python_image: str
) -> None:
    # The hidden service, cluster-local through the Knative label.
    ref = f"{slipway.env['SLIPWAY_REGISTRY']}/hidden/app"
    push_image(docker_client, str(write_app(tmp_path / "h", body="hidden\n")), f"{ref}:1")
    doc = tmp_path / "hidden.yaml"
    doc.write_text(
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: hidden\n"
        "  labels:\n    networking.knative.dev/visibility: cluster-local\n"
        f"spec:\n  template:\n    spec:\n      containers:\n        - image: {ref}:1\n"
    )
    slipway.cli("services", "replace", str(doc))

    caller = tmp_path / "caller"
    caller.mkdir()
    (caller / "app.py").write_text(CALLER)
    (caller / "Dockerfile").write_text(
        f'FROM {python_image}\nCOPY app.py /app.py\nUSER nobody\nCMD ["python3", "/app.py"]\n'
    )
    slipway.cli("deploy", "caller", "--source", str(caller))
    port = slipway.ingress_port

    # Not on the public ingress ...
    public = slipway.get("hidden")
    assert public.status_code == 404 and "no service answers" in public.text
    # ... but by name from another service, through the internal listener.
    assert slipway.get("caller", f"/hidden.localhost:{port}").text == "200 hidden"
    # Public services answer there too, and unknown names get the same one-line 404.
    slipway.cli("deploy", "pub", "--source", str(write_app(tmp_path / "p", body="pub\n")))
    assert slipway.get("caller", f"/pub.localhost:{port}").text == "200 pub"
    missing = slipway.get("caller", f"/nobody.localhost:{port}").text
    assert missing.startswith("404 slipway: no service answers to host 'nobody.localhost'")
