"""The sandbox's modules import one way: the app on top, the handlers below it, the college
at the bottom. Every import counts, at module level, inside functions and under
``if TYPE_CHECKING:``, because each one is a dependency a reader has to follow."""

from __future__ import annotations

import ast
from pathlib import Path

import integration_pipelines.sandbox as sandbox_package

SANDBOX_DIR = Path(sandbox_package.__file__).resolve().parent
PACKAGE = "integration_pipelines.sandbox"

# Highest first. A module may import its own layer or one below it, never one above it.
LAYERS: list[tuple[str, set[str]]] = [
    ("entry", {"__init__", "cli"}),  # the public API and the click group: they start the app
    ("app", {"server"}),  # the ASGI app: routing, faults, limits, running it
    ("handlers", {"moodle", "zoho", "bulk", "control", "mutate"}),  # what answers a request
    # The college (generator, Zoho fields, config) and plain helpers that import nothing above.
    ("college", {"college", "zoho_fields", "config", "phpparams", "asgi"}),
]


def _targets(dotted: str, names: list[str], modules: set[str]) -> set[str]:
    """Modules of the package an import names; ``dotted`` is relative to the package ("" = itself)."""
    head = dotted.split(".")[0]
    if head:
        return {head if head in modules else "__init__"}
    return {n if n in modules else "__init__" for n in names}


def import_graph(directory: Path, package: str) -> dict[str, set[str]]:
    """``{module: modules of the same package it imports}`` for every ``*.py`` in ``directory``.

    ``ast.walk`` visits the whole tree, so imports inside functions and TYPE_CHECKING blocks
    count. ``from . import x`` is an edge to ``x`` when ``x`` is a module of the package, else
    to ``__init__``; imports of other packages are ignored.
    """
    modules = {p.stem for p in directory.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name in sorted(modules):
        tree = ast.parse((directory / f"{name}.py").read_text(), filename=f"{name}.py")
        edges: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == package or alias.name.startswith(package + "."):
                        edges |= _targets(alias.name[len(package) + 1 :], [], modules)
            elif isinstance(node, ast.ImportFrom):
                names = [a.name for a in node.names]
                if node.level == 1:
                    edges |= _targets(node.module or "", names, modules)
                elif node.level == 0 and node.module and (node.module + ".").startswith(package + "."):
                    edges |= _targets(node.module[len(package) + 1 :], names, modules)
                # level >= 2 leaves the package: not an edge inside it
        edges.discard(name)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None."""
    state: dict[str, str] = {}  # "open" while on the path, "done" after
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_function_level_and_type_checking_imports(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .top import Top\n")
    (pkg / "top.py").write_text("from .low import Low\n\nclass Top: ...\n")
    (pkg / "low.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from ..elsewhere import thing\n"
        "if TYPE_CHECKING:\n"
        "    from pkg.top import Top\n"
        "def f():\n"
        "    from . import helper, NAME\n"
        "    import pkg.helper\n"
        "class Low: ...\n"
    )
    (pkg / "helper.py").write_text("")
    graph = import_graph(pkg, "pkg")
    assert graph == {"__init__": {"top"}, "top": {"low"}, "low": {"top", "helper", "__init__"}, "helper": set()}
    assert find_cycle(graph) == ["__init__", "top", "low", "__init__"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_sandbox_module_has_a_layer():
    modules = {p.stem for p in SANDBOX_DIR.glob("*.py")}
    placed = [m for _layer, members in LAYERS for m in members]
    assert len(placed) == len(set(placed)), "a module sits in two layers"
    assert set(placed) == modules, "place new modules in LAYERS (and drop removed ones)"


def test_sandbox_imports_have_no_cycle():
    assert find_cycle(import_graph(SANDBOX_DIR, PACKAGE)) is None


def test_no_sandbox_module_imports_one_above_it():
    rank = {m: i for i, (_layer, members) in enumerate(LAYERS) for m in members}  # 0 = top
    layer = {m: name for name, members in LAYERS for m in members}
    upward = [
        f"{module} ({layer[module]}) imports {target} ({layer[target]})"
        for module, targets in import_graph(SANDBOX_DIR, PACKAGE).items()
        for target in sorted(targets)
        if rank[target] < rank[module]
    ]
    assert upward == []
