"""No import cycles between the modules of ``rdt/``.

Every module's imports are read with ``ast`` (nothing is imported): ``import rdt.x``, ``from rdt.x import y`` (an
edge to ``rdt.x.y`` when ``y`` is a submodule, else to ``rdt.x``) and relative imports, wherever they stand, at
module level, inside functions or under ``if TYPE_CHECKING:``. Importing a submodule also runs its packages'
``__init__`` files; those implicit edges are left out (otherwise every package whose ``__init__`` imports one of its
submodules would be a cycle), while an explicit import of a package (``from rdt.data import TRAIN_FORMAT``) is an
edge to it like any other.

The rule: **every import counts, lazy (function-level) ones too.** A cycle hidden behind a function-level import is
still two modules that need each other (neither can be read, tested or fingerprinted alone; ``rdt.fingerprint``
follows lazy imports as well), and moving an import into a function is no fix. The test names each cycle, its
edges with their file and line, and whether an edge is lazy.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "rdt"


@dataclass(frozen=True)
class Edge:
    target: str
    path: Path
    line: int
    lazy: bool  # inside a function (or a class body), i.e. not run when the module is imported

    def __str__(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}{' (lazy)' if self.lazy else ''}"


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module under rdt/ (a package by its name, e.g. ``rdt.data``)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The module ``name`` names, or the module holding it (``rdt.data.TRAIN_FORMAT`` -> ``rdt.data``)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path, known: dict[str, Path]) -> list[Edge]:
    """The rdt modules ``module`` imports, one edge per imported name."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    lazy_lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            lazy_lines.update(n.lineno for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)))
    edges = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            names = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in known else origin for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] != "rdt":
                continue
            target = _resolve(name, known)
            if target is not None and target != module:
                edges.append(Edge(target, path, node.lineno, node.lineno in lazy_lines))
    return edges


def import_graph() -> dict[str, dict[str, Edge]]:
    """module -> {imported module: the first import of it (a module-level one when there is one)}."""
    known = modules()
    graph: dict[str, dict[str, Edge]] = {}
    for module, path in known.items():
        out: dict[str, Edge] = {}
        for edge in sorted(_imports(module, path, known), key=lambda e: (e.lazy, e.line)):
            out.setdefault(edge.target, edge)
        graph[module] = out
    return graph


def find_cycles(graph: dict[str, dict[str, Edge]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan), as a closed path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, {})):
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
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_through(graph, set(c), c[0]) for c in components]


def _cycle_through(graph: dict[str, dict[str, Edge]], members: set[str], start: str) -> list[str]:
    """A shortest closed path from ``start`` back to it inside one strongly connected component."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w not in members:
                    continue
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if w not in previous:
                    previous[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start}")


def describe(graph: dict[str, dict[str, Edge]], cycle: list[str]) -> str:
    steps = [f"  {a} -> {b}  ({graph[a][b]})" for a, b in zip(cycle, cycle[1:])]
    return " -> ".join(cycle) + "\n" + "\n".join(steps)


def test_rdt_has_no_import_cycles():
    graph = import_graph()
    cycles = find_cycles(graph)
    assert not cycles, "import cycles inside rdt/ (lazy imports count, see this test's docstring):\n" + "\n".join(
        describe(graph, c) for c in cycles
    )


def test_the_cycle_finder_finds_a_lazy_cycle_and_resolves_submodules(tmp_path):
    """The checker itself: ``from rdt.a import b`` is an edge to the submodule rdt.a.b, a lazy import is an edge."""
    known = {"rdt.a": tmp_path / "a.py", "rdt.a.b": tmp_path / "b.py", "rdt.c": tmp_path / "c.py"}
    known["rdt.a"].write_text("from rdt.a import b\nfrom rdt.c import X\n")
    known["rdt.a.b"].write_text("def f():\n    from rdt import c\n")
    known["rdt.c"].write_text("X = 1\n")
    graph = {m: {e.target: e for e in _imports(m, p, known)} for m, p in known.items()}
    assert set(graph["rdt.a"]) == {"rdt.a.b", "rdt.c"} and graph["rdt.a.b"]["rdt.c"].lazy
    assert find_cycles(graph) == []
    known["rdt.c"].write_text("import rdt.a.b\n")
    graph = {m: {e.target: e for e in _imports(m, p, known)} for m, p in known.items()}
    assert find_cycles(graph) == [["rdt.a.b", "rdt.c", "rdt.a.b"]]


def test_no_module_inside_rdt_is_over_500_lines():
    """One module, one job (issue 22): a module that grows past 500 lines is doing several and gets split."""
    rdt = Path(__file__).resolve().parents[1] / "rdt"
    long = {str(p.relative_to(rdt)): n for p in rdt.rglob("*.py") if (n := len(p.read_text().splitlines())) > 500}
    assert not long, long
