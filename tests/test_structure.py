"""The house: no import circles, no room too big to read.

The import graph of ``advbench`` and of each built-in plugin package is drawn with ``ast`` (nothing
is imported): an edge ``a -> b`` for every ``import b`` / ``from b import x`` in ``a`` (``from p import m``
is an edge to the module ``p.m`` when there is one). Module-level imports must form no cycle; nor
may they with the imports inside functions and under ``TYPE_CHECKING`` added (a lazy import is not
a licence for a circle: what both sides need belongs in a lower module). Importing a submodule
runs its package's ``__init__`` too; that implicit edge is not drawn.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "benchmark", ROOT / "plugins"]
PACKAGES = [
    "advbench",
    *sorted(p.name for p in (ROOT / "plugins").iterdir() if (p / "__init__.py").is_file()),
]

LIMIT = 400
"""Lines a module may have; data tables aside, a longer one is split by role."""
TOO_LONG: dict[str, str] = {
    # module (relative to its source root): why it is still longer than LIMIT
}


def _modules() -> dict[str, Path]:
    found = {}
    for source in SOURCES:
        for path in source.rglob("*.py"):
            parts = list(path.relative_to(source).with_suffix("").parts)
            if parts[0] not in PACKAGES:
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The module of ours ``name`` lives in (``a.b.c`` -> ``a.b`` when ``c`` is a name in it)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> tuple[set[str], set[str]]:
    """(module-level imports, imports in functions or under ``if TYPE_CHECKING``) of our modules."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    top: set[str] = set()
    lazy: set[str] = set()

    def targets(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        base = node.module or ""
        if node.level:
            parts = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*parts, base] if base else parts)
        return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                inner = True
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for name in targets(child):
                    owner = _owner(name)
                    if owner is not None and owner != module:
                        (lazy if inner else top).add(owner)
            visit(child, inner)

    visit(ast.parse(path.read_text()), False)
    return top, lazy


def _graphs() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    top, full = {}, {}
    for module, path in MODULES.items():
        t, lazy = _imports(module, path)
        top[module], full[module] = t, t | lazy
    return top, full


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def _describe(cycles: list[list[str]], graph: dict[str, set[str]]) -> str:
    return "; ".join(
        " ".join(f"{a} -> {b}" for a in cycle for b in sorted(graph[a] & set(cycle))) for cycle in cycles
    )


def test_the_graph_is_drawn() -> None:
    assert {"advbench", "advbench.api", "advbench_misranking.attack"} <= set(MODULES)
    top, _ = _graphs()
    assert "advbench.api" in top["advbench.data.images"]


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_circles(package: str) -> None:
    top, full = _graphs()
    for graph in (top, full):
        mine = {
            m: {d for d in deps if d.split(".")[0] == package}
            for m, deps in graph.items()
            if m.split(".")[0] == package
        }
        cycles = _cycles(mine)
        assert not cycles, _describe(cycles, mine)


def test_no_circles_across_packages() -> None:
    _, full = _graphs()
    cycles = _cycles(full)
    assert not cycles, _describe(cycles, full)


def test_no_module_is_too_long() -> None:
    lengths = {}
    for source in SOURCES:
        for path in source.rglob("*.py"):
            rel = path.relative_to(source).as_posix()
            if rel.split("/")[0] in PACKAGES:
                lengths[rel] = len(path.read_text().splitlines())
    long = {rel: n for rel, n in lengths.items() if n > LIMIT and rel not in TOO_LONG}
    assert not long, f"modules over {LIMIT} lines (split them by role): {long}"
    split = sorted(rel for rel in TOO_LONG if lengths.get(rel, 0) <= LIMIT)
    assert not split, f"no longer too long (or gone): drop them from TOO_LONG: {split}"
