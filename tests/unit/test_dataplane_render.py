"""render(): golden haproxy.cfg per data plane, checked by `haproxy -c`, and the structure key.

Regenerate the golden files after an intended change with
`SLIPWAY_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_dataplane_render.py` and review the diff.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.errors import InvalidSpec
from pipeline.dataplane.checks import sift
from pipeline.dataplane.mapsync import write_maps
from pipeline.dataplane.model import Backend, DataPlane, Route, Server, Site, Split
from pipeline.dataplane.render import render, route_maps, structure, structure_of_config

GOLDEN = Path(__file__).parent / "golden"
SITE = Site(
    bind="127.0.0.1:8080",
    domain="localhost",
    api_server="127.0.0.1:8081",
    run_dir=Path("/var/lib/slipway/haproxy"),
)
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def server(name: str, ip: str, *, maxconn: int = 0, draining: bool = False) -> Server:
    return Server(name=name, address=ip, port=8080, maxconn=maxconn, draining=draining)


ONE = DataPlane(
    routes=(
        Route(host="hello.localhost", splits=(Split(backend="rev-hello-00001", percent=100),)),
    ),
    backends=(Backend(name="rev-hello-00001", servers=(server("i-a1b2c3", "172.30.0.2"),)),),
)
SPLIT = DataPlane(
    routes=(
        Route(
            host="hello.localhost",
            splits=(
                Split(backend="rev-hello-00002", percent=10),
                Split(backend="rev-hello-00001", percent=90),
            ),
        ),
        Route(
            host="commit-abc1234--hello.localhost",
            splits=(Split(backend="rev-hello-00002", percent=100),),
        ),
    ),
    backends=(
        Backend(name="rev-hello-00002", servers=(server("i-b2", "172.30.0.4"),)),
        Backend(name="rev-hello-00001", servers=(server("i-a1", "172.30.0.2"),)),
    ),
)
DRAINING = DataPlane(
    routes=(Route(host="api.localhost", splits=(Split(backend="rev-api-00003", percent=100),)),),
    backends=(
        Backend(
            name="rev-api-00003",
            timeout_s=60,
            queue_timeout_s=10,
            servers=(
                server("i-new", "172.30.0.9", maxconn=80),
                server("i-old", "172.30.0.8", maxconn=80, draining=True),
            ),
        ),
    ),
)
NO_SERVERS = DataPlane(
    routes=(Route(host="idle.localhost", splits=(Split(backend="rev-idle-00001", percent=100),)),),
    backends=(Backend(name="rev-idle-00001"),),
)

PLANES = [
    pytest.param(DataPlane(), id="empty"),
    pytest.param(ONE, id="one-service-one-revision"),
    pytest.param(SPLIT, id="split-90-10-and-tag"),
    pytest.param(DRAINING, id="draining-server-and-maxconn"),
    pytest.param(NO_SERVERS, id="backend-without-servers"),
]


@pytest.mark.parametrize("plane", PLANES)
def test_render_matches_golden(plane: DataPlane, request: pytest.FixtureRequest) -> None:
    golden = GOLDEN / f"{request.node.callspec.id}.cfg"
    text = render(plane, site=SITE)
    if os.environ.get("SLIPWAY_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


@pytest.mark.parametrize("plane", PLANES)
def test_rendered_config_is_valid_haproxy(plane: DataPlane, tmp_path: Path) -> None:
    config = tmp_path / "haproxy.cfg"
    site = replace(SITE, run_dir=tmp_path)
    write_maps(plane, site=site)  # HAProxy refuses a config whose map file is missing
    config.write_text(render(plane, site=site))
    result = subprocess.run(
        [HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_render_is_independent_of_input_order() -> None:
    shuffled = DataPlane(routes=SPLIT.routes[::-1], backends=SPLIT.backends[::-1])
    assert render(shuffled, site=SITE) == render(SPLIT, site=SITE)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            lambda b: replace(b, servers=(*b.servers, server("i-a9", "172.30.0.7"))),
            id="server-added",
        ),
        pytest.param(lambda b: replace(b, servers=()), id="servers-removed"),
        pytest.param(
            lambda b: replace(b, servers=tuple(replace(s, draining=True) for s in b.servers)),
            id="server-draining",
        ),
        pytest.param(
            lambda b: replace(b, servers=tuple(replace(s, maxconn=7) for s in b.servers)),
            id="server-maxconn",
        ),
    ],
)
def test_structure_ignores_servers(change: Callable[[Backend], Backend]) -> None:
    changed = replace(SPLIT, backends=tuple(change(b) for b in SPLIT.backends))
    assert render(changed, site=SITE) != render(SPLIT, site=SITE)
    assert structure(changed, site=SITE) == structure(SPLIT, site=SITE)


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param(replace(SPLIT, routes=SPLIT.routes[1:]), id="split-route-removed"),
        pytest.param(
            replace(
                SPLIT,
                routes=(
                    Route(
                        host="hello.localhost",
                        splits=(
                            Split(backend="rev-hello-00002", percent=50),
                            Split(backend="rev-hello-00001", percent=50),
                        ),
                    ),
                    SPLIT.routes[1],
                ),
            ),
            id="percent-changed",
        ),
        pytest.param(
            replace(SPLIT, backends=(replace(SPLIT.backends[0], timeout_s=5), SPLIT.backends[1])),
            id="timeout-changed",
        ),
        pytest.param(
            replace(SPLIT, backends=(*SPLIT.backends, Backend(name="rev-hello-00003"))),
            id="backend-added",
        ),
    ],
)
def test_structure_changes_with_routes_and_backends(changed: DataPlane) -> None:
    assert structure(changed, site=SITE) != structure(SPLIT, site=SITE)


def test_structure_is_recorded_in_the_config() -> None:
    assert structure_of_config(render(SPLIT, site=SITE)) == structure(SPLIT, site=SITE)
    assert structure_of_config("global\n") is None


def route(host: str, backend: str = "rev-x", percent: int = 100, **more: Any) -> Route:
    return Route(host=host, splits=(Split(backend=backend, percent=percent),), **more)


TAG = "commit-abc1234--hello.localhost"


@pytest.mark.parametrize(
    ("changed", "public"),
    [
        pytest.param(
            replace(SPLIT, routes=(SPLIT.routes[0], route(TAG, "rev-hello-00001"))),
            {TAG: "rev-hello-00001"},
            id="tag-moved-to-another-revision",
        ),
        pytest.param(replace(SPLIT, routes=SPLIT.routes[:1]), {}, id="tag-removed"),
        pytest.param(
            replace(SPLIT, routes=(*SPLIT.routes, route("new.localhost", "rev-hello-00001"))),
            {TAG: "rev-hello-00002", "new.localhost": "rev-hello-00001"},
            id="service-added",
        ),
    ],
)
def test_a_single_revision_route_is_a_map_entry_not_structure(
    changed: DataPlane, public: dict[str, str]
) -> None:
    """What makes a deploy's traffic change a `set map` instead of a reload."""
    assert structure(changed, site=SITE) == structure(SPLIT, site=SITE)
    assert route_maps(changed, site=SITE)[SITE.routes_map] == public | API_ROUTE


# The bare domain is a line of the public routes map too: the API's.
API_ROUTE = {"localhost": "slipway-api"}


def test_routes_maps_keep_cluster_local_hosts_off_the_public_listeners() -> None:
    plane = replace(ONE, routes=(*ONE.routes, route("local.localhost", "rev-hello-00001",
                                                    internal_only=True)))  # fmt: skip
    assert list(route_maps(plane, site=SITE)) == [SITE.routes_map]  # no internal listener
    site = replace(SITE, internal_bind="172.30.0.1:8080")
    maps = route_maps(plane, site=site)
    assert maps[site.routes_map] == {"hello.localhost": "rev-hello-00001", **API_ROUTE}
    assert maps[site.internal_routes_map] == {  # the API does not answer there
        "hello.localhost": "rev-hello-00001",
        "local.localhost": "rev-hello-00001",
    }


def test_only_a_split_hosts_rules_draw_a_random_number() -> None:
    assert "rand(" not in render(ONE, site=SITE)
    draws = [line for line in render(SPLIT, site=SITE).splitlines() if "rand(" in line]
    assert draws and all(line.strip().startswith("use_backend ") for line in draws)
    assert all("if host:hello.localhost " in line for line in draws)


_DRAW = re.compile(r"use_backend (\S+) if host:(\S+)(?: \{ rand\((\d+)\) -m int lt (\d+) \})?$")


def split_shares(text: str, host: str) -> dict[str, Fraction]:
    """What each backend gets of `host`'s requests, read off the rendered rules: HAProxy takes
    the first `use_backend` whose draw succeeds (`rand(n)` is uniform on 0..n-1)."""
    shares: dict[str, Fraction] = {}
    left = Fraction(1)  # the requests no earlier rule took
    for line in text.split("frontend ingress\n")[1].split("\n\n")[0].splitlines():
        m = _DRAW.fullmatch(line.strip())
        if not m or m.group(2) != host:
            continue
        chance = Fraction(int(m.group(4)), int(m.group(3))) if m.group(3) else Fraction(1)
        shares[m.group(1)] = shares.get(m.group(1), Fraction(0)) + left * chance
        left -= left * chance
    assert left == 0, "a request to the split host would fall through its rules"
    return shares


@pytest.mark.parametrize(
    "percents",
    [
        pytest.param((90, 10), id="90-10"),
        pytest.param((33, 33, 34), id="thirds"),
        pytest.param((1, 98, 1), id="1-98-1"),
        pytest.param((10, 20, 30, 40), id="four"),
        pytest.param((50, 0, 50), id="zero-percent-revision-left-out"),
    ],
)
def test_a_split_gives_each_revision_exactly_its_percent(percents: tuple[int, ...]) -> None:
    backends = [f"rev-s-0000{i}" for i in range(1, len(percents) + 1)]
    splits = tuple(Split(backend=b, percent=p) for b, p in zip(backends, percents, strict=True))
    plane = DataPlane(
        routes=(Route(host="s.localhost", splits=splits),),
        backends=tuple(Backend(name=b) for b in backends),
    )
    shares = split_shares(render(plane, site=SITE), "s.localhost")
    expected = {b: Fraction(p, 100) for b, p in zip(backends, percents, strict=True) if p}
    assert shares == expected


def test_a_single_revision_host_is_taken_by_the_first_routing_rule() -> None:
    """A host of the routes map evaluates no split or bare-domain rule: the map's answer is the
    first `use_backend`, and only the bare domain's backend asks for HAProxy's exporter."""
    text = render(SPLIT, site=SITE)
    frontend = text.split("frontend ingress\n")[1].split("\n\n")[0]
    routing = [ln.strip() for ln in frontend.splitlines() if ln.strip().startswith("use_backend")]
    assert routing[0] == "use_backend %[var(txn.backend)] if mapped"
    lookups = [ln for ln in frontend.splitlines() if "map(" in ln]
    assert len(lookups) == 1 and f"map({SITE.routes_map})" in lookups[0]
    assert "prometheus-exporter" not in frontend
    api = text.split("backend slipway-api\n")[1].split("\n\n")[0]
    assert "use-service prometheus-exporter if { path /metrics/haproxy }" in api


def test_without_a_split_routing_is_one_map_lookup_and_no_variable() -> None:
    """Setting `txn.host` and `txn.backend` costs every request ~1.8k instructions; only a
    listener with a split host needs them."""
    frontend = render(ONE, site=SITE).split("frontend ingress\n")[1].split("\n\n")[0]
    lines = [ln.strip() for ln in frontend.splitlines()]
    routing = [ln for ln in lines if ln.startswith(("use_backend", "default_backend"))]
    assert routing == [
        f"use_backend %[req.hdr(host),field(1,:),lower,map({SITE.routes_map})]",
        "default_backend slipway-no-route",
    ]
    assert not [ln for ln in lines if "set-var" in ln or ln.startswith("acl ")]


def test_the_no_route_answer_names_the_host_whichever_routing_the_listener_has() -> None:
    for plane in (ONE, SPLIT):
        no_route = render(plane, site=SITE).split("\nbackend slipway-no-route\n")[1]
        first = no_route.splitlines()[0].strip()
        assert first == "http-request set-var(txn.host) req.hdr(host),field(1,:),lower"


# A plane with one route that would break the config; `ONE`'s route must still render.
BROKEN_ROUTES = [
    pytest.param((route("x.localhost"),), (), id="split-to-unknown-backend"),
    pytest.param((route("x.localhost", percent=90),), ("rev-x",), id="percents-not-100"),
    pytest.param((route("x.localhost bad"),), ("rev-x",), id="host-with-space"),
    pytest.param((route("t\n--hello.localhost"),), ("rev-x",), id="host-with-newline"),
    pytest.param((route("localhost"),), ("rev-x",), id="route-on-bare-domain"),
    pytest.param(
        (route("t--web.localhost", service="t--web"), route("t--web.localhost", service="web")),
        ("rev-x",),
        id="host-claimed-twice",
    ),
    pytest.param(
        (route("p.localhost", private=True, service="p q"),), ("rev-x",), id="private-bad-service"
    ),
    pytest.param(
        (route("nl.localhost", backend="rev-nl\n-00001"),),
        ("rev-nl\n-00001",),
        id="backend-name-with-newline",
    ),
]


@pytest.mark.parametrize(("routes", "backends"), BROKEN_ROUTES)
def test_render_leaves_out_a_broken_route_and_keeps_the_rest(
    routes: tuple[Route, ...], backends: tuple[str, ...], tmp_path: Path
) -> None:
    plane = DataPlane(
        routes=(*ONE.routes, *routes),
        backends=(*ONE.backends, *(Backend(name=b) for b in backends)),
    )
    site = replace(SITE, run_dir=tmp_path)

    text = render(plane, site=site)
    sifted = sift(plane, domain=SITE.domain)

    assert [r.route for r in sifted.rejected] == list(routes)
    assert sifted.plane.routes == ONE.routes
    served = replace(plane, routes=ONE.routes, backends=sifted.plane.backends)
    assert text == render(served, site=site)
    config = tmp_path / "haproxy.cfg"
    write_maps(plane, site=site)
    config.write_text(text)
    result = subprocess.run(
        [HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_host_claimed_twice_names_the_other_service() -> None:
    twice = (route("t--web.localhost", service="t--web"), route("t--web.localhost", service="web"))
    plane = DataPlane(routes=twice, backends=(Backend(name="rev-x"),))

    whys = {r.route.service: r.why for r in sift(plane, domain="localhost").rejected}

    assert "service 't--web' answers on it too" in whys["web"]
    assert "service 'web' answers on it too" in whys["t--web"]


@pytest.mark.parametrize(
    "plane",
    [
        pytest.param(DataPlane(backends=(Backend(name="slipway-api"),)), id="reserved-backend"),
        pytest.param(
            DataPlane(
                backends=(Backend(name="rev-x", servers=(server("i-1", "1.2.3.4 backup"),)),)
            ),
            id="address-injection",
        ),
    ],
)
def test_render_refuses_broken_planes(plane: DataPlane) -> None:
    with pytest.raises(InvalidSpec):
        render(plane, site=SITE)
