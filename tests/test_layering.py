"""The package's layering, read from its source with ``ast`` (function-level imports too):
no import circle among its modules, no private name taken from another module (imported, or
read as ``module._name``), no private attribute read of another module's object
(``prog._cotangent``), and opt_einsum imported by the path search alone."""

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


NAMEDTUPLE_API = frozenset({"_make", "_replace", "_asdict", "_fields", "_field_defaults"})
"""Attributes of every NamedTuple that are public despite their underscore (it keeps them
apart from field names)."""


def foreign_private_reads(tree: ast.Module) -> set[str]:
    """Each ``value._name`` in a module (``self._name`` too) whose ``_name`` the module does not
    define itself (as a function, class or assigned name or attribute), so a private attribute
    of some other module's object; :data:`NAMEDTUPLE_API` aside. Dunders are public."""
    own = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            own.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            own.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            own.add(node.attr)
    return {ast.unparse(node) for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load)
            and node.attr.startswith("_") and not node.attr.startswith("__")
            and node.attr not in own and node.attr not in NAMEDTUPLE_API}


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


def test_no_private_attribute_of_another_modules_object_is_read():
    reads = {path.stem: foreign_private_reads(ast.parse(path.read_text(encoding="utf-8")))
             for path in sorted(PACKAGE.glob("*.py"))}
    assert {module: found for module, found in reads.items() if found} == {}


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


def test_the_attribute_check_sees_a_foreign_private_read():
    """A module's own private attributes and NamedTuple's ``_replace`` pass; another's do not."""
    tree = ast.parse("class A:\n    def _own(self):\n        self._seen = 1\n\n"
                     "def f(a, key, prog):\n    a._own(), a._seen, key._replace(), a.__dict__\n"
                     "    return prog._cotangent, prog._new_name(None)\n")
    assert foreign_private_reads(tree) == {"prog._cotangent", "prog._new_name"}
