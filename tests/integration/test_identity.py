"""Service identity end to end: metadata server, google-auth in a container, HAProxy's checks.

The caller runs google-auth's `id_token.fetch_id_token` unmodified; the private target counts
the requests that reach it, so every refused token is shown never to get there.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import docker
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.integration.conftest import Slipway

pytestmark = pytest.mark.integration

TARGET = """
import os, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

count = 0
lock = threading.Lock()


class Count(BaseHTTPRequestHandler):
    def do_GET(self):
        global count
        with lock:
            count += 1
            n = count
        data = f"target {n}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Count).serve_forever()
"""

CALLER = """
import os, urllib.error, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import google.auth.transport.requests
from google.oauth2 import id_token


def fetch(request):
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return f"{r.status} {r.read().decode().strip()}"
    except urllib.error.HTTPError as e:
        return f"{e.code} {e.read().decode().strip()}"


class Call(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        try:
            if url.path == "/call":
                # Exactly what Cloud Run code does: google-auth asks the metadata server.
                token = id_token.fetch_id_token(google.auth.transport.requests.Request(), q["url"])
                body = fetch(urllib.request.Request(
                    q["url"], headers={"Authorization": f"Bearer {token}"}))
            elif url.path == "/metadata":
                headers = {"Metadata-Flavor": "Google"} if q.get("flavor", "1") == "1" else {}
                if "xff" in q:
                    headers["X-Forwarded-For"] = q["xff"]
                body = fetch(urllib.request.Request(
                    "http://" + os.environ["GCE_METADATA_HOST"] + q["path"], headers=headers))
            else:
                body = "404 no such caller route"
        except Exception as e:
            body = f"error {type(e).__name__}: {e}"
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Call).serve_forever()
"""


@dataclass
class Apps:
    slipway: Slipway
    port: int

    def url(self, host: str) -> str:
        return f"http://{host}.localhost:{self.port}"

    def target(self, token: str = "", *, header: str = "Authorization", host: str = "target"):
        headers = {"Host": f"{host}.localhost:{self.port}"}
        if token:
            headers[header] = f"Bearer {token}"
        return httpx.get(f"http://127.0.0.1:{self.port}/", headers=headers, timeout=10)

    def count(self) -> int:
        """Requests that reached the target so far (this one included)."""
        reply = self.target(self.user_token())
        assert reply.status_code == 200, reply.text
        return int(reply.text.split()[1])

    def user_token(self, user: str = "admin", audience: str = "") -> str:
        out = self.slipway.cli(
            "auth", "print-identity-token", "--audience", audience or self.url("target"),
            "--user", user,
        )  # fmt: skip
        return out.stdout.strip()

    def signing_key(self) -> tuple[str, bytes]:
        newest = sorted((self.slipway.data_dir / "keys").glob("*.key"))[-1]
        return newest.name.removesuffix(".key"), newest.read_bytes()

    def forge(self, **changes: Any) -> str:
        """A token like Slipway's for user:admin, with claims changed (None drops one)."""
        kid, pem = self.signing_key()
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.slipway.url, "aud": self.url("target"), "sub": "user:admin",
            "email": "admin@users.localhost", "iat": now, "exp": now + 600,
        }  # fmt: skip
        claims.update(changes)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, pem, algorithm="RS256", headers={"kid": kid})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(apps: Apps) -> str:
    kid, _ = apps.signing_key()
    payload = jwt.decode(apps.forge(), options={"verify_signature": False})
    head = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
    return f"{head}.{_b64(json.dumps(payload).encode())}."


def _hs256_with_public_key(apps: Apps) -> str:
    kid, _ = apps.signing_key()
    public = (apps.slipway.data_dir / "keys" / f"{kid}.pub").read_bytes()
    payload = jwt.decode(apps.forge(), options={"verify_signature": False})
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    signing_input = f"{head}.{_b64(json.dumps(payload).encode())}"
    mac = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def _other_key(kid: str) -> Callable[[Apps], str]:
    def make(apps: Apps) -> str:
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        payload = jwt.decode(apps.forge(), options={"verify_signature": False})
        return jwt.encode(payload, other, algorithm="RS256", headers={"kid": kid or "0-unknown"})

    return make


def _wrong_signature_real_kid(apps: Apps) -> str:
    return _other_key(apps.signing_key()[0])(apps)


@pytest.fixture(scope="module")
def apps(slipway: Slipway, tmp_path_factory: pytest.TempPathFactory, python_image: str) -> Apps:
    root = tmp_path_factory.mktemp("identity")
    target = root / "target"
    target.mkdir()
    (target / "app.py").write_text(TARGET)
    (target / "Dockerfile").write_text(
        f'FROM {python_image}\nCOPY app.py /app.py\nUSER nobody\nCMD ["python3", "/app.py"]\n'
    )
    slipway.cli("deploy", "target", "--source", str(target), "--no-allow-unauthenticated",
                "--tag", "v1")  # fmt: skip
    slipway.cli("services", "add-invoker", "target", "--member", "user:admin")
    caller = root / "caller"
    caller.mkdir()
    (caller / "app.py").write_text(CALLER)
    (caller / "Dockerfile").write_text(
        f"FROM {python_image}\n"
        "RUN pip install --break-system-packages --no-cache-dir google-auth requests\n"
        'COPY app.py /app.py\nUSER nobody\nCMD ["python3", "/app.py"]\n'
    )
    slipway.cli("deploy", "caller", "--source", str(caller))
    return Apps(slipway=slipway, port=slipway.ingress_port)


def test_discovery_and_jwks_verify_slipway_tokens(apps: Apps) -> None:
    bare = {"Host": f"localhost:{apps.port}"}
    base = f"http://127.0.0.1:{apps.port}"
    config = httpx.get(f"{base}/.well-known/openid-configuration", headers=bare).json()
    assert config["issuer"] == apps.slipway.url
    assert config["jwks_uri"] == f"{apps.slipway.url}/.well-known/jwks.json"
    keys = httpx.get(f"{base}/.well-known/jwks.json", headers=bare).json()["keys"]
    token = apps.user_token()
    kid = jwt.get_unverified_header(token)["kid"]
    (key,) = [k for k in keys if k["kid"] == kid]
    claims = jwt.decode(
        token, jwt.PyJWK(key).key, algorithms=["RS256"], audience=apps.url("target"),
        issuer=apps.slipway.url,
    )  # fmt: skip
    assert claims["sub"] == "user:admin" and claims["exp"] - claims["iat"] <= 3600


def test_an_identity_token_is_not_an_api_credential(apps: Apps) -> None:
    reply = httpx.get(
        f"http://127.0.0.1:{apps.slipway.api_port}/v1/services",
        headers={"Authorization": f"Bearer {apps.user_token()}"},
    )
    assert reply.status_code == 401


@pytest.mark.parametrize(
    ("make", "status"),
    [
        pytest.param(lambda a: "", 401, id="no-token"),
        pytest.param(_unsigned, 401, id="alg-none"),
        pytest.param(_hs256_with_public_key, 401, id="hs256-signed-with-the-public-key"),
        pytest.param(lambda a: a.forge(iss="http://evil.example"), 401, id="wrong-iss"),
        pytest.param(lambda a: a.forge(aud=a.url("caller")), 401, id="aud-of-another-service"),
        pytest.param(lambda a: a.forge(aud=None), 401, id="no-aud"),
        pytest.param(lambda a: a.forge(exp=int(time.time()) - 5), 401, id="exp-past"),
        pytest.param(lambda a: a.forge(exp=None), 401, id="no-exp"),
        pytest.param(lambda a: a.forge(nbf=int(time.time()) + 600), 401, id="nbf-future"),
        pytest.param(_other_key("0-unknown"), 401, id="kid-not-in-jwks"),
        pytest.param(_wrong_signature_real_kid, 401, id="bad-signature"),
        pytest.param(lambda a: a.forge()[:-12], 401, id="truncated"),
        pytest.param(lambda a: "not.a.jwt", 401, id="garbage"),
        # Past HAProxy's 16 KB buffer: refused as a malformed request before any rule runs.
        pytest.param(lambda a: a.forge(pad="x" * 16384), 400, id="16kb-header"),
        pytest.param(lambda a: a.user_token("bob"), 403, id="valid-but-not-an-invoker"),
    ],
)  # fmt: skip
def test_private_service_refuses_bad_tokens(
    apps: Apps, make: Callable[[Apps], str], status: int
) -> None:
    token = make(apps)
    before = apps.count()
    for host in ("target", "v1--target"):  # the service URL and its tag URL
        reply = apps.target(token, host=host)
        assert reply.status_code == status, reply.text
        if status == 401:
            assert reply.headers["www-authenticate"].startswith("Bearer")
    assert apps.count() == before + 1, "a refused request reached the service"


def test_valid_tokens_pass_by_either_header(apps: Apps) -> None:
    before = apps.count()
    token = apps.user_token()
    assert apps.target(token).status_code == 200
    assert apps.target(token, header="X-Serverless-Authorization").status_code == 200
    tag = apps.user_token(audience=apps.url("v1--target"))
    assert apps.target(tag, host="v1--target").text.startswith("target")
    assert apps.count() == before + 4


def test_caller_with_google_auth_needs_to_be_an_invoker(apps: Apps) -> None:
    """The Proof: 403, add-invoker 200, remove-invoker 403 — token from fetch_id_token."""
    call = f"/call?url={apps.url('target')}"
    assert apps.slipway.get("caller", call).text.startswith("403 slipway: 'service:caller'")
    apps.slipway.cli("services", "add-invoker", "target", "--member", "service:caller")
    assert apps.slipway.get("caller", call).text.startswith("200 target")
    apps.slipway.cli("services", "remove-invoker", "target", "--member", "service:caller")
    assert apps.slipway.get("caller", call).text.startswith("403 ")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("path=/computeMetadata/v1/instance/service-accounts/default/email",
                     "200 caller@localhost", id="email"),
        pytest.param("path=/computeMetadata/v1/project/project-id", "200 t", id="project-id"),
        pytest.param("path=/", "200 computeMetadata/", id="ping"),
        pytest.param("path=/computeMetadata/v1/instance/service-accounts/default/email&flavor=0",
                     "403 missing the request header", id="no-metadata-flavor"),
        pytest.param("path=/computeMetadata/v1/instance/service-accounts/default/email"
                     "&xff=10.9.9.9", "403 requests carrying X-Forwarded-For", id="spoofed-xff"),
    ],
)  # fmt: skip
def test_metadata_from_an_instance(apps: Apps, query: str, expected: str) -> None:
    assert apps.slipway.get("caller", f"/metadata?{query}").text.startswith(expected)


def test_metadata_refuses_addresses_slipway_does_not_own(
    apps: Apps, docker_client: docker.DockerClient, python_image: str
) -> None:
    network = docker_client.networks.get(apps.slipway.network)
    gateway = network.attrs["IPAM"]["Config"][0]["Gateway"]
    url = f"http://{gateway}/computeMetadata/v1/instance/service-accounts/default/identity"
    params = {"audience": apps.url("target")}
    # From the host (source address: the gateway itself).
    reply = httpx.get(url, params=params, headers={"Metadata-Flavor": "Google"})
    assert reply.status_code == 403 and reply.headers["metadata-flavor"] == "Google"
    # From a container on the same network that Slipway did not start.
    script = (
        "import urllib.request, urllib.error\n"
        f"r = urllib.request.Request('{url}?audience=x', headers={{'Metadata-Flavor': 'Google'}})\n"
        "try:\n    urllib.request.urlopen(r, timeout=5); print('200')\n"
        "except urllib.error.HTTPError as e:\n    print(e.code)\n"
    )
    out = docker_client.containers.run(
        python_image, ["python3", "-c", script], network=apps.slipway.network, remove=True
    )
    assert out.decode().strip() == "403"


def test_rotation_keeps_tokens_of_the_old_key_valid(apps: Apps) -> None:
    old = apps.user_token()
    apps.slipway.cli("keys", "rotate")
    new = apps.user_token()
    assert jwt.get_unverified_header(old)["kid"] != jwt.get_unverified_header(new)["kid"]
    assert apps.target(old).status_code == 200
    assert apps.target(new).status_code == 200
    keys = apps.slipway.cli("keys", "list").stdout
    assert keys.count("verifying") == 1 and keys.count("signing") == 1
    # The caller's instance gets tokens from the new key as well.
    apps.slipway.cli("services", "add-invoker", "target", "--member", "service:caller")
    assert apps.slipway.get("caller", f"/call?url={apps.url('target')}").text.startswith("200")


def test_private_key_files_are_readable_only_by_their_owner(apps: Apps) -> None:
    for path in (apps.slipway.data_dir / "keys").glob("*.key"):
        assert path.stat().st_mode & 0o777 == 0o600


def test_describe_shows_who_may_invoke(apps: Apps) -> None:
    view = apps.slipway.api_get("/v1/services/target").json()
    assert view["private"] is True and "user:admin" in view["invokers"]
    assert apps.slipway.api_get("/v1/services/caller").json()["private"] is False
