"""The package's layering, read from its source with ``ast`` (function-level imports too):
no import circle among its modules, no private name taken from another module (imported, or
read as ``module._name``), and opt_einsum imported by the path search alone."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "einsgrad"


def imports() -> dict[str, list[tuple[str, str | None]]]:
    """For each module, the package modules it uses and the names it takes from them (None
    for a whole module); ``module._name`` reads of an imported module count as taking it."""
    found: dict[str, list[tuple[str, str | None]]] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        module, tree = path.stem, ast.parse(path.read_text(encoding="utf-8"))
        edges = found.setdefault(module, [])
        aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1 and node.module is None:  # from . import a, b
                    edges += [(alias.name, None) for alias in node.names]
                    aliases.update((alias.asname or alias.name, alias.name) for alias in node.names)
                elif node.level == 1 or (node.module or "").startswith("einsgrad"):
                    name = node.module if node.level == 1 else node.module.partition(".")[2]
                    if not name:  # from einsgrad import x: x is a module or a name
                        edges += [(alias.name, None) if (PACKAGE / f"{alias.name}.py").exists()
                                  else ("__init__", alias.name) for alias in node.names]
                    else:
                        edges += [(name, alias.name) for alias in node.names]
            elif isinstance(node, ast.Import):
                edges += [(alias.name.partition(".")[2] or "__init__", None)
                          for alias in node.names if alias.name.startswith("einsgrad")]
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                edges.append((aliases[node.value.id], node.attr))
    return found


def private_imports(graph) -> set[tuple[str, str, str]]:
    """(module, the module it takes from, the private name) for each crossing."""
    return {(module, source, name) for module, edges in graph.items() for source, name in edges
            if name is not None and name.startswith("_") and not name.startswith("__") and source != module}


def circles(graph) -> set[tuple[str, ...]]:
    """Strongly connected groups of more than one module (``__init__`` and ``__main__``, the
    package's entry points, import what they expose and are left out)."""
    nodes = [m for m in graph if m not in ("__init__", "__main__")]
    edges = {m: {s for s, _ in graph[m] if s in nodes and s != m} for m in nodes}
    index, low, stack, on, groups = {}, {}, [], set(), set()

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while not group or group[-1] != v:
                group.append(stack.pop())
                on.discard(group[-1])
            if len(group) > 1:
                groups.add(tuple(sorted(group)))

    for v in nodes:
        if v not in index:
            visit(v)
    return groups


def test_every_module_is_read():
    graph = imports()
    assert {"spec", "derive", "plan", "compiled", "explanation", "algebra"} <= set(graph)
    assert ("errors", "EinsumSpecError") in graph["spec"]


def test_no_private_name_crosses_modules():
    assert private_imports(imports()) == set()


def test_no_import_circle():
    assert circles(imports()) == set()


def test_the_path_search_alone_imports_opt_einsum():
    users = [p.stem for p in sorted(PACKAGE.glob("*.py")) if "import opt_einsum" in p.read_text(encoding="utf-8")]
    assert users == ["paths"]


def test_the_checks_see_a_circle_and_a_private_name():
    """The checks on a made-up graph, so that none of them passes by seeing nothing."""
    graph = {"a": [("b", "_hidden")], "b": [("c", None)], "c": [("a", "public")], "d": [("a", None)]}
    assert circles(graph) == {("a", "b", "c")}
    assert private_imports(graph) == {("a", "b", "_hidden")}
