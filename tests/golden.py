"""Golden files: what einsgrad writes for the curated specs and programs of the tests.

Explanations (text and LaTeX, both styles), programs (canonical text, gradients, Hessians,
their explanations) and generated source (every dialect, the standalone module) are rendered
into ``tests/golden/*.txt``, one entry per input under a ``=== key`` line. The suite
(``tests/test_golden.py``) renders them again and compares, so that a refactor changes
nothing silently; a change that is meant is written with ``python tests/golden.py --update``
and shows in the commit's diff.

The inputs are the curated lists of the tests themselves, read from their modules, so that
a spec added to a test is guarded here too.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

import einsgrad

HERE = Path(__file__).resolve().parent
FOLDER = HERE / "golden"
sys.path.insert(0, str(HERE))


def _values(entry) -> tuple:
    """A pytest.param's values, or the tuple itself."""
    return tuple(getattr(entry, "values", entry))


def curated_specs() -> list[tuple[str, str | None, dict | None]]:
    """(spec, names, sizes) of every curated spec of the explanation and codegen tests."""
    import test_codegen
    import test_explain
    import test_hardening_explain
    import test_matrix_calculus

    found: dict[tuple, None] = {}
    for spec, names, sizes, *_ in map(_values, test_explain.MATRIX_FORMS):
        found[(spec, names, _frozen(sizes))] = None
    for spec in test_hardening_explain.CURATED:
        found[(spec, None, None)] = None
    for spec, sizes, *_ in map(_values, test_matrix_calculus.CASES):
        found[(spec, None, _frozen(sizes))] = None
    for spec, _, sizes in map(_values, test_codegen.CURATED):
        found[(spec, None, _frozen(sizes))] = None
    return [(spec, names, dict(sizes) if sizes else None) for spec, names, sizes in found]


def curated_programs() -> list[str]:
    """The text of every curated program of the program tests."""
    import test_program
    import test_program_explain

    found = {test_program_explain.LINEAR: None, test_program_explain.QUADRATIC: None}
    for text, *_ in map(_values, test_program.TABLE):
        found[text] = None
    for text, _ in test_program.CURATED:
        found[text] = None
    for text in ("Y[i] = A[i,j]", "f = x[i] * x[i]", "f = X[i,i]", "f = X[i,j] * X[j,k] * X[k,i]"):
        found[text] = None
    return list(found)


def curated_sources() -> list[tuple[str, list, dict | None]]:
    """(spec, shapes, sizes) of the code generation tests' curated specs."""
    import test_codegen

    return [_values(entry) for entry in test_codegen.CURATED]


def _frozen(sizes):
    return None if not sizes else tuple(sorted(sizes.items()))


def _attempt(render: Callable[[], str]) -> str:
    """The rendered text, or the error a user would see (a refusal is pinned too)."""
    try:
        return render()
    except einsgrad.EinsumSpecError as error:
        return f"EinsumSpecError: {error}"


def explanations() -> Iterator[tuple[str, str]]:
    for spec, names, sizes in curated_specs():
        key = f"{spec} names={names} sizes={sizes}"
        for style in ("index", "differential"):
            yield f"{key} style={style}", _attempt(lambda: str(einsgrad.explain(spec, names, sizes=sizes, style=style)))
        yield f"{key} latex", _attempt(lambda: einsgrad.explain(spec, names, sizes=sizes).latex())


def programs() -> Iterator[tuple[str, str]]:
    for text in curated_programs():
        prog = einsgrad.program(text)
        lines = [str(prog)]
        for name in prog.inputs:
            lines.append(f"grad {name}: {_attempt(lambda: str(prog.grad(name)))}")
            if not prog.output_indices:
                lines.append(f"hessian {name}: {_attempt(lambda: str(prog.hessian(name)))}")
        yield text, "\n".join(lines)
        for name in prog.inputs:
            yield f"{text} explain {name}", _attempt(lambda: str(prog.explain(name)))
            yield f"{text} explain {name} latex", _attempt(lambda: prog.explain(name).latex())
            if not prog.output_indices:
                yield f"{text} explain {name} hessian", _attempt(lambda: str(prog.explain(name, style="hessian")))


def sources() -> Iterator[tuple[str, str]]:
    for spec, shapes, sizes in curated_sources():
        lin = einsgrad.compile(spec, sizes=sizes)
        key = f"{spec} shapes={shapes} sizes={sizes}"
        for backend in ("numpy", "torch", "jax", "dask"):
            yield f"{key} {backend}", lin.source(*shapes, backend=backend)
        yield f"{key} module", lin.module(*shapes)
        mixed = [np.float32] + [np.float64] * (len(shapes) - 1)
        yield f"{key} module float32 first", lin.module(*shapes, dtypes=mixed)


KINDS = {"explanations": explanations, "programs": programs, "sources": sources}


def render(kind: str) -> str:
    return "".join(f"=== {key}\n{text.rstrip()}\n" for key, text in KINDS[kind]())


def entries(text: str) -> dict[str, str]:
    """A golden file's entries by key."""
    found, key, lines = {}, None, []
    for line in text.splitlines():
        if line.startswith("=== "):
            if key is not None:
                found[key] = "\n".join(lines)
            key, lines = line[4:], []
        else:
            lines.append(line)
    if key is not None:
        found[key] = "\n".join(lines)
    return found


def path(kind: str) -> Path:
    return FOLDER / f"{kind}.txt"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="write the golden files anew")
    args = parser.parse_args()
    os.chdir(HERE.parent)
    for kind in KINDS:
        text = render(kind)
        if args.update:
            FOLDER.mkdir(exist_ok=True)
            path(kind).write_text(text, encoding="utf-8")
        same = path(kind).exists() and path(kind).read_text(encoding="utf-8") == text
        print(f"{kind}: {len(entries(text))} entries, {'written' if args.update else 'unchanged' if same else 'CHANGED'}")
