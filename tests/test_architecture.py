"""The shape of the code, checked: no import cycles, a pure core, one accounting path, and
modules and functions small enough to read.

Imports are read from the source: every `import`, at any depth, so a function-level import
that dodges a cycle still counts. A package's own `__init__` running first when one of its
modules is imported is not counted: re-exporting from `__init__` is no cycle."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("pipeline", "exchange_sim")
#: The pure core: no network, no database, no clock (GUIDE section 3).
PURE = ("pipeline.rules", "pipeline.directory", "pipeline.model", "pipeline.claims")
#: The I/O shell, which the pure core must never reach.
IO = ("pipeline.store", "pipeline.sources", "pipeline.http", "pipeline.stages", "pipeline.ledger")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def module_files() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


@cache
def graph() -> dict[str, frozenset[str]]:
    """Module -> the project modules it imports (directly)."""
    files = module_files()
    edges: dict[str, frozenset[str]] = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            for target in _imported(node, name, is_package):
                # `from a import b`: the module a.b if there is one, else the package a.
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target:
                    targets.add(target)
        edges[name] = frozenset(targets - {name})
    return edges


def _imported(node: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            anchor = module.split(".")
            anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
            base = ".".join([*anchor, base] if base else anchor)
        yield from (f"{base}.{alias.name}" for alias in node.names)


def reachable(start: str) -> set[str]:
    seen: set[str] = set()
    stack = [start]
    while stack:
        for nxt in graph()[stack.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    assert cycles() == []


def test_the_cycle_check_finds_a_cycle() -> None:
    graph.cache_clear()
    real = graph()
    try:
        fake = dict(real)
        fake["pipeline.rules"] = real["pipeline.rules"] | {"pipeline.claims"}
        graph.cache_clear()
        globals()["graph"] = lambda: fake
        assert ["pipeline.claims", "pipeline.rules"] in cycles()
    finally:
        globals()["graph"] = _graph
        graph.cache_clear()


_graph = graph


@pytest.mark.parametrize("module", PURE)
def test_the_pure_core_reaches_no_io(module: str) -> None:
    reached = reachable(module)
    assert not {m for m in reached if m.startswith(IO)}, reached


def test_store_is_sql_only_and_never_reaches_the_rules() -> None:
    for module in (m for m in graph() if m.startswith("pipeline.store")):
        reached = reachable(module)
        assert "pipeline.rules" not in reached and "pipeline.claims" not in reached, module


def test_the_service_never_imports_the_simulator() -> None:
    for module in (m for m in graph() if m.startswith("pipeline")):
        if module.startswith("pipeline.cli.demo"):
            continue  # the demo runs the simulator (imported lazily)
        assert not any(m.startswith("exchange_sim") for m in graph()[module]), module


# --- one accounting path ---

ACCOUNTING = "pipeline/ledger.py"
#: What only the accounting path may do: write disposal_log rows, count outcomes, free slots.
ACCOUNTING_ONLY = {
    "writes disposal_log": re.compile(r"\binsert_disposals\("),
    "counts emaillog_messages_total": re.compile(r"\.messages\.labels\([^)]*\)\.inc\("),
    "owns the in-flight slots": re.compile(r"\bInFlight\(|_in_flight\.release\("),
}


def test_only_the_ledger_writes_disposals_counts_outcomes_and_releases_slots() -> None:
    offenders: list[str] = []
    for path in sorted((REPO / "pipeline").rglob("*.py")):
        relative = str(path.relative_to(REPO))
        if relative == ACCOUNTING:
            continue
        text = path.read_text()
        for what, pattern in ACCOUNTING_ONLY.items():
            uses = pattern.findall(text)
            if relative == "pipeline/store/journal.py" and what == "writes disposal_log":
                uses = uses[1:]  # its own definition
            if uses:
                offenders.append(f"{relative} {what}")
    assert offenders == []
    ledger = (REPO / ACCOUNTING).read_text()
    assert all(p.search(ledger) for p in ACCOUNTING_ONLY.values())


def test_only_the_journal_holds_disposal_log_sql() -> None:
    writers = [
        str(path.relative_to(REPO))
        for path in (REPO / "pipeline").rglob("*.py")
        if re.search(r"INSERT INTO disposal_log", path.read_text())
    ]
    assert writers == ["pipeline/store/journal.py"]


# --- small enough to read ---


def test_modules_are_small() -> None:
    long = {
        name: n
        for name, path in module_files().items()
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_functions_are_small() -> None:
    long: dict[str, int] = {}
    for name, path in module_files().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{name}.{node.name}"] = lines
    assert long == {}
