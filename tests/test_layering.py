"""The package's layering: no import circle among its modules, and no private name imported
from another module, function-level imports included. Read from the source with ``ast``.

``KNOWN`` lists what the code still does against the rule, while issue 12 removes it: the
test fails on anything new, and on an entry of ``KNOWN`` that is gone (so the list is exact
and only shrinks).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "einsgrad"

# (importing module, imported module, private name), and circles as sorted module tuples.
KNOWN_PRIVATE: set[tuple[str, str, str]] = {("__init__", "compiled", "_check_shapes")}
KNOWN_CIRCLES: set[tuple[str, ...]] = set()


def imports() -> dict[str, list[tuple[str, str | None]]]:
    """For each module, the package modules it imports and the names it takes from them
    (None for a whole module)."""
    found: dict[str, list[tuple[str, str | None]]] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        module = path.stem
        edges = found.setdefault(module, [])
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1 and node.module is None:  # from . import a, b
                    edges += [(alias.name, None) for alias in node.names]
                elif node.level == 1 or (node.module or "").startswith("einsgrad"):
                    name = node.module if node.level == 1 else node.module.partition(".")[2]
                    if not name:  # from einsgrad import x: x may be a module or a name
                        edges += [(alias.name, None) if (PACKAGE / f"{alias.name}.py").exists()
                                  else ("__init__", alias.name) for alias in node.names]
                    else:
                        edges += [(name, alias.name) for alias in node.names]
            elif isinstance(node, ast.Import):
                edges += [(alias.name.partition(".")[2] or "__init__", None)
                          for alias in node.names if alias.name.startswith("einsgrad")]
    return found


def private_imports(graph) -> set[tuple[str, str, str]]:
    return {(module, source, name) for module, edges in graph.items() for source, name in edges
            if name is not None and name.startswith("_") and not name.startswith("__") and source != module}


def circles(graph) -> set[tuple[str, ...]]:
    """Strongly connected groups of more than one module (``__init__`` and ``__main__``, the
    package's entry points, import what they expose and are left out)."""
    nodes = [m for m in graph if m not in ("__init__", "__main__")]
    edges = {m: {s for s, _ in graph[m] if s in nodes and s != m} for m in nodes}
    index, low, stack, on, groups, counter = {}, {}, [], set(), set(), [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
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
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.add(tuple(sorted(group)))

    for v in nodes:
        if v not in index:
            visit(v)
    return groups


def test_every_module_is_read():
    graph = imports()
    assert {"spec", "derive", "plan", "compiled", "explanation"} <= set(graph)
    assert ("errors", "EinsumSpecError") in graph["spec"]


def test_no_private_name_crosses_modules():
    found = private_imports(imports())
    assert found - KNOWN_PRIVATE == set(), "a private name imported from another module"
    assert KNOWN_PRIVATE - found == set(), "gone from the code: remove it from KNOWN_PRIVATE"


def test_no_import_circle():
    found = circles(imports())
    assert found - KNOWN_CIRCLES == set(), "modules that import each other"
    assert KNOWN_CIRCLES - found == set(), "gone from the code: remove it from KNOWN_CIRCLES"


def test_the_checks_see_a_circle_and_a_private_name():
    """The two checks on a made-up graph, so that neither passes by seeing nothing."""
    graph = {"a": [("b", "_hidden")], "b": [("c", None)], "c": [("a", "public")], "d": [("a", None)]}
    assert circles(graph) == {("a", "b", "c")}
    assert private_imports(graph) == {("a", "b", "_hidden")}
