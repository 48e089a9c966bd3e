"""The benches' pure parts: wrk's report as figures, the per-hop and per-CPU arithmetic, the
`{"cases": [...]}` shape and its unit-carrying names, and the configs `bench/peers.py` runs.
Nothing here runs a benchmark."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from bench import common, peers, proxies, proxyconfigs, proxycounts, serving
from pipeline.dataplane import requestlogs

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"

WRK_REPORT = """\
Running 2s test @ http://127.0.0.1:8080/
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   462.00us  120.00us   4.40ms   90.00%
    Req/Sec    30.08k     1.20k   32.00k    70.00%
  Latency Distribution
     50%  462.00us
     75%  520.00us
     90%  600.00us
     99%    1.20ms
  60164 requests in 2.00s, 14.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:  30082.00
Transfer/sec:      7.00MB
"""


def test_a_wrk_report_becomes_figures_with_units() -> None:
    assert common.parse_wrk(WRK_REPORT) == {
        "rps": 30082.0,
        "p50_ms": pytest.approx(0.462),
        "p99_ms": pytest.approx(1.2),
        "requests": 60164.0,
        "errors": 8.0,  # 5 non-2xx, 2 read errors, 1 timeout
    }


def test_a_clean_run_has_no_errors_and_seconds_become_ms() -> None:
    clean = WRK_REPORT.replace("  Socket errors: connect 0, read 2, write 0, timeout 1\n", "")
    clean = clean.replace("  Non-2xx or 3xx responses: 5\n", "").replace("1.20ms", "1.50s")
    figures = common.parse_wrk(clean)
    assert figures["errors"] == 0
    assert figures["p99_ms"] == pytest.approx(1500.0)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("unable to connect to 127.0.0.1:9 Connection refused\n", id="no-report"),
        pytest.param(WRK_REPORT.replace("     50%  462.00us\n", ""), id="no-latency-flag"),
    ],
)
def test_what_is_not_a_full_wrk_report_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        common.parse_wrk(text)


@pytest.mark.parametrize(
    ("p50", "direct", "hops", "added"),
    [
        pytest.param(0.141, 0.028, 1, 0.113, id="one-hop"),
        pytest.param(0.476, 0.028, 2, 0.224, id="two-hops-share-the-difference"),
        pytest.param(0.030, 0.028, 0, 0.0, id="direct-adds-nothing"),
        pytest.param(0.020, 0.028, 1, -0.008, id="noise-below-direct-stays-visible"),
    ],
)
def test_added_latency_per_hop(p50: float, direct: float, hops: int, added: float) -> None:
    assert common.added_per_hop(p50, direct_p50_ms=direct, hops=hops) == pytest.approx(added)


def test_cpu_seconds_per_10k_requests() -> None:
    assert common.cpu_s_per_10k(0.5, requests=20_000) == pytest.approx(0.25)
    assert common.cpu_s_per_10k(0.5, requests=0) == 0.0


def test_cpu_time_is_read_past_a_command_name_with_spaces_and_parentheses() -> None:
    ticks = common.CLOCK_TICKS
    fields = ["S", "1", *(["0"] * 9), str(3 * ticks), str(ticks), "0", "0"]
    stat = f"42 (we (ird) name) {' '.join(fields)}"
    assert common.proc_stat_cpu_s(stat) == pytest.approx(4.0)


def test_the_cpu_time_of_this_process_tree_grows_when_it_works() -> None:
    import os

    before = common.cpu_seconds([os.getpid()])
    sum(i * i for i in range(3_000_000))
    assert common.cpu_seconds([os.getpid()]) > before


@pytest.mark.parametrize(
    "case",
    [
        pytest.param({"name": "x", "latency": 1.0}, id="a-number-without-a-unit"),
        pytest.param({"rps": 1.0}, id="no-name"),
        pytest.param({"name": "x", "cpu_per_request": 0.2}, id="per-what"),
    ],
)
def test_figures_must_name_their_unit(case: common.Case) -> None:
    with pytest.raises(ValueError):
        common.check_figures([case])


def test_json_output_is_one_object_of_cases(capsys: pytest.CaptureFixture[str]) -> None:
    cases: list[common.Case] = [
        {"name": "direct", "cpu": "-", "rps": 100, "p50_ms": 0.5, "added_p50_ms": 0.0},
        {"name": "proxy", "cpu": "1 core", "rps": 80, "p50_ms": 0.7, "buildkit_over_classic": 1.2},
    ]
    common.emit(cases, [common.Column("name", "case", "<8")], as_json=True, notes=["not in json"])
    assert json.loads(capsys.readouterr().out) == {"cases": cases}


def test_the_table_has_a_row_per_case_and_blanks_for_missing_figures() -> None:
    columns = [common.Column("name", "case", "<8"), common.Column("rps", "req/s", ">7d"),
               common.Column("took_s", "s", ">6.2f")]  # fmt: skip
    text = common.table([{"name": "a", "rps": 12}, {"name": "b", "took_s": 1.5}], columns)
    rows = ["case      req/s     s", "a            12", "b                1.50"]
    assert text.splitlines() == rows


# bench/peers.py ---------------------------------------------------------------------------------
def _got(**over: float) -> dict[str, float]:
    base = {"rps": 20000.0, "p50_ms": 0.7, "p99_ms": 3.0, "idle_p50_ms": 0.128,
            "requests": 60000.0, "errors": 0.0, "cpu_s": 1.5}  # fmt: skip
    return {**base, **over}


def test_a_peer_row_carries_every_column_and_the_arithmetic() -> None:
    case = peers.figures("  Traefik", limit="1 core", hops=2, got=_got(), direct_idle_p50=0.028)
    assert {c.key for c in peers.COLUMNS} == set(case)
    assert case["name"] == "Traefik"
    assert case["added_p50_ms"] == pytest.approx(0.05)  # (0.128 - 0.028) / 2
    assert case["cpu_s_per_10k"] == pytest.approx(0.25)  # 1.5 s over 60k requests
    assert case["requests_per_cpu_s"] == 40000
    common.check_figures([case])


def test_the_verdict_compares_with_the_best_peer_and_a_standalone_haproxy() -> None:
    def row(name: str, rps: float, cpu_s: float, idle: float) -> common.Case:
        got = _got(rps=rps, cpu_s=cpu_s, idle_p50_ms=idle)
        return peers.figures(name, limit="1 core", hops=1, got=got, direct_idle_p50=0.028)

    cases = [
        row("Slipway ingress: service URL", 18000, 1.5, 0.128),  # 40k requests per CPU second
        row("HAProxy, own config", 20000, 1.2, 0.100),  # 50k: the best
        row("Traefik v3 (Coolify)", 9000, 4.0, 0.200),
    ]
    first, second = peers.verdict(cases)
    assert "80% of the best peer's requests per CPU second (HAProxy, own config)" in first
    assert "adds 0.1 ms at p50 vs. 0.072 ms (HAProxy, own config)" in first
    assert "80% of its requests per CPU second, 90% of its req/s" in second


def test_the_verdict_compares_like_with_like_when_the_same_work_rows_ran() -> None:
    def row(name: str, cpu_s: float) -> common.Case:
        got = _got(cpu_s=cpu_s)  # 60k requests
        return peers.figures(name, limit="1 core", hops=1, got=got, direct_idle_p50=0.028)

    cases = [
        row("Slipway ingress: service URL", 1.5),  # 40k requests per CPU second
        row("HAProxy, own config", 1.2),
        row(proxies.SAME_HAPROXY, 1.4),  # 42.9k
        row(proxies.SAME_NGINX, 1.25),  # 48k
    ]
    last = peers.verdict(cases)[-1]
    assert "93% of HAProxy, same work's, 83% of nginx, same work's requests per CPU second" in last


def test_peer_names_are_unique_and_every_named_peer_is_run() -> None:
    names = Counter(p.name.strip() for p in peers.PEERS)
    assert max(names.values()) == 1
    assert set(names) >= peers.PEER_NAMES


# Slipway's rendered config and its ablations ------------------------------------------------------
@pytest.fixture(scope="module")
def ingress(tmp_path_factory: pytest.TempPathFactory) -> proxyconfigs.SlipwayIngress:
    run_dir: Path = tmp_path_factory.mktemp("ingress")
    return proxyconfigs.slipway_plane(run_dir=run_dir, port=18080, upstream_port=18081)


def test_slipways_config_gets_one_thread_and_keeps_every_costly_part(
    ingress: proxyconfigs.SlipwayIngress,
) -> None:
    text = proxyconfigs.slipway_conf(ingress)
    assert text.splitlines()[1:3] == ["global", "    nbthread 1"]
    for prefixes in proxyconfigs.ABLATIONS.values():
        for prefix in prefixes:
            assert any(line.strip().startswith(prefix) for line in text.splitlines()), prefix
    assert "jwt_verify" in text
    assert "{ rand(100) -m int lt 90 }" in text  # the 90/10 split


@pytest.mark.parametrize("ablation", list(proxyconfigs.ABLATIONS))
def test_an_ablation_takes_out_its_lines_and_only_those(
    ingress: proxyconfigs.SlipwayIngress, ablation: str
) -> None:
    full = proxyconfigs.slipway_conf(ingress).splitlines()
    less = proxyconfigs.slipway_conf(ingress, without=(ablation,)).splitlines()
    gone = [line for line in full if line not in less]
    assert gone
    assert all(line.strip().startswith(proxyconfigs.ABLATIONS[ablation]) for line in gone)
    assert len(full) - len(less) == len(gone)


def test_the_private_services_token_is_for_its_url_and_its_invoker(
    ingress: proxyconfigs.SlipwayIngress,
) -> None:
    import jwt

    token = proxyconfigs.token(ingress)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == "http://bench-peers-private.localhost:18080"
    assert claims["iss"] == "http://localhost:18080"
    assert (proxyconfigs.PRIVATE, claims["sub"]) in ingress.plane.invokers


# bench/serving.py -------------------------------------------------------------------------------
def test_serving_rows_compare_each_load_with_its_own_direct_run() -> None:
    def run(rps: float, p50: float) -> dict[str, float]:
        return {"rps": rps, "p50_ms": p50, "p99_ms": 2 * p50, "requests": rps, "errors": 0.0}

    figures = serving.Figures(
        results=[("direct", "1", run(1000, 0.5)), ("split", "1+1", run(800, 0.6))],
        latency=[("direct", run(5000, 0.1)), ("through", run(4000, 0.15))],
        how="POST",
        split=Counter(),
    )
    rows = serving.cases(figures, connections=16)
    common.check_figures(rows)
    assert [(r["name"], r["instances"], r["connections"]) for r in rows] == [
        ("direct", 1, 16), ("split", 2, 16),
        ("direct, one connection", 1, 1), ("through, one connection", 1, 1),
    ]  # fmt: skip
    assert rows[1]["vs_direct_pct"] == 80.0
    assert rows[3]["added_p50_ms"] == pytest.approx(0.05)


def test_missing_bench_tools_name_their_debian_packages_once() -> None:
    on_path = {"wrk": "/usr/bin/wrk"}
    assert common.missing_packages(["wrk", "nginx", "perf", "nginx"], on_path.get) == [
        "nginx-light",
        "linux-perf",
    ]
    assert common.missing_packages(["wrk"], on_path.get) == []


ANNOTATED = """\
--------------------------------------------------------------------------------
Ir                   file:function
--------------------------------------------------------------------------------
491,216,485 (84.63%)  ./string/memmove-vec-unaligned-erms.S:__memcpy_avx_unaligned_erms [libc.so.6]
    423,330 ( 0.07%)  ./string/memset-vec-unaligned-erms.S:__memset_avx2_unaligned_erms [libc.so.6]
    135,480 ( 0.02%)  ./string/memcmp-avx2-movbe.S:__memcmp_avx2_movbe [libc.so.6]
  1,000,000 ( 0.20%)  src/stream.c:process_stream [/usr/sbin/haproxy]
"""


def test_glibc_block_copies_and_sets_are_counted_apart_from_the_rest() -> None:
    # memcpy and memset count (rep movsb/stosb: an instruction per byte under callgrind);
    # memcmp and the proxy's own functions do not.
    assert proxycounts.memory_block_total(ANNOTATED) == 491_216_485 + 423_330


def test_sizes_are_whole_numbers_above_zero_or_a_clear_error() -> None:
    assert common.size_list("10,100,500") == (10, 100, 500)
    for bad in ("", "10,,500", "ten", "0,10"):
        with pytest.raises(argparse.ArgumentTypeError, match="whole numbers above 0"):
            common.size_list(bad)


def test_instruction_ratios_are_over_each_standalone_haproxy_that_ran() -> None:
    def row(name: str, total: int, without_mem: int) -> common.Case:
        return {"name": name, "instructions_per_request": total,
                "instructions_without_mem_per_request": without_mem}  # fmt: skip

    cases = [
        row("Slipway ingress: service URL", 80_000, 46_000),
        row(proxies.OWN_HAPROXY, 32_000, 32_000),
        row(proxies.SAME_HAPROXY, 41_000, 40_000),
    ]
    ours = proxycounts.with_ratios(cases)[0]
    assert ours["instructions_over_haproxy_own"] == 2.5
    assert ours["without_mem_over_haproxy_own"] == pytest.approx(1.438)
    assert ours["without_mem_over_haproxy_same"] == 1.15
    alone = proxycounts.with_ratios(cases[:1])[0]  # no standalone row run: no ratio
    assert alone.keys() == cases[0].keys()


# The same work done by HAProxy and nginx --------------------------------------------------------
def test_the_same_work_haproxy_routes_by_host_logs_as_slipway_and_forwards(
    tmp_path: Path,
) -> None:
    (tmp_path / proxyconfigs.HOSTS_MAP).write_text(proxyconfigs.hosts_map_text())
    text = proxyconfigs.haproxy_same_work_conf(port=18080, upstream_port=18081, run_dir=tmp_path)
    lines = [line.strip() for line in text.splitlines()]
    assert f"{proxyconfigs.SAME_WORK_HOST} app" in proxyconfigs.hosts_map_text().splitlines()
    assert f"use_backend %[req.hdr(host),field(1,:),lower,map({tmp_path}/hosts.map)]" in lines
    assert {"option forwardfor", "http-request set-header X-Forwarded-Proto http"} <= set(lines)
    site = proxyconfigs.slipway_plane(run_dir=tmp_path, port=18080, upstream_port=18081).site
    assert set(requestlogs.frontend_lines(site)) <= set(lines)  # Slipway's very log lines
    (tmp_path / "haproxy.cfg").write_text(text)
    check = subprocess.run([HAPROXY, "-c", "-f", str(tmp_path / "haproxy.cfg")],
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_same_work_nginx_serves_the_host_logs_each_request_and_forwards(
    tmp_path: Path,
) -> None:
    text = proxyconfigs.nginx_same_work_conf(port=18080, run_dir=tmp_path, upstream_port=18081)
    named = text.split(f"server_name {proxyconfigs.SAME_WORK_HOST}", 1)[1]
    assert f"access_log {tmp_path}/access.log combined;" in named
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in named
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in named
    assert "default_server; access_log off; return 404;" in text  # unknown hosts: not proxied
