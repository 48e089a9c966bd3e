"""HTTPS in the data plane, pure where it can be: the rendered listener (golden, checked by
`haproxy -c` with real certificate files), the redirect and challenge rules, the structure key
that certificates never change, the runtime commands that swap certificates, and the files and
commands `TlsSync` and `HAProxyChallenges` hand HAProxy (against a recording runtime)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.core.errors import InvalidSpec
from pipeline.dataplane import jwt
from pipeline.dataplane.challenges import HAProxyChallenges
from pipeline.dataplane.mapsync import write_maps
from pipeline.dataplane.model import Backend, CertFile, DataPlane, Route, Site, Split, Tls
from pipeline.dataplane.render import render, structure
from pipeline.dataplane.runtime import Socket
from pipeline.dataplane.tlschanges import CertChange, cert_changes
from pipeline.dataplane.tlssync import TlsSync
from pipeline.tls import pems
from pipeline.tls.localca import LocalCA

GOLDEN = Path(__file__).parent / "golden"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
SITE = Site(
    bind="127.0.0.1:8080",
    https_bind="127.0.0.1:8443",
    internal_bind="172.30.0.1:8080",
    internal_sources="172.30.0.0/16",
    domain="localhost",
    api_server="127.0.0.1:8081",
    run_dir=Path("/var/lib/slipway/haproxy"),
)
PLANE = DataPlane(
    routes=(
        Route(host="hello.localhost", service="hello",
              splits=(Split(backend="rev-hello-00001", percent=100),)),
        Route(host="shop.example.com", service="hello",
              splits=(Split(backend="rev-hello-00001", percent=100),)),
        Route(host="db.localhost", service="db", internal_only=True,
              splits=(Split(backend="rev-db-00001", percent=100),)),
    ),
    backends=(Backend(name="rev-hello-00001"), Backend(name="rev-db-00001")),
)  # fmt: skip


def cert(name: str, serial: str = "1") -> CertFile:
    return CertFile(name=name, pem=f"PEM of {name} {serial}\n", serial=serial)


TLS = Tls(fallback=cert("fallback.slipway.invalid"), certificates=(cert("hello.localhost"),))


def test_https_listener_matches_golden() -> None:
    text = render(replace(PLANE, tls=TLS), site=SITE)
    golden = GOLDEN / "https-listener.cfg"
    if os.environ.get("SLIPWAY_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_plain_listener_redirects_and_answers_challenges_first() -> None:
    text = render(PLANE, site=SITE)
    ingress = text.split("frontend ingress\n")[1].split("\nfrontend ")[0].splitlines()
    rules = [line.strip() for line in ingress if line.strip().startswith("http-request")]
    # Before anything else but the forwarded headers (private services' token checks too).
    first = next(i for i, r in enumerate(rules) if not r.startswith("http-request set-"))
    assert rules[first].startswith("http-request return status 200")
    assert "acme-challenge" in rules[first]
    assert rules[first + 1] == (
        "http-request redirect location https://%[req.hdr(host),field(1,:),lower]:8443"
        "%[capture.req.uri] "
        "code 308 unless { path_beg /.well-known/acme-challenge/ }"
    )
    internal = text.split("frontend internal\n")[1].split("\nbackend ")[0]
    assert "redirect" not in internal and "acme-challenge" not in internal
    https = text.split("frontend https\n")[1].split("\nfrontend ")[0]
    assert "X-Forwarded-Proto https" in https and "redirect" not in https
    assert "db.localhost" not in https  # cluster-local stays internal


def test_private_services_take_tokens_for_their_https_urls() -> None:
    private = replace(PLANE, routes=tuple(replace(r, private=True) for r in PLANE.routes))
    https = render(private, site=SITE).split("frontend https\n")[1]
    # One token rule per host (dataplane.jwt): every host's audiences, together.
    audiences = " ".join(line for line in https.splitlines() if "var(txn.aud) -m str" in line)
    assert "https://hello.localhost:8443 https://hello.localhost:8443/" in audiences
    assert "http://shop.example.com:8080" in audiences  # the plain URL's tokens still pass
    assert jwt.audiences(["a.example.com"], port=8080, https=443)[2:] == [
        "https://a.example.com", "https://a.example.com/",
    ]  # fmt: skip


def test_port_443_redirects_without_a_port() -> None:
    text = render(PLANE, site=replace(SITE, https_bind="0.0.0.0:443"))
    assert "redirect location https://%[req.hdr(host),field(1,:),lower]%[capture.req.uri]" in text


def test_without_https_nothing_changes() -> None:
    plain = replace(SITE, https_bind="")
    text = render(replace(PLANE, tls=TLS), site=plain)
    assert "ssl" not in text and "redirect" not in text and "frontend https" not in text


def test_certificates_never_change_the_structure() -> None:
    renewed = Tls(fallback=TLS.fallback, certificates=(cert("hello.localhost", "2"), cert("x.y")))
    assert structure(replace(PLANE, tls=TLS), site=SITE) == structure(
        replace(PLANE, tls=renewed), site=SITE
    )
    assert render(replace(PLANE, tls=TLS), site=SITE) == render(PLANE, site=SITE)


@pytest.mark.parametrize("name", ["../etc/passwd", "a b", "UPPER.example.com", "*.*.example.com"])
def test_bad_certificate_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidSpec, match="certificate name"):
        render(replace(PLANE, tls=replace(TLS, certificates=(cert(name),))), site=SITE)


def test_rendered_https_config_is_valid_haproxy(tmp_path: Path) -> None:
    site = replace(SITE, run_dir=tmp_path, internal_bind="")
    ca = LocalCA(tmp_path / "ca")
    now = datetime.now(UTC)
    files = []
    for name in ("fallback.slipway.invalid", "hello.localhost", "*.apps.localhost"):
        chain, key = ca.issue((name,), now=now)
        files.append(
            CertFile(name=name, pem=pems.bundle(chain, key), serial=pems.facts(chain).serial)
        )
    plane = replace(PLANE, tls=Tls(fallback=files[0], certificates=tuple(files[1:])))
    TlsSync(site=site, runtime=Recorder()).write(plane)  # type: ignore[arg-type]
    assert site.crt_list.read_text() == (
        f"{tmp_path}/tls/_wildcard.apps.localhost.pem\n{tmp_path}/tls/hello.localhost.pem\n"
    )
    assert oct(site.cert_file("hello.localhost").stat().st_mode & 0o777) == "0o600"
    config = tmp_path / "haproxy.cfg"
    write_maps(plane, site=site)  # the routes maps the frontends read
    config.write_text(render(plane, site=site))
    result = subprocess.run(
        [HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- runtime commands, decided purely ------------------------------------------------------------


def ops(changes: list[CertChange]) -> list[str]:
    return [f"{c.op} {c.path}" for c in changes]


FALLBACK = ("/t/fallback.pem", "0A", "F")


@pytest.mark.parametrize(
    ("wanted", "loaded", "listed", "pending", "expected"),
    [
        pytest.param({"/t/a.pem": ("1", "A")}, {"/t/fallback.pem": "0a", "/t/a.pem": "01"},
                     {"/t/a.pem"}, set(), [], id="in-sync-serials-compare-as-numbers"),
        pytest.param({"/t/a.pem": ("1", "A")}, {"/t/fallback.pem": "a"}, set(), set(),
                     ["new /t/a.pem", "set /t/a.pem", "commit /t/a.pem", "add /t/a.pem"],
                     id="new-certificate"),
        pytest.param({"/t/a.pem": ("2", "A2")}, {"/t/fallback.pem": "a", "/t/a.pem": "1"},
                     {"/t/a.pem"}, set(), ["set /t/a.pem", "commit /t/a.pem"], id="renewed"),
        pytest.param({}, {"/t/fallback.pem": "9"}, set(), set(),
                     ["set /t/fallback.pem", "commit /t/fallback.pem"], id="fallback-renewed"),
        pytest.param({}, {"/t/fallback.pem": "a", "/t/old.pem": "3"}, {"/t/old.pem"}, set(),
                     ["remove /t/old.pem", "delete /t/old.pem"], id="no-longer-wanted"),
        pytest.param({"/t/a.pem": ("1", "A")}, {"/t/fallback.pem": "a", "/t/a.pem": "1"}, set(),
                     {"/t/b.pem"}, ["abort /t/b.pem", "add /t/a.pem"],
                     id="left-open-transaction-and-missing-list-entry"),
    ],
)  # fmt: skip
def test_certificate_runtime_changes(
    wanted: dict[str, tuple[str, str]],
    loaded: dict[str, str],
    listed: set[str],
    pending: set[str],
    expected: list[str],
) -> None:
    changes = cert_changes(
        wanted=wanted, fallback=FALLBACK, loaded=loaded, listed=listed, pending=pending
    )
    assert ops(changes) == expected
    assert all(c.pem for c in changes if c.op == "set")


# --- against a recording runtime -----------------------------------------------------------------


class Recorder:
    """The runtime commands TlsSync and HAProxyChallenges send, with HAProxy's state to read."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.loaded: dict[str, str] = {}
        self.listed: set[str] = set()

    def ssl_certs(self) -> tuple[set[str], set[str]]:
        return set(self.loaded), set()

    def ssl_cert_serial(self, path: str) -> str:
        return self.loaded[path]

    def crt_list(self, crt_list: str) -> set[str]:
        return set(self.listed)

    def __getattr__(self, name: str) -> object:
        return lambda *args: self.sent.append(" ".join([name, *map(str, args)])[:60])


def test_tls_sync_asks_haproxy_only_when_certificates_changed(tmp_path: Path) -> None:
    site = replace(SITE, run_dir=tmp_path)
    runtime = Recorder()
    sync = TlsSync(site=site, runtime=runtime)  # type: ignore[arg-type]
    plane = replace(PLANE, tls=TLS)
    sync.write(plane)
    sync.loaded(plane)  # started from these files
    assert sync.sync(plane) == 0 and runtime.sent == []
    runtime.loaded = {str(site.fallback_cert): "1", str(site.cert_file("hello.localhost")): "1"}
    runtime.listed = {str(site.cert_file("hello.localhost"))}
    renewed = replace(plane, tls=replace(TLS, certificates=(cert("hello.localhost", "2"),)))
    sync.write(renewed)
    assert sync.sync(renewed) == 2
    path = site.cert_file("hello.localhost")
    assert runtime.sent == [f"set_ssl_cert {path} PEM of hello.localhost 2"[:60],
                            f"commit_ssl_cert {path}"[:60]]  # fmt: skip
    assert path.read_text() == "PEM of hello.localhost 2\n"  # a reload would load the same
    assert sync.sync(renewed) == 0  # each command succeeded (or raised): nothing left to send


def test_challenges_go_to_the_map_file_and_the_running_worker(tmp_path: Path) -> None:
    runtime = Recorder()
    site = replace(SITE, run_dir=tmp_path)
    challenges = HAProxyChallenges(site=site, runtime=runtime)  # type: ignore[arg-type]
    challenges.present("tok-1", "tok-1.thumb_print")
    assert site.challenges_map.read_text() == "tok-1 tok-1.thumb_print\n"
    challenges.cleanup("tok-1")
    challenges.cleanup("tok-1")
    assert site.challenges_map.read_text() == ""
    assert runtime.sent == [
        f"add_map {site.challenges_map} tok-1 tok-1.thumb_print"[:60],
        f"del_map {site.challenges_map} tok-1"[:60],
    ]
    with pytest.raises(ValueError, match="not an ACME token"):
        challenges.present("tok 2", "x\ny")


def test_runtime_payloads_end_with_an_empty_line(tmp_path: Path) -> None:
    path = tmp_path / "admin.sock"
    received: list[bytes] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen()

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                data = b""
                while chunk := conn.recv(4096):
                    data += chunk
                received.append(data)
                conn.sendall(b"Transaction created for certificate /x.pem!\n")

        thread = threading.Thread(target=answer)
        thread.start()
        out = Socket(path).command("set ssl cert /x.pem", payload="-----BEGIN-----\nAAA\n")
        thread.join(timeout=5)
    assert received == [b"set ssl cert /x.pem <<\n-----BEGIN-----\nAAA\n\n"]
    assert out.startswith("Transaction created")
    with pytest.raises(ValueError, match="empty line"):
        Socket(path).command("set ssl cert /x.pem", payload="a\n\nb\n")
