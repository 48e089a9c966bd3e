"""Cluster-local services: only on the internal listener; and the internal resolver's answers."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

from dnslib import DNSRecord

from pipeline.dataplane import resolver as internaldns
from pipeline.dataplane.mapsync import write_maps
from pipeline.dataplane.model import Backend, DataPlane, Route, Server, Site, Split
from pipeline.dataplane.render import render, route_maps

SITE = Site(
    bind="127.0.0.1:8080",
    internal_bind="172.30.0.1:8080",
    domain="localhost",
    api_server="127.0.0.1:8081",
)
PLANE = DataPlane(
    routes=(
        Route(host="web.localhost", splits=(Split(backend="rev-web-00001", percent=100),)),
        Route(
            host="db-api.localhost",
            splits=(Split(backend="rev-db-api-00001", percent=100),),
            internal_only=True,
        ),
    ),
    backends=(
        Backend(name="rev-web-00001", servers=(Server(name="i-a", address="172.30.0.2", port=80),)),
        Backend(
            name="rev-db-api-00001", servers=(Server(name="i-b", address="172.30.0.3", port=80),)
        ),
    ),
)


def _frontends(text: str) -> dict[str, str]:
    sections: dict[str, str] = {}
    for block in text.split("\n\n"):
        head = block.strip().splitlines()[0] if block.strip() else ""
        if head.startswith("frontend "):
            sections[head.split()[1]] = block
    return sections


def test_cluster_local_routes_only_on_the_internal_listener(tmp_path: Path) -> None:
    text = render(PLANE, site=replace(SITE, run_dir=tmp_path))
    fronts = _frontends(text)
    assert "bind 127.0.0.1:8080" in fronts["ingress"]
    assert "bind 172.30.0.1:8080" in fronts["internal"]
    maps = route_maps(PLANE, site=replace(SITE, run_dir=tmp_path))
    assert "db-api.localhost" not in fronts["ingress"]
    assert "db-api.localhost" not in maps[tmp_path / "routes.map"]
    assert maps[tmp_path / "internal-routes.map"] == {
        "db-api.localhost": "rev-db-api-00001",
        "web.localhost": "rev-web-00001",
    }
    assert "slipway-api" not in fronts["internal"], "the API is not offered to instances"
    config = tmp_path / "haproxy.cfg"
    write_maps(PLANE, site=replace(SITE, run_dir=tmp_path))  # the routes maps the config reads
    config.write_text(text)
    check = subprocess.run(["haproxy", "-c", "-f", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_internal_listener_refuses_connections_from_outside_the_bridge(tmp_path: Path) -> None:
    site = replace(SITE, run_dir=tmp_path, internal_sources="172.30.0.0/16")
    text = render(PLANE, site=site)
    internal = _frontends(text)["internal"]
    assert "tcp-request connection reject unless { src 172.30.0.0/16 }" in internal
    assert "reject" not in _frontends(text)["ingress"]
    config = tmp_path / "haproxy.cfg"
    write_maps(PLANE, site=replace(SITE, run_dir=tmp_path))  # the routes maps the config reads
    config.write_text(text)
    check = subprocess.run(["haproxy", "-c", "-f", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_no_internal_listener_without_a_gateway() -> None:
    assert "frontend internal" not in render(PLANE, site=replace(SITE, internal_bind=""))


def _ask(name: str, qtype: str = "A") -> bytes | None:
    query = DNSRecord.question(name, qtype).pack()
    return internaldns.answer(query, domain="localhost", address="172.30.0.1")


def test_resolver_answers_names_under_the_domain_with_the_gateway() -> None:
    reply = DNSRecord.parse(_ask("commit-abc1234--hello.localhost") or b"")
    assert [str(rr.rdata) for rr in reply.rr] == ["172.30.0.1"]
    empty = DNSRecord.parse(_ask("hello.localhost", "AAAA") or b"")
    assert empty.rr == [] and empty.header.rcode == 0
    assert _ask("pypi.org") is None  # forwarded upstream, not answered here
    assert _ask("notlocalhost") is None


def test_upstream_is_read_from_resolv_conf() -> None:
    assert internaldns.upstream_from("# x\nnameserver 10.0.0.2\n") == ("10.0.0.2", 53)
    assert internaldns.upstream_from("") == internaldns.DEFAULT_UPSTREAM


def test_every_revision_backend_has_the_activator_as_backup(tmp_path: Path) -> None:
    text = render(PLANE, site=replace(SITE, run_dir=tmp_path, activator="127.0.0.1:8082"))
    for backend in ("rev-web-00001", "rev-db-api-00001"):
        block = text.split(f"backend {backend}\n", 1)[1].split("\n\n", 1)[0]
        # Named after the revision, which HAProxy sends the activator as the server's name.
        revision = backend.removeprefix("rev-")
        assert f"server activator-{revision} 127.0.0.1:8082 backup" in block
        assert "http-send-name-header X-Slipway-Server" in block
    config = tmp_path / "haproxy.cfg"
    write_maps(PLANE, site=replace(SITE, run_dir=tmp_path))  # the routes maps the config reads
    config.write_text(text)
    check = subprocess.run(["haproxy", "-c", "-f", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
