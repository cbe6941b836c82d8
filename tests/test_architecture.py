"""The package's layers point one way and no gpusim module imports itself back through others.

Imports are read from the source with `ast`, wherever they sit in a module (a function-level
import is a dependency too; only `if TYPE_CHECKING:` blocks are skipped, since they never run),
so a circle or an upward import fails here before it can fail at import time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gpusim"

LAYERS: dict[str, tuple[str, ...]] = {
    "foundation": ("gpusim.version", "gpusim.statistics", "gpusim.scenario"),
    "model": ("gpusim.model", "gpusim.spec", "gpusim.risk", "gpusim.desk"),
    "backends": ("gpusim.backends",),
    "output": ("gpusim.output",),
    "engine": ("gpusim.engine", "gpusim.runs", "gpusim.bench", "gpusim.batch", "gpusim.analysis", "gpusim.calibrate"),
    "report": ("gpusim.report",),
    "interface": ("gpusim", "gpusim.api", "gpusim.cli", "gpusim.__main__"),
}
"""Every gpusim module belongs to the layer of the longest prefix listed here."""

MAY_IMPORT: dict[str, set[str]] = {
    "foundation": {"foundation"},
    "model": {"foundation", "model"},
    "backends": {"foundation", "model", "backends"},
    "output": {"foundation", "model", "output"},
    "engine": {"foundation", "model", "backends", "output", "engine"},
    "report": {"foundation", "model", "output", "report"},
    "interface": set(LAYERS),
}
"""Layers point one way: the shared model definitions know nothing of the backends, the
backends nothing of the engine, and the output files nothing of how a run was computed."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.body:
                skipped.update(id(n) for n in ast.walk(statement))
    return skipped


def imports_of(module: str) -> set[str]:
    """gpusim modules `module` imports (`from a import b` counts as a.b when that is a module)."""
    tree = ast.parse(MODULES[module].read_text())
    skipped = _type_checking_nodes(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module for a in node.names)
    return {name for name in found if name in MODULES}


GRAPH = {module: imports_of(module) for module in MODULES}


def layer_of(module: str) -> str:
    matches = [
        (len(prefix), layer)
        for layer, prefixes in LAYERS.items()
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    if not matches:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_architecture.py")
    return max(matches)[1]


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (or a module importing itself), by Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1 or v in graph[v]:
                cycles.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_the_graph_sees_the_package():
    assert {"gpusim.cli", "gpusim.engine", "gpusim.model.params", "gpusim.scenario.calendar"} <= set(MODULES)
    assert "gpusim.engine" in GRAPH["gpusim.runs"]
    assert "gpusim.scenario.calendar" in GRAPH["gpusim.model.params"]


def test_no_import_cycles():
    assert import_cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_cycle():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_layers_point_one_way(module):
    layer = layer_of(module)
    upward = sorted(f"{target} ({layer_of(target)})" for target in GRAPH[module] if layer_of(target) not in MAY_IMPORT[layer])
    assert not upward, f"{module} ({layer}) imports a layer above it: {', '.join(upward)}"
