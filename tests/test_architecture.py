"""The shape DESIGN.md promises: proxy/ never imports analytics/, and no module imports itself back through
others (imports inside functions count too: a late import is still a dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("proxy", "analytics")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The project modules a module imports, anywhere in it (`from proxy import x` names proxy.x if it is one)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found.update(name for name in names if name in known)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    known = set(paths)
    return {name: imports_of(path, known) - {name} for name, path in paths.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_proxy_imports_nothing_from_analytics() -> None:
    graph = import_graph()
    crossings = sorted(
        f"{source} -> {target}"
        for source, targets in graph.items()
        if source.startswith("proxy")
        for target in targets
        if target.startswith("analytics")
    )
    # The CLI is the composition root: it hands analytics in (sinks, routes, commands) and may import it.
    assert [c for c in crossings if not c.startswith("proxy.cli ")] == []


def test_there_is_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


@pytest.mark.parametrize("cycle", [{"a": {"b"}, "b": {"a"}}, {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}])
def test_the_cycle_finder_finds_cycles(cycle: dict[str, set[str]]) -> None:
    assert cycles(cycle) != []


def test_every_module_opens_with_a_docstring_and_stays_small() -> None:
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            if path.name != "__init__.py":
                assert ast.get_docstring(tree), f"{path.name} has no opening docstring"
            assert len(path.read_text().splitlines()) <= 300, f"{path.name} is over 300 lines"
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef):
                    size = (node.end_lineno or node.lineno) - node.lineno + 1
                    assert size <= 160, f"{path.name}: class {node.name} has {size} lines"
