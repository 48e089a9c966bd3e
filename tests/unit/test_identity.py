"""Identity, pure parts: token claims, keys and rotation, JWKS, invoker annotations, the
metadata protocol, and the HAProxy rules for private services (golden file + `haproxy -c`).

Regenerate the golden file after an intended change with
`SLIPWAY_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_identity.py` and review the diff.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest

from pipeline.core.annotations import INVOKERS_ANNOTATION, PRIVATE_ANNOTATION
from pipeline.core.errors import InvalidInput, InvalidSpec, Unavailable
from pipeline.dataplane import jwt
from pipeline.dataplane.mapsync import write_maps
from pipeline.dataplane.model import Backend, DataPlane, JwtPolicy, Route, Site, Split
from pipeline.dataplane.render import render, route_maps, structure
from pipeline.identity import access, keys, tokens
from pipeline.identity.callers import Caller
from pipeline.identity.metadata import Issuer, answer
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


# -- tokens -----------------------------------------------------------------------------------


def test_claims_name_the_caller_and_expire_within_an_hour() -> None:
    me = tokens.service_identity("caller", domain="localhost")
    claims = tokens.claims(me, issuer="http://localhost:8080", audience="http://t", now=1000)
    assert claims == {
        "iss": "http://localhost:8080", "aud": "http://t", "sub": "service:caller",
        "email": "caller@localhost", "email_verified": True, "azp": "service:caller",
        "iat": 1000, "exp": 4600,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"audience": ""}, "needs an audience", id="no-audience"),
        pytest.param({"audience": "http://t", "ttl_s": 3601}, "1..3600", id="over-an-hour"),
        pytest.param({"audience": "http://t", "ttl_s": 0}, "1..3600", id="zero-ttl"),
    ],
)
def test_claims_refuse(kwargs: dict[str, Any], message: str) -> None:
    me = tokens.user_identity("alice", domain="localhost")
    with pytest.raises(InvalidInput, match=message):
        tokens.claims(me, issuer="http://x", now=0, **kwargs)


# Members (`service:caller`, `user:alice`) and the invoker grammar: test_annotations.py.


def test_users_and_services_of_one_name_are_different_identities() -> None:
    svc = tokens.service_identity("alice", domain="localhost")
    user = tokens.user_identity("alice", domain="localhost")
    assert svc.member != user.member and svc.email != user.email


@pytest.mark.parametrize("name", ["alice\n", "alice\nbob", "Alice"])
def test_user_names_are_matched_whole(name: str) -> None:
    # `$` would match before a trailing newline: the whole name must fit the grammar.
    with pytest.raises(InvalidInput, match="invalid user name"):
        tokens.user_identity(name, domain="localhost")


# -- keys -------------------------------------------------------------------------------------


def test_keys_are_private_and_minted_tokens_verify_with_the_jwks(tmp_path: Path) -> None:
    store = keys.KeyStore(tmp_path / "keys", clock=lambda: 1_700_000_000)
    key = store.ensure()
    assert store.ensure() == key, "ensure does not make a second key"
    assert key.private_path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "keys").stat().st_mode & 0o777 == 0o700
    me = tokens.service_identity("caller", domain="localhost")
    payload = tokens.claims(me, issuer="http://i", audience="http://t", now=1_700_000_000)
    token = tokens.mint(payload, kid=key.kid, private_pem=key.private_pem())
    (jwk,) = keys.jwks(store.live())["keys"]
    assert set(jwk) == {"kty", "alg", "use", "kid", "n", "e"}
    assert (jwk["kty"], jwk["alg"], jwk["use"], jwk["kid"]) == ("RSA", "RS256", "sig", key.kid)
    assert pyjwt.get_unverified_header(token)["kid"] == key.kid
    decoded = pyjwt.decode(
        token, pyjwt.PyJWK(jwk).key, algorithms=["RS256"], audience="http://t",
        options={"verify_exp": False, "verify_iat": False},
    )  # fmt: skip
    assert decoded["sub"] == "service:caller"


def test_rotation_keeps_the_old_key_until_its_tokens_expired(tmp_path: Path) -> None:
    now = [1_700_000_000.0]
    store = keys.KeyStore(tmp_path, clock=lambda: now[0])
    old = store.ensure()
    now[0] += 10
    new = store.rotate()
    assert store.signing() == new
    assert [k.kid for k in store.live()] == [old.kid, new.kid]
    now[0] = new.created + keys.MAX_TOKEN_LIFETIME_S + keys.SKEW_S - 1
    assert store.prune() == [] and len(store.live()) == 2
    now[0] += 2
    assert store.prune() == [old.kid]
    assert [k.kid for k in store.all()] == [new.kid]
    assert not old.private_path.exists() and not old.public_path.exists()


def _pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def test_an_operators_key_is_imported_once_and_a_new_one_rotates(tmp_path: Path) -> None:
    """The Helm chart's signing-key Secret (SLIPWAY_SIGNING_KEY_FILE)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    now = [1_700_000_000.0]
    store = keys.KeyStore(tmp_path / "keys", clock=lambda: now[0])
    seed = tmp_path / "signing-key.pem"
    first = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    seed.write_bytes(_pem(first))
    imported = store.ensure(seed=seed)
    assert imported.private_pem() == _pem(first)
    assert (imported.private_path.stat().st_mode & 0o777) == 0o600
    now[0] += 10
    assert store.ensure(seed=seed) == imported and len(store.all()) == 1  # a restart: unchanged
    rotated = store.rotate()
    now[0] += 10
    assert store.ensure(seed=seed) == rotated  # `keys rotate` is not undone by the same Secret
    second = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    seed.write_bytes(_pem(second))
    now[0] += 10
    replaced = store.ensure(seed=seed)
    assert replaced.private_pem() == _pem(second)  # a replaced Secret rotates
    assert [k.kid for k in store.live()] == [imported.kid, rotated.kid, replaced.kid]


def test_an_unusable_operator_key_is_refused_with_how_to_make_one(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    store = keys.KeyStore(tmp_path / "keys")
    seed = tmp_path / "signing-key.pem"
    for content, problem in [
        (b"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n", "cannot read"),
        (_pem(ec.generate_private_key(ec.SECP256R1())), "not an RSA key"),
        (_pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)), "2048 bits"),
    ]:
        seed.write_bytes(content)
        with pytest.raises(Unavailable, match=problem) as e:
            store.ensure(seed=seed)
        assert "openssl genpkey" in e.value.message
    with pytest.raises(Unavailable, match="cannot read"):
        store.ensure(seed=tmp_path / "missing.pem")
    assert store.all() == []


def test_policy_lists_live_keys_for_haproxy(tmp_path: Path) -> None:
    store = keys.KeyStore(tmp_path, clock=lambda: 1_700_000_000)
    key = store.ensure()
    assert access.policy(store, issuer="http://localhost:8080") == JwtPolicy(
        issuer="http://localhost:8080", keys=((key.kid, key.public_path),)
    )


# -- invokers on the Service ------------------------------------------------------------------


def test_access_annotations_edit_without_touching_the_template() -> None:
    manifest: dict[str, Any] = {"metadata": {"name": "t"}, "spec": {"template": {"x": 1}}}
    private = access.edited(manifest, private=True, add=("service:caller", "user:alice"))
    assert private["metadata"]["annotations"] == {
        PRIVATE_ANNOTATION: "true",
        INVOKERS_ANNOTATION: "service:caller,user:alice",
    }
    assert private["spec"] == manifest["spec"] and "annotations" not in manifest["metadata"]
    assert access.is_private(private) and access.invokers(private) == [
        "service:caller", "user:alice",
    ]  # fmt: skip
    again = access.edited(private, add=("service:caller",), remove=("user:alice",))
    assert access.invokers(again) == ["service:caller"]
    public = access.edited(again, private=False, remove=("service:caller",))
    assert public["metadata"]["annotations"] == {}
    with pytest.raises(InvalidInput, match="invalid invoker"):
        access.edited(manifest, add=("everyone",))


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
    assert route_maps(plane, site=SITE)[SITE.routes_map] == {"pub.localhost": "rev-pub-00001"}


# -- metadata protocol ------------------------------------------------------------------------

IDENTITY = "/computeMetadata/v1/instance/service-accounts/default/identity"
FLAVOR = {"metadata-flavor": "Google"}
CALLER = Caller(service="caller", revision="caller-00001", instance="abc")


@pytest.fixture
def issuer(tmp_path: Path) -> Issuer:
    store = keys.KeyStore(tmp_path)
    store.ensure()
    return Issuer(issuer="http://localhost:8080", domain="localhost", project="p", keys=store)


def _ask(issuer: Issuer, target: str, headers: dict[str, str], peer: str = "10.0.0.5") -> Any:
    known = {"10.0.0.5": CALLER}
    return answer(
        method="GET", target=target, headers=headers, peer=peer, lookup=known.get, issuer=issuer
    )


@pytest.mark.parametrize(
    ("target", "headers", "peer", "status", "body"),
    [
        pytest.param("/", FLAVOR, "10.0.0.5", 200, "computeMetadata/", id="ping"),
        pytest.param("/", {}, "10.0.0.5", 403, "Metadata-Flavor", id="no-flavor"),
        pytest.param("/", {**FLAVOR, "x-forwarded-for": "10.0.0.5"}, "10.0.0.9", 403,
                     "X-Forwarded-For", id="spoofed-xff"),
        pytest.param(f"{IDENTITY}?audience=http://t", FLAVOR, "10.0.0.9", 403,
                     "not an instance", id="unknown-address"),
        pytest.param(f"{IDENTITY}", FLAVOR, "10.0.0.5", 400, "audience", id="no-audience"),
        pytest.param("/computeMetadata/v1/instance/service-accounts/default/email", FLAVOR,
                     "10.0.0.5", 200, "caller@localhost", id="email"),
        pytest.param("/computeMetadata/v1/instance/service-accounts/other/email", FLAVOR,
                     "10.0.0.5", 404, "no service account", id="other-account"),
        pytest.param("/computeMetadata/v1/project/project-id", FLAVOR, "10.0.0.5", 200, "p",
                     id="project"),
        pytest.param("/computeMetadata/v1/instance/zone", FLAVOR, "10.0.0.5", 404, "no metadata",
                     id="unknown-path"),
    ],
)  # fmt: skip
def test_metadata_answers(
    issuer: Issuer, target: str, headers: dict[str, str], peer: str, status: int, body: str
) -> None:
    reply = _ask(issuer, target, headers, peer)
    assert reply.status == status and body in reply.body


@pytest.mark.parametrize("fmt", ["standard", "full"])
def test_metadata_identity_token(issuer: Issuer, fmt: str) -> None:
    reply = _ask(issuer, f"{IDENTITY}?audience=http://target.localhost:8080&format={fmt}", FLAVOR)
    claims = pyjwt.decode(reply.body, options={"verify_signature": False})
    assert claims["aud"] == "http://target.localhost:8080"
    assert claims["sub"] == "service:caller" and claims["email"] == "caller@localhost"
    assert claims["exp"] - claims["iat"] == 3600
    if fmt == "full":
        assert claims["slipway"]["revision"] == "caller-00001"
    else:
        assert "slipway" not in claims
