"""The package layering, held by a test: every import in pipeline/ and webhooks/ goes down or
sideways, and no module imports itself back through others.

Ranks, lowest first (DESIGN.md, "Layout"); a package may import its own rank or below:

    core -> spec -> store -> {autoscale, engines, dataplane, identity, build, tls}
         -> {reconcile, deploy, knative} -> webhooks -> app -> api -> cli

Every import counts: at module level, inside functions (a deferred import is still a
dependency) and under `if TYPE_CHECKING:` (a type that points upward is a layering leak too).
The checker is a pure function of a module map, so the table at the bottom feeds it planted
violations: it cannot pass by finding nothing.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOP_LEVEL = ("pipeline", "webhooks")

_ORDER: tuple[tuple[str, ...], ...] = (
    ("core",),
    ("spec",),
    ("store",),
    ("autoscale", "engines", "dataplane", "identity", "build", "tls"),
    ("reconcile", "deploy", "knative"),
    ("webhooks",),
    ("app",),
    ("api",),
    ("cli",),
)
RANKS: dict[str, int] = {pkg: rank for rank, group in enumerate(_ORDER) for pkg in group}
# `pipeline/__init__.py` holds only the version: the floor, importable from anywhere.
ROOT_PACKAGE = "pipeline"
RANKS[ROOT_PACKAGE] = 0


@dataclass(frozen=True, kw_only=True)
class Import:
    target: str  # a module of the tree, dotted
    where: str  # "pipeline/x/y.py:12", for the failure message


def package_of(module: str) -> str:
    """`pipeline.identity.tokens` -> `identity`; `webhooks.github` -> `webhooks`."""
    parts = module.split(".")
    if parts[0] == "webhooks":
        return "webhooks"
    return parts[1] if len(parts) > 1 else ROOT_PACKAGE


# --- reading the tree ----------------------------------------------------------------------------


def module_files() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for top in TOP_LEVEL:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _resolve(name: str, known: Mapping[str, Path]) -> str | None:
    """The longest prefix of `name` that is a module of the tree (None: a third-party import)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(
    module: str, path: Path, known: Mapping[str, Path], *, root: Path = ROOT
) -> list[Import]:
    """Every import in the file, wherever it sits, resolved to the tree's modules."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    rel = path.relative_to(root).as_posix()
    found: list[Import] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_package)
            # `from pkg import mod` imports the submodule; `from mod import name` the module.
            names = [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            target = _resolve(name, known)
            imp = Import(target=target or "", where=f"{rel}:{node.lineno}")
            if target is not None and target != module and imp not in found:
                found.append(imp)
    return found


def tree_imports() -> dict[str, list[Import]]:
    files = module_files()
    return {module: imports_of(module, path, files) for module, path in files.items()}


# --- the checks, pure ----------------------------------------------------------------------------


def rank_violations(graph: Mapping[str, Sequence[Import]]) -> list[str]:
    """Imports that reach a higher-ranked package, or a package the rank table does not know."""
    problems: list[str] = []
    for module, imports in sorted(graph.items()):
        source = package_of(module)
        for imp in imports:
            target = package_of(imp.target)
            unknown = [p for p in (source, target) if p not in RANKS]
            if unknown:
                problems.append(
                    f"{imp.where}: {module} -> {imp.target}: package {unknown[0]!r} has no rank; "
                    "add it to _ORDER in tests/unit/test_layering.py (and DESIGN.md)"
                )
            elif RANKS[target] > RANKS[source]:
                problems.append(
                    f"{imp.where}: {module} imports {imp.target}: {source} (rank "
                    f"{RANKS[source]}) may not import {target} (rank {RANKS[target]})"
                )
    return problems


def _cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(edges.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def _cycle_report(kind: str, component: list[str], lines: Iterator[tuple[str, str, str]]) -> str:
    inside = set(component)
    shown = [f"    {where}: {a} -> {b}" for a, b, where in lines if a in inside and b in inside]
    return f"{kind} import cycle among {', '.join(component)}:\n" + "\n".join(shown)


def module_cycles(graph: Mapping[str, Sequence[Import]]) -> list[str]:
    edges = {m: {imp.target for imp in imports} for m, imports in graph.items()}
    return [
        _cycle_report(
            "module",
            component,
            ((m, imp.target, imp.where) for m, imports in graph.items() for imp in imports),
        )
        for component in _cycles(edges)
    ]


def package_cycles(graph: Mapping[str, Sequence[Import]]) -> list[str]:
    """Sideways imports inside one rank are allowed, a cycle between two packages is not. (A
    cycle across ranks holds an upward import, which `rank_violations` already names.)"""
    edges: dict[str, set[str]] = {}
    lines: list[tuple[str, str, str]] = []
    for module, imports in graph.items():
        source = package_of(module)
        for imp in imports:
            target = package_of(imp.target)
            if target != source and RANKS.get(target) == RANKS.get(source):
                edges.setdefault(source, set()).add(target)
                lines.append((source, target, f"{imp.where} ({module} -> {imp.target})"))
    return [_cycle_report("package", c, iter(lines)) for c in _cycles(edges)]


def problems(graph: Mapping[str, Sequence[Import]]) -> list[str]:
    return rank_violations(graph) + module_cycles(graph) + package_cycles(graph)


# --- the tree ------------------------------------------------------------------------------------


def test_the_tree_is_layered() -> None:
    found = problems(tree_imports())
    assert not found, "layering broken:\n" + "\n".join(found)


def test_the_walk_sees_deferred_and_type_checking_imports() -> None:
    """The reader itself: imports inside functions and under TYPE_CHECKING are found."""
    graph = tree_imports()
    assert len(graph) > 100  # the whole tree, not an empty walk
    every = {imp.target for imports in graph.values() for imp in imports}
    assert "pipeline.core.errors" in every


def test_imports_of_reads_every_kind_of_import(tmp_path: Path) -> None:
    source = tmp_path / "pipeline" / "deploy" / "thing.py"
    source.parent.mkdir(parents=True)
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "import pipeline.core.names\n"
        "from pipeline.store import state\n"
        "from . import sibling\n"
        "if TYPE_CHECKING:\n"
        "    from pipeline.app.platform import Platform\n"
        "def later() -> None:\n"
        "    from pipeline.api.app import create\n"
    )
    known = {
        m: source
        for m in (
            "pipeline.core.names", "pipeline.store", "pipeline.store.state",
            "pipeline.deploy.sibling", "pipeline.app.platform", "pipeline.api.app",
        )
    }  # fmt: skip
    found = imports_of("pipeline.deploy.thing", source, known, root=tmp_path)
    assert [(i.target, i.where) for i in found] == [
        ("pipeline.core.names", "pipeline/deploy/thing.py:2"),
        ("pipeline.store.state", "pipeline/deploy/thing.py:3"),
        ("pipeline.deploy.sibling", "pipeline/deploy/thing.py:4"),
        ("pipeline.app.platform", "pipeline/deploy/thing.py:6"),
        ("pipeline.api.app", "pipeline/deploy/thing.py:8"),
    ]


# --- the checker catches what it should (planted module maps) ------------------------------------


def _graph(*edges: tuple[str, str]) -> dict[str, list[Import]]:
    graph: dict[str, list[Import]] = {}
    for number, (source, target) in enumerate(edges, start=1):
        graph.setdefault(source, []).append(Import(target=target, where=f"x.py:{number}"))
        graph.setdefault(target, [])
    return graph


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        pytest.param([("pipeline.core.names", "pipeline.spec.base")],
                     "x.py:1: pipeline.core.names imports pipeline.spec.base: core (rank 0) may "
                     "not import spec (rank 1)", id="core-imports-spec"),
        pytest.param([("pipeline.store.state", "pipeline.build.queue")],
                     "x.py:1: pipeline.store.state imports pipeline.build.queue", id="store-up"),
        pytest.param([("pipeline.identity.metadata", "pipeline.knative.apply")],
                     "identity (rank 3) may not import knative (rank 4)", id="identity-up"),
        pytest.param([("pipeline.deploy.x", "pipeline.core.a"),
                      ("pipeline.deploy.x", "webhooks.y")],
                     "x.py:2: pipeline.deploy.x imports webhooks.y", id="deploy-imports-webhooks"),
        pytest.param([("webhooks.runner", "pipeline.app.platform")],
                     "webhooks (rank 5) may not import app (rank 6)", id="webhooks-imports-app"),
        pytest.param([("pipeline.app.platform", "pipeline.api.auth")],
                     "app (rank 6) may not import api (rank 7)", id="app-imports-api"),
        pytest.param([("pipeline.api.app", "pipeline.cli.client")],
                     "api (rank 7) may not import cli (rank 8)", id="api-imports-cli"),
        pytest.param([("pipeline.newpkg.x", "pipeline.core.names")],
                     "package 'newpkg' has no rank", id="unranked-package"),
        pytest.param([("pipeline.identity.a", "pipeline.identity.b"),
                      ("pipeline.identity.b", "pipeline.identity.a")],
                     "module import cycle among pipeline.identity.a, pipeline.identity.b:\n"
                     "    x.py:1: pipeline.identity.a -> pipeline.identity.b\n"
                     "    x.py:2: pipeline.identity.b -> pipeline.identity.a",
                     id="module-cycle-in-one-package"),
        pytest.param([("pipeline.build.a", "pipeline.identity.b"),
                      ("pipeline.identity.c", "pipeline.build.d")],
                     "package import cycle among build, identity", id="sideways-package-cycle"),
    ],
)  # fmt: skip
def test_checker_catches(edges: list[tuple[str, str]], expected: str) -> None:
    found = problems(_graph(*edges))
    assert any(expected in problem for problem in found), found


@pytest.mark.parametrize(
    "edges",
    [
        pytest.param([("pipeline.cli.main", "pipeline.core.names")], id="top-imports-bottom"),
        pytest.param([("pipeline.build.a", "pipeline.identity.b")], id="sideways-one-way"),
        pytest.param([("pipeline.core.a", "pipeline.core.b"),
                      ("pipeline.core.b", "pipeline.core.c")],
                     id="chain-inside-a-package"),
        pytest.param([("pipeline.core.a", "pipeline")], id="version-from-the-root"),
        pytest.param([("webhooks.routes", "pipeline.deploy.deployer")], id="webhooks-down"),
    ],
)  # fmt: skip
def test_checker_allows(edges: list[tuple[str, str]]) -> None:
    assert problems(_graph(*edges)) == []
