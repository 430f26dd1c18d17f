"""The package's layering, read from its source: every import of one einsgrad module by
another (function-level ones included) forms no circle and takes no private name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "einsgrad"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py"))
OPEN = {"__init__": "imports compiled._check_shapes (issue 12, the numeric half)"}
"""Modules known to break the rule, and why: strict, so that the fix removes the entry."""


def imports(module: str) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for each import of a package module."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            for alias in node.names:
                if node.module is None:  # from . import plan
                    found.append((alias.name, None, node.lineno))
                else:
                    found.append((node.module, alias.name, node.lineno))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("einsgrad."):
            found.extend((node.module.split(".")[1], a.name, node.lineno) for a in node.names)
        elif isinstance(node, ast.Import):
            found.extend((a.name.split(".")[1], None, node.lineno) for a in node.names
                         if a.name.startswith("einsgrad."))
    return found


@pytest.mark.parametrize("module", [
    pytest.param(m, marks=pytest.mark.xfail(reason=OPEN[m], strict=True)) if m in OPEN else m
    for m in MODULES])
def test_no_private_name_crosses_modules(module):
    private = [f"line {line}: {name} from {source}" for source, name, line in imports(module)
               if name is not None and name.startswith("_") and source in MODULES]
    assert not private, f"einsgrad/{module}.py imports private names: {private}"


def test_no_import_circle():
    graph = {m: {source for source, _, _ in imports(m) if source in MODULES and source != m}
             for m in MODULES}
    done: set[str] = set()

    def visit(module, path):
        if module in path:
            pytest.fail("import circle: " + " -> ".join([*path[path.index(module):], module]))
        if module in done:
            return
        for source in sorted(graph[module]):
            visit(source, [*path, module])
        done.add(module)

    for module in MODULES:
        visit(module, [])
