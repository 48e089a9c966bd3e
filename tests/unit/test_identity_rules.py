"""Identity in the data plane, pure parts: private hosts and their invokers in the plane, and
the HAProxy rules that check tokens (golden file + `haproxy -c`). Tokens, keys and the metadata
protocol are in test_identity.py.

Regenerate the golden file after an intended change with
`SLIPWAY_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_identity_rules.py` and review the diff.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.core.annotations import INVOKERS_ANNOTATION, PRIVATE_ANNOTATION
from pipeline.core.errors import InvalidSpec
from pipeline.dataplane import jwt
from pipeline.dataplane.mapsync import write_maps
from pipeline.dataplane.model import Backend, DataPlane, JwtPolicy, Route, Site, Split
from pipeline.dataplane.render import render, route_maps, structure
from pipeline.identity import keys
from pipeline.reconcile.routing import build_plane
from tests.unit.factories import revision, service, snapshot

GOLDEN = Path(__file__).parent / "golden"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
SITE = Site(
    bind="127.0.0.1:8080",
    internal_bind="172.30.0.1:8080",
    domain="localhost",
    api_server="127.0.0.1:8081",
    run_dir=Path("/var/lib/slipway/haproxy"),
)
POLICY = JwtPolicy(
    issuer="http://localhost:8080",
    keys=(
        ("1700000000-aaaaaaaa", Path("/var/lib/slipway/keys/1700000000-aaaaaaaa.pub")),
        ("1700003600-bbbbbbbb", Path("/var/lib/slipway/keys/1700003600-bbbbbbbb.pub")),
    ),
)
PRIVATE = DataPlane(
    routes=(
        Route(host="target.localhost", service="target", private=True,
              splits=(Split(backend="rev-target-00001", percent=100),)),
        Route(host="v1--target.localhost", service="target", private=True,
              splits=(Split(backend="rev-target-00001", percent=100),)),
        Route(host="pub.localhost", service="pub",
              splits=(Split(backend="rev-pub-00001", percent=100),)),
    ),
    backends=(Backend(name="rev-target-00001"), Backend(name="rev-pub-00001")),
    jwt=POLICY,
    invokers=(("target", "service:caller"), ("target", "user:alice")),
)  # fmt: skip


# -- private hosts in the plane --------------------------------------------------------------


def test_build_plane_marks_private_hosts_and_lists_their_invokers() -> None:
    target = service("target", [
        {"latestRevision": True, "percent": 100}, {"revisionName": "target-00001", "tag": "v1"},
    ])  # fmt: skip
    target.spec["metadata"] = {"annotations": {
        PRIVATE_ANNOTATION: "true",
        INVOKERS_ANNOTATION: "service:caller, user:alice,bad entry",
    }}  # fmt: skip
    pub = service("pub")
    pub.spec["metadata"] = {"annotations": {INVOKERS_ANNOTATION: "service:caller"}}
    snap = snapshot([target, pub], [revision("target", 1), revision("pub", 1)])
    plane = build_plane(
        snap, instances=[], ready=set(), draining=set(), domain="localhost", jwt=POLICY
    )
    assert {(r.host, r.service, r.private) for r in plane.routes} == {
        ("target.localhost", "target", True),
        ("v1--target.localhost", "target", True),
        ("pub.localhost", "pub", False),
    }
    assert plane.invokers == (("target", "service:caller"), ("target", "user:alice"))
    assert plane.jwt == POLICY


# -- data plane rules -------------------------------------------------------------------------


def test_private_rules_match_golden() -> None:
    text = render(PRIVATE, site=SITE)
    golden = GOLDEN / "private-service-jwt.cfg"
    if os.environ.get("SLIPWAY_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_private_rules_are_valid_haproxy(tmp_path: Path) -> None:
    key_dir = tmp_path / "keys"
    key_dir.mkdir()
    store = keys.KeyStore(key_dir)
    live = (store.ensure(), store.rotate())
    site = replace(SITE, run_dir=tmp_path)
    plane = replace(PRIVATE, jwt=replace(POLICY, keys=tuple((k.kid, k.public_path) for k in live)))
    write_maps(plane, site=site)  # the invokers and routes maps the config reads
    config = tmp_path / "haproxy.cfg"
    config.write_text(render(plane, site=site))
    check = subprocess.run([HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_private_service_with_many_tags_still_makes_a_valid_config(tmp_path: Path) -> None:
    # HAProxy reads at most 64 words a line and rejects the whole file past that: no rule may
    # grow with the number of a service's hosts.
    store = keys.KeyStore(tmp_path / "keys")
    key = store.ensure()
    tags = tuple(
        Route(host=f"branch-{i}--target.localhost", service="target", private=True,
              splits=(Split(backend="rev-target-00001", percent=100),))
        for i in range(40)
    )  # fmt: skip
    plane = replace(
        PRIVATE,
        routes=(*PRIVATE.routes, *tags),
        jwt=replace(POLICY, keys=((key.kid, key.public_path),)),
    )
    site = replace(SITE, run_dir=tmp_path)
    write_maps(plane, site=site)  # the invokers and routes maps the config reads
    config = tmp_path / "haproxy.cfg"
    config.write_text(render(plane, site=site))

    check = subprocess.run([HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True)

    assert check.returncode == 0, check.stdout + check.stderr
    assert max(len(line.split()) for line in config.read_text().splitlines()) < 64


def _sections(text: str) -> dict[str, str]:
    """`frontend ingress` / `backend rev-x` -> that section's text."""
    return {part.split("\n", 1)[0]: part for part in text.split("\n\n")}


def test_the_private_services_backends_check_tokens_and_nothing_else_does() -> None:
    # Both listeners route to the same revision backends, so the rules there guard the service
    # whichever listener or host a request came by; a public request never evaluates them.
    sections = _sections(render(PRIVATE, site=SITE))
    private = sections["backend rev-target-00001"]
    assert private.splitlines()[1].strip().startswith("http-request set-var(txn.jwt)")
    assert "http-request return status 401" in private and "jwt_verify" in private
    assert "service 'target' is private" in private
    others = [text for name, text in sections.items() if name != "backend rev-target-00001"]
    assert {"frontend ingress", "frontend internal", "backend rev-pub-00001"} <= set(sections)
    assert not [text for text in others if "jwt" in text or "txn.sub" in text]
    public = replace(PRIVATE, routes=tuple(replace(r, private=False) for r in PRIVATE.routes))
    assert "jwt" not in render(public, site=SITE)


def test_every_backend_a_private_route_reaches_is_guarded_for_its_service() -> None:
    splits = (Split(backend="rev-target-00001", percent=100),
              Split(backend="rev-target-00002", percent=0))  # fmt: skip
    split = Route(host="target.localhost", service="target", private=True, splits=splits)
    guarded = jwt.guarded_backends([split, *PRIVATE.routes[1:]])
    assert guarded == {
        "rev-target-00001": ("target", ["target.localhost", "v1--target.localhost"]),
        "rev-target-00002": ("target", ["target.localhost", "v1--target.localhost"]),
    }


def test_one_verify_rule_per_key_selected_by_kid() -> None:
    lines = jwt.backend_lines("target", ["target.localhost"], site=SITE, policy=POLICY)
    verify = [line for line in lines if "jwt_verify" in line]
    assert len(verify) == 2
    for (kid, path), line in zip(POLICY.keys, verify, strict=True):
        assert f'jwt_verify("RS256","{path}")' in line and f"-m str {kid}" in line


def test_without_keys_private_services_stay_closed() -> None:
    lines = jwt.backend_lines("target", ["target.localhost"], site=SITE, policy=None)
    assert not any("jwt_verify" in line for line in lines)
    assert any(line.startswith("http-request return status 401") for line in lines)


def test_audiences_are_every_url_of_the_service() -> None:
    assert jwt.audiences(["t.localhost", "v1--t.localhost"], port=8080) == [
        "http://t.localhost:8080", "http://t.localhost:8080/",
        "http://v1--t.localhost:8080", "http://v1--t.localhost:8080/",
    ]  # fmt: skip
    assert jwt.audiences(["t.example.com"], port=80) == [
        "http://t.example.com", "http://t.example.com/",
        "http://t.example.com:80", "http://t.example.com:80/",
    ]  # fmt: skip


def test_invokers_map_and_structure() -> None:
    assert jwt.map_text(jwt.invokers_map(PRIVATE.invokers)) == (
        "target/service:caller 1\ntarget/user:alice 1\n"
    )
    # Invokers change at runtime (add map / del map): they never make HAProxy reload.
    fewer = replace(PRIVATE, invokers=PRIVATE.invokers[:1])
    assert structure(fewer, site=SITE) == structure(PRIVATE, site=SITE)
    rotated = replace(PRIVATE, jwt=replace(POLICY, keys=POLICY.keys[1:]))
    assert structure(rotated, site=SITE) != structure(PRIVATE, site=SITE)


@pytest.mark.parametrize(
    "plane",
    [
        pytest.param(replace(PRIVATE, jwt=replace(POLICY, issuer="http://a b")), id="issuer"),
        pytest.param(
            replace(PRIVATE, jwt=replace(POLICY, keys=(("k", Path('/x/"y.pub')),))), id="path"
        ),
    ],
)
def test_render_refuses_injection(plane: DataPlane) -> None:
    with pytest.raises(InvalidSpec):
        render(plane, site=SITE)


def test_render_leaves_out_a_private_route_without_its_service() -> None:
    # No service, no invoker check to put in front of the host: it gets no route (fail closed),
    # and the other routes still render.
    plane = replace(PRIVATE, routes=(replace(PRIVATE.routes[0], service=""), PRIVATE.routes[2]))

    text = render(plane, site=SITE)

    assert "target.localhost" not in text and "jwt" not in text
    assert route_maps(plane, site=SITE)[SITE.routes_map] == {
        "pub.localhost": "rev-pub-00001", "localhost": "slipway-api",
    }  # fmt: skip
