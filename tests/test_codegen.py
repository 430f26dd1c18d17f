"""Generated code: ``Einsum.module`` written to disk and imported, ``source()``'s pullback pair,
and injection safety (no user text reaches the code; nothing of a hostile spec runs)."""

from __future__ import annotations

import ast
import builtins
import importlib.util
import io
import itertools
import keyword
import re
import tokenize

import numpy as np
import pytest
from hypothesis import given

import einsgrad
from einsgrad import EinsumSpecError
from strategies import ALL_DTYPES, LOW_DTYPES, einsum_cases, extended_cases

_counter = itertools.count()

CURATED = [
    pytest.param("ik,jk->ij", [(4, 3), (5, 3)], None, id="linear"),
    pytest.param("ab,bc,cd,de->ae", [(2, 3), (3, 4), (4, 5), (5, 2)], None, id="chain"),
    pytest.param("abc,cde,efa->bdf", [(2, 3, 4), (4, 3, 2), (2, 5, 2)], None, id="tensor network"),
    pytest.param("bi,ij,bj->b", [(3, 4), (4, 5), (3, 5)], None, id="bilinear"),
    pytest.param("ii->", [(3, 3)], None, id="trace"),
    pytest.param("ii->i", [(3, 3)], None, id="diagonal"),
    pytest.param("ij->i", [(3, 4)], None, id="row sum"),
    pytest.param("j->ij", [(4,)], {"i": 3}, id="bias broadcast"),
    pytest.param("i->ii", [(3,)], {}, id="diagonal placement"),
    pytest.param("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)], None, id="broadcast batch"),
    pytest.param("ij,ij->ij", [(3, 1), (3, 4)], None, id="size-1 broadcast"),
    pytest.param(",i->i", [(), (3,)], None, id="scalar"),
    pytest.param("...->", [(2, 3)], {}, id="sum over the batch"),
]


def import_module(directory, text: str):
    """Writes ``text`` to a fresh file and imports it in a namespace of its own."""
    name = f"einsgrad_generated_{next(_counter)}"
    path = directory / f"{name}.py"
    path.write_text(text, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def imported_modules(text: str) -> set[str]:
    """Top-level names of every module the text imports."""
    names = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module.split(".")[0])
    return names


# Every identifier generated code may hold: the helpers' own, numpy's that codegen calls,
# the public and private functions, and names the planner makes (x0, t3, dx1, dt4).
ALLOWED = {
    "np", "numpy", "lib", "stride_tricks", "as_strided", "_place", "z", "shape", "axes", "out",
    "view", "strides", "zeros", "dtype", "tuple", "sum", "i",
    "forward", "vjp", "forward_saving", "pullback", "_forward", "_vjp", "_forward_saving",
    "_pullback", "g", "y", "saved",
    "T", "transpose", "reshape", "swapaxes", "diagonal", "axis", "array", "broadcast_to", "dot",
    "ascontiguousarray", "copy", "multiply", "einsum", "real",
    "_sum", "x", "k", "n", "len", "ndim", "size", "char", "flags", "c_contiguous", "range", "kept",
    "rows", "cols", "int", "prod", "ones",
    "_check", "_check_cotangent", "ValueError", "str", "join", "s",  # the shape check
    "_gather_index", "perm", "swap", "index", "arange", "take", "ravel", "writeable",  # gathers (einsgrad.gathers)
}
# planner names, shape-generic code's sizes (n0), the check's operand shapes (s0), dtype names,
# a function's gather indices (_vjp_take0)
PLANNER_NAME = re.compile(r"(x|t|r|dx|dt|n|s)\d+|(float|complex|u?int)\d+|bool|_[a-z_]+_take\d+")
# the check's message: the canonical spec, shapes of integers and size names
CHECK_MESSAGE = re.compile(r"einsum '[a-zA-Z,.>-]*' takes operands of shapes [n0-9(), ]*; got |, |"
                           r"the cotangent g has shape | but the output has ")


def identifiers(text: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.keyword):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.update(filter(None, (node.name, node.asname)))
    return {part for name in names for part in name.split(".")}


def string_constants(text: str) -> list[str]:
    """String literals other than docstrings."""
    tree = ast.parse(text)
    docstrings = {id(body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and (body := node.body)
                  and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def assert_made_of_safe_parts(text: str) -> None:
    """Identifiers from the allowed set, strings only einsum subscripts, ASCII outside comments."""
    unexpected = {n for n in identifiers(text) if n not in ALLOWED and not keyword.iskeyword(n)
                  and not PLANNER_NAME.fullmatch(n)}
    assert not unexpected, unexpected
    for value in string_constants(text):
        assert re.fullmatch(r"[a-zA-Z,>-]*", value) or CHECK_MESSAGE.fullmatch(value), value
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type != tokenize.COMMENT:
            assert token.string.isascii(), token
    assert imported_modules(text) == {"numpy"}


def check_module(directory, spec, shapes, dtypes, sizes=None, seed=0):
    """The module's four functions give the compiled object's values, and numpy's."""
    compiled = einsgrad.compile(spec, sizes=sizes)
    text = compiled.module(*shapes, dtypes=dtypes)
    assert_made_of_safe_parts(text)
    module = import_module(directory, text)
    rng = np.random.default_rng(seed)
    operands = [np.asarray(rng.standard_normal(s) + (1j * rng.standard_normal(s) if np.dtype(d).kind == "c" else 0),
                           dtype=d) for s, d in zip(shapes, dtypes)]
    y = compiled(*operands)
    y_module = module.forward(*operands)
    np.testing.assert_array_equal(y_module, y)
    assert y_module.dtype == y.dtype
    g = np.asarray(rng.standard_normal(y.shape), dtype=y.dtype)
    expected = compiled.vjp(g, *operands)
    for got, want in zip(module.vjp(g, *operands), expected):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype
    # The saving pair is the compiled object's own, bit for bit; against the forward and the vjp
    # it agrees within rounding: its forward may copy an intermediate that the pullback reads as
    # stored, and BLAS may sum a copy in another order than the view (1 ulp, found by hypothesis).
    y_saved, saved = module.forward_saving(*operands)
    y_pair, saved_pair = compiled.forward_saving(*operands)
    np.testing.assert_array_equal(y_saved, y_pair)
    tol = 1e-4 if any(np.dtype(d) in LOW_DTYPES for d in dtypes) else 1e-12
    np.testing.assert_allclose(y_saved, y, rtol=tol, atol=tol)
    pulled = compiled.pullback(g, operands, saved_pair)
    for got, want, near in zip(module.pullback(g, *saved), pulled, expected):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype == near.dtype
        np.testing.assert_allclose(got, near, rtol=tol, atol=tol)
    if sizes is None:  # not in the extended notation (sizes={} marks those that need none)
        low = any(np.dtype(d) in LOW_DTYPES for d in dtypes)
        tol = 1e-4 if low else 1e-12
        np.testing.assert_allclose(y_module, np.einsum(spec, *operands), rtol=tol, atol=tol)
    return text


@pytest.mark.parametrize("spec, shapes, sizes", CURATED)
def test_curated_modules(tmp_path, spec, shapes, sizes):
    text = check_module(tmp_path, spec, shapes, ["float64"] * len(shapes), sizes)
    assert f"einsum '{spec}'" in text.splitlines()[0]  # the header names the spec and the shapes
    assert ", ".join(map(str, map(tuple, shapes))) in text


@given(einsum_cases(dtypes=ALL_DTYPES))
def test_hypothesis_modules(tmp_path_factory, case):
    check_module(tmp_path_factory.mktemp("gen"), case.spec, case.shapes, case.dtypes, seed=case.seed)


@given(extended_cases())
def test_hypothesis_extended_modules(tmp_path_factory, case):
    check_module(tmp_path_factory.mktemp("gen"), case.spec, case.shapes, case.dtypes, case.sizes,
                 seed=case.seed)


def test_many_batch_dimensions_stay_in_comments(tmp_path):
    """Past 52 labels, binding makes labels beyond ASCII: they appear only in comments, as
    escapes (no label reaches the source as it is)."""
    shapes = [(1,) * 53 + (2,)] * 2
    text = check_module(tmp_path, "...i,...i->...", shapes, ["float64"] * 2)
    assert text.isascii()
    assert all("\\u01" not in line.partition("#")[0] for line in text.splitlines())
    assert any("\\u01" in line.partition("#")[2] for line in text.splitlines())


def test_single_dtype_applies_to_every_operand(tmp_path):
    text = einsgrad.compile("ik,jk->ij").module((2, 3), (4, 3), dtypes="float32")
    assert "dtypes float32, float32" in text


@pytest.mark.parametrize("dtypes, message", [
    pytest.param("not-a-dtype", r"dtypes must be a dtype or one dtype per operand", id="unknown"),
    pytest.param(["float64"], r"names 2 operand\(s\) but 1 dtypes", id="too few"),
    pytest.param("U3", r"operand 0 has dtype <U3, which is not numeric", id="not numeric"),
])
def test_bad_dtypes_are_refused(dtypes, message):
    with pytest.raises(EinsumSpecError, match=message):
        einsgrad.compile("ik,jk->ij").module((2, 3), (4, 3), dtypes=dtypes)


def test_module_without_shapes_needs_them_for_the_batch_rank():
    """Without shapes a module is shape-generic (tests/test_vendor.py), but the rank of '...'
    must come from some shapes."""
    with pytest.raises(EinsumSpecError, match=r"module\(\) needs shapes for the batch rank of '\.\.\.'"):
        einsgrad.compile("...ik,jk->...ij").module()


def test_source_shows_the_pullback_pair():
    """``source()``: forward, vjp, and the forward that saves with its pullback."""
    rng = np.random.default_rng(4)
    X, W, G = rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.standard_normal((3, 5))
    lin = einsgrad.compile("ik,jk->ij")
    source = lin.source((3, 4), (5, 4))
    for name in ("forward", "vjp", "forward_saving", "pullback"):
        assert f"\ndef {name}(" in source
    namespace: dict = {}
    exec(compile(source, "<source>", "exec"), namespace)  # noqa: S102
    y, *saved = namespace["forward_saving"](X, W)
    np.testing.assert_allclose(y, X @ W.T, rtol=1e-12)
    dX, dW = namespace["pullback"](G, *saved)
    np.testing.assert_allclose(dX, G @ W, rtol=1e-12)
    np.testing.assert_allclose(dW, G.T @ X, rtol=1e-12)


# -- injection -------------------------------------------------------------------------------

HOSTILE = [
    pytest.param('ij->i"; import builtins; builtins.EINSGRAD_SENTINEL = 1 #', id="quote and code"),
    pytest.param("ij->i'''; import builtins; builtins.EINSGRAD_SENTINEL = 1 #", id="triple quote"),
    pytest.param("ij\n->i", id="newline"),
    pytest.param("ij->i\nimport builtins; builtins.EINSGRAD_SENTINEL = 1", id="newline and code"),
    pytest.param("__import__('builtins').setattr", id="dunder import"),
    pytest.param("ij->i#", id="comment"),
    pytest.param("ij->i;j", id="semicolon"),
    pytest.param("ij->i\\", id="backslash"),
    pytest.param("ij->i\r", id="carriage return"),
    pytest.param("ij->i\x00", id="NUL"),
    pytest.param("ij->\u0131", id="a non-ASCII letter"),
    pytest.param("i_j->i", id="underscore"),
    pytest.param("i1->i", id="digit"),
]


@pytest.mark.parametrize("spec", HOSTILE)
def test_hostile_specs_are_refused_and_nothing_runs(spec):
    """Every character outside letters, ',', '->', '...' and spaces is refused by the parser,
    before any code is generated, with the caret under it."""
    for attempt in (lambda: einsgrad.compile(spec).module((2, 3)),
                    lambda: einsgrad.compile(spec).source((2, 3)),
                    lambda: einsgrad.jacobian_spec(spec, 0),
                    lambda: einsgrad.compile(spec, shapes=[(2, 3)]).jacobian(np.ones((2, 3)), wrt=0)):
        with pytest.raises(EinsumSpecError, match=r"is not allowed in a spec|'\.' may only|\^"):
            attempt()
    assert not hasattr(builtins, "EINSGRAD_SENTINEL")


def test_hostile_sizes_are_refused():
    """A ``sizes=`` key is checked against the spec's labels."""
    with pytest.raises(EinsumSpecError, match=r"not a label of the spec"):
        einsgrad.compile("j->ij", sizes={"i": 2, "x'); import os; ('": 3})
    assert not hasattr(builtins, "EINSGRAD_SENTINEL")
