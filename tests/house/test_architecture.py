"""The house rules of docs/architecture.md, checked on the code itself: the import graph of the
package (built with ``ast``, function-local imports included) has no cycle, no module imports
another's ``_private`` name, imports go only down the layering, ``io/`` imports only ``errors``
and ``quants``, and no file is over 600 lines."""

import ast
import os
from typing import Dict, List, Set, Tuple

import pytest
from tests.support.paths import ROOT

PKG = os.path.join(ROOT, "qtoolkit")
MAX_LINES = 600

# room -> rank; an import must go to a lower rank or stay in its own room (docs/architecture.md)
RANKS = {
    "qtoolkit.errors": 0, "qtoolkit._version": 0, "qtoolkit.units": 1,
    "qtoolkit._clib": 1, "qtoolkit._build": 1,
    "qtoolkit.quants": 2, "qtoolkit.matmul": 2.5,
    "qtoolkit.io": 3, "qtoolkit.presets": 3,
    "qtoolkit.converter": 4,
    "qtoolkit.model": 5,
    "qtoolkit.imatrix": 6, "qtoolkit.alloc": 6, "qtoolkit.sizing": 6,
    "qtoolkit.cli": 7,
    "qtoolkit": 8, "qtoolkit.__main__": 8,
}



def _modules() -> Dict[str, str]:
    mods = {}
    for d, _, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(d, f)
                name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                mods[name[: -len(".__init__")] if name.endswith(".__init__") else name] = path
    return mods


MODULES = _modules()


def _imports(name: str, path: str) -> List[Tuple[str, str]]:
    """(imported module, imported name or "") of every import in the file, nested ones included."""
    is_pkg = path.endswith("__init__.py")
    out = []
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            out += [(a.name, "") for a in node.names if a.name.split(".")[0] == "qtoolkit"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "qtoolkit":
                continue
            for a in node.names:
                sub = f"{mod}.{a.name}"
                out.append((sub, "") if sub in MODULES else (mod, a.name))
    return out


def _graph() -> Dict[str, Set[str]]:
    return {m: {i for i, _ in _imports(m, p) if i in MODULES and i != m} for m, p in MODULES.items()}


def _room(mod: str) -> str:
    parts = mod.split(".")
    for n in (2, 1):
        key = ".".join(parts[:n])
        if key in RANKS and (n == 1 or len(parts) >= 2):
            return key
    raise KeyError(mod)


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    found: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    assert len(graph) > 40 and sum(map(len, graph.values())) > 100   # the graph really was built
    assert _cycles(graph) == []


def test_a_cycle_would_be_found():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_a_private_name_of_another():
    bad = [(m, mod, n) for m, p in MODULES.items() for mod, n in _imports(m, p)
           if n.startswith("_") and not n.startswith("__") and mod != m]
    assert bad == []


def test_every_module_belongs_to_a_room():
    for m in MODULES:
        assert _room(m) in RANKS, m


def test_imports_go_down_the_layering():
    bad = []
    for m, deps in _graph().items():
        if m.endswith("._build"):
            continue
        for d in deps:
            a, b = _room(m), _room(d)
            if a != b and RANKS[b] >= RANKS[a]:
                bad.append(f"{m} ({a}) imports {d} ({b})")
    assert bad == []


def test_io_imports_only_errors_and_quants():
    allowed = {"qtoolkit.errors", "qtoolkit.quants"}
    bad = [(m, d) for m, deps in _graph().items() if _room(m) == "qtoolkit.io"
           for d in deps if _room(d) != "qtoolkit.io" and d not in allowed]
    assert bad == []


def test_nothing_inside_the_package_imports_its_facade():
    bad = [m for m, deps in _graph().items() if "qtoolkit" in deps and m != "qtoolkit.__main__"]
    assert bad == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_python_file_is_over_600_lines(name):
    with open(MODULES[name], encoding="utf-8") as f:
        assert sum(1 for _ in f) <= MAX_LINES
