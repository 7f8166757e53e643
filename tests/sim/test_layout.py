"""exchange_sim's module graph: no import cycles, and none dodged with a function-level
import (state.py is what lets the app, middleware, side channel and API share state)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "exchange_sim"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> tuple[dict[str, set[str]], list[str]]:
    """Module -> the exchange_sim modules it imports; and every import not at module level."""
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in paths}
    nested: list[str] = []
    for name, path in paths.items():
        tree = ast.parse(path.read_text())
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from exchange_sim import ids` imports the module exchange_sim.ids.
                submodules = [f"{node.module}.{alias.name}" for alias in node.names]
                targets = [s for s in submodules if s in paths] or [node.module]
            else:
                continue
            for target in targets:
                if target in paths and target != name:
                    graph[name].add(target)
                    if id(node) not in top_level:
                        nested.append(f"{name} -> {target}")
    return graph, nested


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> list[str] | None:
        if name in visiting:
            return [*visiting[visiting.index(name) :], name]
        if name in done:
            return None
        visiting.append(name)
        for target in sorted(graph[name]):
            cycle = visit(target)
            if cycle:
                return cycle
        visiting.pop()
        done.add(name)
        return None

    for name in sorted(graph):
        cycle = visit(name)
        if cycle:
            return cycle
    return None


def test_no_import_cycles() -> None:
    graph, _ = import_graph()
    assert "exchange_sim.state" in graph["exchange_sim.sideband"]  # the graph is read at all
    assert find_cycle(graph) is None


def test_no_function_level_imports() -> None:
    _, nested = import_graph()
    assert nested == []
