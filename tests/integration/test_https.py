"""HTTPS end to end: HAProxy terminates TLS with certificates from the local CA and from Pebble.

Two platforms. The first serves `*.localhost` with certificates of its own local CA, checked the
way the issue asks, with the real `curl --cacert <data dir>/tls/ca.pem`. The second stands on
Pebble, Let's Encrypt's test ACME server (built by `scripts/tools pebble`), with its challenge
test server as the DNS that resolves every name to loopback: Pebble validates HTTP-01 by
fetching the token from HAProxy's plain listener, exactly as a public CA would on port 80, and
issues, renews (on its renewal information, ARI), revokes and refuses like one. Pebble stands
for Let's Encrypt because no public CA is reachable here (DESIGN.md).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import httpx
import pytest
from cryptography import x509

from tests.integration.conftest import ROOT, Slipway, free_port, running_slipway, write_app

pytestmark = pytest.mark.integration

DOMAIN = "apps.example.com"  # a name only Pebble's DNS knows: every lookup is 127.0.0.1


# --- helpers ------------------------------------------------------------------------------------


def served(port: int, host: str, cafile: Path) -> x509.Certificate:
    """The certificate HAProxy serves for `host` (SNI), verified against `cafile`."""
    context = ssl.create_default_context(cafile=str(cafile))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def https_client(cafile: Path) -> httpx.Client:
    return httpx.Client(verify=ssl.create_default_context(cafile=str(cafile)), timeout=10)


def https_get(client: httpx.Client, port: int, host: str, path: str = "/") -> httpx.Response:
    """GET https://<host><path> through HAProxy on loopback, SNI and Host set to `host`."""
    return client.get(
        f"https://127.0.0.1:{port}{path}",
        headers={"Host": f"{host}:{port}"},
        extensions={"sni_hostname": host},
    )


def wait_for(check: Callable[[], object], *, what: str, timeout_s: float = 60) -> object:
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, ssl.SSLError, httpx.HTTPError, AssertionError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


# --- the local CA ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local(
    tmp_path_factory: pytest.TempPathFactory,
    docker_client: docker.DockerClient,
    registry: str,
    busybox_image: str,
) -> Iterator[Slipway]:
    https = free_port()
    env = {"SLIPWAY_HTTPS_PORT": str(https), "SLIPWAY_ACME_DIRECTORY": ""}
    with running_slipway(tmp_path_factory, docker_client, registry, extra_env=env) as sw:
        yield sw


def test_local_ca_serves_new_service_and_tag_hosts(local: Slipway, tmp_path: Path) -> None:
    https = int(local.env["SLIPWAY_HTTPS_PORT"])
    ca = local.data_dir / "tls" / "ca.pem"
    assert ca.is_file(), "the local CA is made at first start"
    app = write_app(tmp_path / "hello", body="hello over tls\n")
    # The CLI talks to the plain listener, is redirected, and carries on over HTTPS.
    local.cli("deploy", "hello", "--source", str(app), "--tag", "blue")

    curl = shutil.which("curl")
    assert curl, "curl is not installed"
    for host in ("hello.localhost", "blue--hello.localhost"):
        result = subprocess.run(
            [curl, "-sS", "--cacert", str(ca), f"https://{host}:{https}/"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert (result.returncode, result.stdout) == (0, "hello over tls\n"), result.stderr
        cert = served(https, host, ca)
        assert cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value.get_values_for_type(x509.DNSName) == [host]

    described = local.api_get("/v1/services/hello").json()
    tls = {entry["host"]: entry for entry in described["tls"]}
    assert tls["hello.localhost"]["url"] == f"https://hello.localhost:{https}"
    assert tls["hello.localhost"]["certificate"]["issuer"] == "local"
    assert tls["blue--hello.localhost"]["certificate"]["status"] == "Ready"


def test_plain_http_redirects_except_challenges_and_internal_listener(
    local: Slipway, tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    https = int(local.env["SLIPWAY_HTTPS_PORT"])
    local.cli("deploy", "hello", "--source", str(write_app(tmp_path / "h", body="plain\n")))
    resp = local.get("hello.localhost", "/some/path?q=1")
    assert resp.status_code == 308
    assert resp.headers["location"] == f"https://hello.localhost:{https}/some/path?q=1"
    # A challenge path is never redirected: an unknown token falls through to the service.
    challenge = local.get("hello.localhost", "/.well-known/acme-challenge/unknown-token")
    assert challenge.status_code == 404
    # Instances call each other on the internal listener (bridge gateway): plain HTTP, served.
    network = docker_client.networks.get(local.network)
    gateway = network.attrs["IPAM"]["Config"][0]["Gateway"]
    host = f"hello.localhost:{local.ingress_port}"
    url = f"http://{gateway}:{local.ingress_port}/"
    out = docker_client.containers.run(
        busybox_image, ["wget", "-qO-", "--header", f"Host: {host}", url],
        network=local.network, remove=True,
    )  # fmt: skip
    assert out == b"plain\n"


# --- Pebble -------------------------------------------------------------------------------------


def pebble_module() -> Path:
    gomod = (ROOT / "tools" / "pebble" / "go.mod").read_text()
    version = re.search(r"github\.com/letsencrypt/pebble/v2 (v[0-9.]+)", gomod)
    assert version, "tools/pebble/go.mod pins no Pebble version"
    cache = Path("/var/cache/slipway/go/mod/github.com/letsencrypt/pebble")
    return cache / f"v2@{version.group(1)}"


@dataclass
class Pebble:
    directory: str
    management: str
    challtestsrv: str
    minica: Path  # the CA of Pebble's own HTTPS listener
    root: Path  # the root Pebble signs certificates with (this run's)

    def manage(self, path: str, body: dict[str, object]) -> None:
        resp = httpx.post(f"{self.challtestsrv}{path}", json=body, timeout=10)
        assert resp.status_code == 200, resp.text

    def set_renewal_info(self, chain_pem: str, window: tuple[str, str]) -> None:
        info = json.dumps({"suggestedWindow": {"start": window[0], "end": window[1]}})
        resp = httpx.post(
            f"{self.management}/set-renewal-info/",
            json={"Certificate": chain_pem, "ARIResponse": info},
            verify=ssl.create_default_context(cafile=str(self.minica)),
            timeout=10,
        )
        assert resp.status_code == 200, resp.text


def start_pebble(
    folder: Path, *, acme: int, http_port: int
) -> tuple[Pebble, list[subprocess.Popen[bytes]]]:
    """Pebble on `acme` (validating HTTP-01 on `http_port`) and its DNS, which answers
    127.0.0.1 for every name."""
    bin_dir = subprocess.run(
        [str(ROOT / "scripts" / "tools"), "--dir", "pebble"],
        capture_output=True, text=True, check=True, timeout=600,
    ).stdout.strip()  # fmt: skip
    module = pebble_module()
    manage, dns, dns_manage = free_port(), free_port(), free_port()
    config = folder / "pebble.json"
    config.write_text(json.dumps({"pebble": {
        "listenAddress": f"127.0.0.1:{acme}",
        "managementListenAddress": f"127.0.0.1:{manage}",
        "certificate": str(module / "test/certs/localhost/cert.pem"),
        "privateKey": str(module / "test/certs/localhost/key.pem"),
        "httpPort": http_port,  # HTTP-01 goes to HAProxy's plain listener
        "tlsPort": free_port(),
        "ocspResponderURL": "",
        "externalAccountBindingRequired": False,
        "domainBlocklist": ["blocked-domain.example"],
        "retryAfter": {"authz": 1, "order": 1},
        "keyAlgorithm": "ecdsa",
    }}))  # fmt: skip
    env = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
    with (folder / "pebble.log").open("ab") as log:  # each child keeps its own copy
        procs = [
            subprocess.Popen(
                [f"{bin_dir}/pebble-challtestsrv", "-dnsserver", f"127.0.0.1:{dns}",
                 "-management", f"127.0.0.1:{dns_manage}", "-defaultIPv4", "127.0.0.1",
                 "-defaultIPv6", "", "-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", ""],
                stdout=log, stderr=subprocess.STDOUT,
            ),
            subprocess.Popen(
                [f"{bin_dir}/pebble", "-config", str(config), "-dnsserver", f"127.0.0.1:{dns}"],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=folder,
            ),
        ]  # fmt: skip
    minica = module / "test/certs/pebble.minica.pem"
    root = folder / "pebble-root.pem"

    def fetch_root() -> bool:
        trusted = ssl.create_default_context(cafile=str(minica))
        resp = httpx.get(f"https://127.0.0.1:{manage}/roots/0", verify=trusted, timeout=2)
        root.write_text(resp.text)
        return resp.status_code == 200

    try:
        wait_for(fetch_root, what="Pebble's management interface", timeout_s=30)
    except BaseException:
        for proc in procs:  # never left running behind a failed start
            proc.terminate()
            proc.wait(timeout=10)
        raise
    pebble = Pebble(
        directory=f"https://127.0.0.1:{acme}/dir",
        management=f"https://127.0.0.1:{manage}",
        challtestsrv=f"http://127.0.0.1:{dns_manage}",
        minica=minica,
        root=root,
    )
    return pebble, procs


@dataclass
class Acme:
    sw: Slipway
    pebble: Pebble
    https: int
    domain: str = DOMAIN

    def host(self, service: str, tag: str = "") -> str:
        return f"{tag}--{service}.{self.domain}" if tag else f"{service}.{self.domain}"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The CLI straight at the API port: the platform domain is not `localhost` here."""
        env = {**self.sw.env, "SLIPWAY_URL": f"http://127.0.0.1:{self.sw.api_port}",
               "SLIPWAY_TOKEN": self.sw.token, "COLUMNS": "200"}  # fmt: skip
        result = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", *args],
            env=env, capture_output=True, text=True, timeout=300, cwd=ROOT,
        )  # fmt: skip
        assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
        return result

    def certificate(self, name: str) -> dict[str, object]:
        certs = {c["name"]: c for c in self.sw.api_get("/v1/certificates").json()}
        return dict(certs.get(name) or {})

    def serving(self, host: str) -> x509.Certificate:
        return served(self.https, host, self.pebble.root)

    def wait_serial_change(self, host: str, old: int, *, timeout_s: float = 60) -> x509.Certificate:
        def changed() -> x509.Certificate | None:
            cert = self.serving(host)
            return cert if cert.serial_number != old else None

        found = wait_for(changed, what=f"a new certificate for {host}", timeout_s=timeout_s)
        assert isinstance(found, x509.Certificate)
        return found


@contextlib.contextmanager
def pebble_platform(
    tmp_path_factory: pytest.TempPathFactory,
    docker_client: docker.DockerClient,
    registry: str,
    *,
    domain: str,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Acme]:
    """A Slipway whose ACME directory is a Pebble of its own."""
    folder = tmp_path_factory.mktemp("pebble")
    https, acme_port = free_port(), free_port()
    # Slipway is told where Pebble will listen and starts first: Pebble's httpPort is Slipway's
    # plain listener, whose port is known only then. Its first orders meet "CA unreachable" and
    # are retried a few seconds later.
    env = {
        "SLIPWAY_DOMAIN": domain,
        "SLIPWAY_HTTPS_PORT": str(https),
        "SLIPWAY_ACME_DIRECTORY": f"https://127.0.0.1:{acme_port}/dir",
        "SLIPWAY_ACME_EMAIL": "ops@example.com",
        "SLIPWAY_ACME_CA_BUNDLE": str(pebble_module() / "test/certs/pebble.minica.pem"),
        "SLIPWAY_TLS_CHECK_INTERVAL": "1",
        **(extra_env or {}),
    }
    with running_slipway(tmp_path_factory, docker_client, registry, extra_env=env) as sw:
        pebble, procs = start_pebble(folder, acme=acme_port, http_port=sw.ingress_port)
        try:
            yield Acme(sw=sw, pebble=pebble, https=https, domain=domain)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=10)


@pytest.fixture(scope="module")
def acme(
    tmp_path_factory: pytest.TempPathFactory,
    docker_client: docker.DockerClient,
    registry: str,
    busybox_image: str,
) -> Iterator[Acme]:
    with pebble_platform(tmp_path_factory, docker_client, registry, domain=DOMAIN) as platform:
        yield platform


@pytest.fixture(scope="module")
def hello(acme: Acme, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Service `hello`, deployed once, with its certificate from Pebble in place."""
    app = write_app(tmp_path_factory.mktemp("hello"), body="hello from acme\n")
    acme.cli("deploy", "hello", "--source", str(app))
    host = acme.host("hello")
    wait_for(lambda: acme.serving(host), what=f"Pebble's certificate for {host}", timeout_s=90)
    return host


def pem_of(cert: x509.Certificate) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.PEM).decode()


def test_new_service_gets_a_certificate_over_http01_through_haproxy(acme: Acme, hello: str) -> None:
    # The chain verifies against this run's Pebble root: issued after Pebble fetched the token
    # from HAProxy's plain listener (no PEBBLE_VA_ALWAYS_VALID here).
    cert = acme.serving(hello)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [hello]
    with https_client(acme.pebble.root) as client:
        resp = https_get(client, acme.https, hello)
    assert (resp.status_code, resp.text) == (200, "hello from acme\n")
    described = acme.sw.api_get("/v1/services/hello").json()
    (entry,) = [e for e in described["tls"] if e["host"] == hello]
    assert entry["certificate"]["issuer"] == "acme"
    assert entry["certificate"]["status"] == "Ready"
    assert entry["url"] == f"https://{hello}:{acme.https}"
    # The bare domain (Slipway's API) has its certificate from Pebble too.
    wait_for(lambda: acme.serving(DOMAIN), what="the bare domain's certificate", timeout_s=60)


def test_tag_host_gets_its_certificate_on_demand(acme: Acme, hello: str, tmp_path: Path) -> None:
    app = write_app(tmp_path / "canary", body="canary\n")
    acme.cli("deploy", "hello", "--source", str(app), "--no-traffic", "--tag", "canary")
    host = acme.host("hello", tag="canary")
    wait_for(lambda: acme.serving(host), what=f"a certificate for {host}", timeout_s=90)
    with https_client(acme.pebble.root) as client:
        assert https_get(client, acme.https, host).text == "canary\n"
        assert https_get(client, acme.https, hello).text == "hello from acme\n"


def test_mapped_domain_routes_and_gets_its_certificate(acme: Acme, hello: str) -> None:
    out = acme.cli("domains", "map", "shop.example.org", "--service", "hello").stdout
    assert "shop.example.org mapped to hello" in out
    wait_for(lambda: acme.serving("shop.example.org"), what="the mapped host's certificate")
    with https_client(acme.pebble.root) as client:
        resp = https_get(client, acme.https, "shop.example.org")
    assert (resp.status_code, resp.text) == (200, "hello from acme\n")
    listing = acme.cli("domains", "list").stdout
    assert "shop.example.org" in listing and "Ready acme" in listing


def test_renewal_swaps_the_certificate_under_load_without_a_failed_request(
    acme: Acme, hello: str
) -> None:
    old = acme.serving(hello)
    failures: list[str] = []
    count = [0]
    stop = threading.Event()

    def hammer(keepalive: bool) -> None:
        client = https_client(acme.pebble.root)
        try:
            while not stop.is_set():
                try:
                    resp = https_get(client, acme.https, hello)
                    if resp.status_code != 200:
                        failures.append(f"{resp.status_code} {resp.text.strip()}")
                    count[0] += 1
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                if not keepalive:
                    client.close()
                    client = https_client(acme.pebble.root)
        finally:
            client.close()

    threads = [threading.Thread(target=hammer, args=(k,)) for k in (True, False, False)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1)
        # The CA's renewal information now says "renew": Slipway asks it every second here.
        acme.pebble.set_renewal_info(pem_of(old), ("2020-01-01T00:00:00Z", "2020-01-02T00:00:00Z"))
        new = acme.wait_serial_change(hello, old.serial_number)
        time.sleep(2)  # and keep going on the new certificate
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert new.not_valid_after_utc >= old.not_valid_after_utc
    assert count[0] > 50
    assert failures == []
    cert = acme.certificate(hello)
    assert cert["reason"] == "Renewed"
    assert "renewal information" in str(cert["message"])


def test_revoked_certificate_is_replaced(acme: Acme, hello: str) -> None:
    from acme import client as acme_client
    from cryptography.hazmat.primitives import serialization
    from josepy.jwa import ES256
    from josepy.jwk import JWKEC

    old = acme.serving(hello)
    serial = format(old.serial_number, "x")
    key_file = acme.sw.data_dir / "tls" / "keys" / f"{hello}.{serial}.key"
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    # Revoked the way a key holder would: signed with the certificate's own key.
    net = acme_client.ClientNetwork(JWKEC(key=key), alg=ES256)
    net.verify_ssl = str(acme.pebble.minica)  # type: ignore[assignment]
    ca = acme_client.ClientV2(acme_client.ClientV2.get_directory(acme.pebble.directory, net), net)
    ca.revoke(old, 1)  # keyCompromise
    new = acme.wait_serial_change(hello, old.serial_number)
    assert new.serial_number != old.serial_number
    assert "the CA asked for a new certificate" in str(acme.certificate(hello)["message"])


def test_failed_order_keeps_the_old_certificate_and_says_why(acme: Acme, hello: str) -> None:
    old = acme.serving(hello)
    # The host's DNS now points where nothing listens: Pebble's HTTP-01 check cannot connect.
    acme.pebble.manage("/add-a", {"host": f"{hello}.", "addresses": ["127.0.0.2"]})
    try:
        acme.cli("domains", "renew", hello)

        def failed() -> bool:
            return acme.certificate(hello).get("status") == "Failed"

        wait_for(failed, what="the renewal to fail", timeout_s=60)
    finally:
        acme.pebble.manage("/clear-a", {"host": f"{hello}."})
    cert = acme.certificate(hello)
    assert cert["reason"] == "ChallengeFailed"
    assert "still serving the certificate valid until" in str(cert["message"])
    assert acme.serving(hello).serial_number == old.serial_number  # the old one keeps serving
    with https_client(acme.pebble.root) as client:
        assert https_get(client, acme.https, hello).status_code == 200
    described = acme.cli("services", "describe", "hello").stdout
    assert "ChallengeFailed" in described and "127.0.0.2" in described


# --- DNS-01: one wildcard certificate ------------------------------------------------------------

DNS_HOOK = """
import json, sys, urllib.request
verb, fqdn, value = sys.argv[2:5]
body = {"host": fqdn + ".", "value": value} if verb == "set" else {"host": fqdn + "."}
url = open(sys.argv[1]).read().strip() + ("/set-txt" if verb == "set" else "/clear-txt")
request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
urllib.request.urlopen(request, timeout=10).read()
"""


def test_dns01_hook_gives_one_wildcard_for_every_service_and_tag_host(
    tmp_path_factory: pytest.TempPathFactory,
    docker_client: docker.DockerClient,
    registry: str,
    busybox_image: str,
) -> None:
    folder = tmp_path_factory.mktemp("dns-hook")
    hook, where = folder / "hook.py", folder / "challtestsrv-url"
    hook.write_text(DNS_HOOK)  # the operator's hook: here, Pebble's DNS takes the TXT records
    command = f"{sys.executable} {hook} {where}"
    env = {"SLIPWAY_ACME_DNS_HOOK": command}
    with pebble_platform(
        tmp_path_factory, docker_client, registry, domain="wild.example.com", extra_env=env
    ) as wild:
        where.write_text(wild.pebble.challtestsrv)
        app = write_app(folder / "app", body="wild\n")
        wild.cli("deploy", "hello", "--source", str(app), "--tag", "blue")
        for host in (wild.host("hello"), wild.host("hello", tag="blue"), "wild.example.com"):
            cert = wait_for(lambda h=host: wild.serving(h), what=f"the wildcard for {host}")
            assert isinstance(cert, x509.Certificate)
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert sorted(names.get_values_for_type(x509.DNSName)) == [
                "*.wild.example.com", "wild.example.com",
            ]  # fmt: skip
        with https_client(wild.pebble.root) as client:
            assert https_get(client, wild.https, wild.host("hello", tag="blue")).text == "wild\n"
        names = {c["name"] for c in wild.sw.api_get("/v1/certificates").json()}
        assert names == {"*.wild.example.com", "fallback.slipway.invalid"}
