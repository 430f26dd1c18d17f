"""The numeric modules' layering, read from their source: imports at any depth (function-level
ones included) form no circle, and no private name is taken from another module.

The symbolic modules (explanation, programs, program_explanation, cli) join this list when
issue 12's symbolic half lands.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "einsgrad"
NUMERIC = ("__init__", "backends", "codegen", "compiled", "derive", "errors", "host", "jax", "lowering",
           "paths", "plan", "report", "shapes", "signature", "slicing", "spec", "steps", "torch")


def imports(module: str) -> tuple[set[str], list[str]]:
    """The package modules ``module`` imports anywhere in its source, and every private name it
    takes from one (``from .x import _y`` or ``x._y`` of an imported module ``x``)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found, private, aliases = set(), [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("einsgrad")):
            base = (node.module or "").removeprefix("einsgrad").lstrip(".").split(".")[0]
            for alias in node.names:
                if not base:  # from . import x
                    found.add(alias.name)
                    aliases.add(alias.asname or alias.name)
                elif alias.name.startswith("_"):
                    private.append(f"{base}.{alias.name}")
            if base:
                found.add(base)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("einsgrad."))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            private.append(f"{node.value.id}.{node.attr}")
    return found - {module}, private


@pytest.mark.parametrize("module", NUMERIC)
def test_no_private_name_crosses_modules(module):
    assert imports(module)[1] == []


def test_numeric_modules_import_no_circle():
    graph = {m: imports(m)[0] & set(NUMERIC) for m in NUMERIC}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import circle: {' -> '.join(path + (module,))}"
        if module not in done:
            for imported in sorted(graph[module]):
                visit(imported, path + (module,))
            done.add(module)

    for module in NUMERIC:
        visit(module, ())


def test_the_path_optimizer_alone_imports_opt_einsum():
    users = [m for m in NUMERIC if "import opt_einsum" in (PACKAGE / f"{m}.py").read_text()]
    assert users == ["paths"]
