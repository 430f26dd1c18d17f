"""Vendorable layers: ``Einsum.module(backend=...)`` written to a file, imported, and run against
each framework's own einsum and autograd; shape-generic modules at two batch sizes, exact-shape
ones refusing other shapes; the text made only of safe parts."""

from __future__ import annotations

import io
import re
import tokenize

import numpy as np
import pytest

import einsgrad
from einsgrad import EinsumSpecError
from oracles import numeric_vjp_check, reference_einsum
from test_codegen import CHECK_MESSAGE, import_module as import_file, imported_modules, string_constants


# (spec, sizes, shapes given to module() or None, two signatures the generic module must take)
FAMILIES = [
    pytest.param("bij,bjk->bik", None, None, [[(2, 3, 4), (2, 4, 5)], [(7, 3, 4), (7, 4, 5)]], id="batched matmul"),
    pytest.param("ik,jk->ij", None, None, [[(4, 3), (5, 3)], [(9, 6), (2, 6)]], id="linear"),
    pytest.param("ab,bc,cd->ad", None, None, [[(2, 3), (3, 4), (4, 5)], [(6, 7), (7, 2), (2, 3)]], id="chain"),
    pytest.param("ii->", None, None, [[(3, 3)], [(5, 5)]], id="trace"),
    pytest.param("ij->i", None, None, [[(3, 4)], [(5, 6)]], id="row sum"),
    pytest.param("j->ij", {"i": 3}, None, [[(4,)], [(6,)]], id="bias broadcast"),
    pytest.param("i->ii", {}, None, [[(4,)], [(6,)]], id="diagonal placement"),
    pytest.param("ij,ij->ij", None, [(3, 1), (3, 4)], [[(3, 1), (3, 4)], [(5, 1), (5, 2)]], id="size-1 broadcast"),
    pytest.param("...ij,...jk->...ik", None, [(2, 1, 3, 4), (5, 4, 2)],
                 [[(2, 1, 3, 4), (5, 4, 2)], [(3, 1, 2, 4), (6, 4, 3)]], id="broadcast batch"),
]


def module_of(spec, sizes, shapes, backend, generic=True, dtypes=None):
    return einsgrad.compile(spec, sizes=sizes).module(*(shapes or ()), backend=backend, generic=generic,
                                                      dtypes=dtypes)


def assert_safe(text: str, backend: str) -> None:
    """Strings only einsum subscripts or the check's message, ASCII outside comments, and the
    one framework imported."""
    for value in string_constants(text):
        assert re.fullmatch(r"[a-zA-Z,>-]*", value) or CHECK_MESSAGE.fullmatch(value), value
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type != tokenize.COMMENT:
            assert token.string.isascii(), token
    assert imported_modules(text) == {backend}


@pytest.mark.parametrize("spec, sizes, shapes, family", FAMILIES)
def test_numpy_generic_module(tmp_path, spec, sizes, shapes, family):
    text = module_of(spec, sizes, shapes, "numpy")
    assert_safe(text, "numpy")
    module = import_file(tmp_path, text)
    rng = np.random.default_rng(0)
    inputs, output = einsgrad.compile(spec, sizes=sizes).spec.inputs, einsgrad.compile(spec, sizes=sizes).spec.output
    for signature in family:
        xs = [rng.standard_normal(s) for s in signature]
        y = module.forward(*xs)
        np.testing.assert_allclose(y, reference_einsum(inputs, output, xs, sizes), rtol=1e-12, atol=1e-12)
        g = rng.standard_normal(y.shape)
        grads = module.vjp(g, *xs)
        numeric_vjp_check(lambda *a: reference_einsum(inputs, output, a, sizes), xs, g, grads)
        _, saved = module.forward_saving(*xs)
        for got, want in zip(module.pullback(g, *saved), grads):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("spec, sizes, shapes, family", FAMILIES)
def test_torch_generic_module(tmp_path, spec, sizes, shapes, family):
    """Values and gradients of torch.einsum at two signatures of the class; gradcheck and
    gradgradcheck (the recorded backward runs the vjp from the operands)."""
    torch = pytest.importorskip("torch")
    text = module_of(spec, sizes, shapes, "torch")
    assert_safe(text, "torch")
    module = import_file(tmp_path, text)
    gen = torch.Generator().manual_seed(0)
    for signature in family:
        leaves = [torch.randn(s, dtype=torch.float64, generator=gen, requires_grad=True) for s in signature]
        assert torch.autograd.gradcheck(module.einsum, leaves)
        assert torch.autograd.gradgradcheck(module.einsum, leaves)
        if sizes is not None:  # torch.einsum has no extended notation: gradcheck is the oracle
            continue
        y = module.einsum(*leaves)
        twins = [leaf.detach().clone().requires_grad_(True) for leaf in leaves]
        expected = torch.einsum(spec, *twins)
        torch.testing.assert_close(y, expected)
        g = torch.randn(expected.shape, dtype=torch.float64, generator=gen)
        for got, want in zip(torch.autograd.grad(y, leaves, g), torch.autograd.grad(expected, twins, g)):
            torch.testing.assert_close(got, want)


@pytest.mark.parametrize("spec, sizes, shapes, family", FAMILIES)
def test_jax_generic_module(tmp_path, spec, sizes, shapes, family):
    """Values and gradients (eager and under jit) of jnp.einsum at two signatures of the class."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    text = module_of(spec, sizes, shapes, "jax", dtypes="float32")
    assert_safe(text, "jax")
    module = import_file(tmp_path, text)
    rng = np.random.default_rng(1)
    compiled = einsgrad.compile(spec, sizes=sizes)
    for signature in family:
        xs = [jnp.asarray(rng.standard_normal(s), dtype=jnp.float32) for s in signature]
        if sizes is None:
            expected = jnp.einsum(spec, *xs)
        else:
            expected = reference_einsum(compiled.spec.inputs, compiled.spec.output, [np.asarray(x) for x in xs], sizes)
        np.testing.assert_allclose(module.einsum(*xs), expected, rtol=1e-5, atol=1e-5)
        g = jnp.asarray(rng.standard_normal(np.shape(expected)), dtype=jnp.float32)
        argnums = tuple(range(len(xs)))

        def loss(*a):
            return (module.einsum(*a) * g).sum()

        grads = jax.grad(loss, argnums=argnums)(*xs)
        jitted = jax.jit(jax.grad(loss, argnums=argnums))(*xs)
        if sizes is None:
            reference = jax.grad(lambda *a: (jnp.einsum(spec, *a) * g).sum(), argnums=argnums)(*xs)
        else:
            reference = module.vjp(g, *xs)
            numeric_vjp_check(lambda *a: reference_einsum(compiled.spec.inputs, compiled.spec.output, a, sizes),
                              [np.asarray(x) for x in xs], np.asarray(g), [np.asarray(r) for r in reference],
                              rtol=1e-4)
        for got, again, want in zip(grads, jitted, reference):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(again, want, rtol=1e-5, atol=1e-5)


def test_torch_module_of_complex_values_follows_torch(tmp_path):
    torch = pytest.importorskip("torch")
    module = import_file(tmp_path, module_of("ik,jk->ij", None, None, "torch", dtypes="complex128"))
    gen = torch.Generator().manual_seed(2)
    leaves = [torch.randn(s, dtype=torch.complex128, generator=gen, requires_grad=True) for s in ((3, 4), (5, 4))]
    assert torch.autograd.gradcheck(module.einsum, leaves)
    twins = [leaf.detach().clone().requires_grad_(True) for leaf in leaves]
    g = torch.randn(3, 5, dtype=torch.complex128, generator=gen)
    mine = torch.autograd.grad(module.einsum(*leaves), leaves, g)
    theirs = torch.autograd.grad(torch.einsum("ik,jk->ij", *twins), twins, g)
    for got, want in zip(mine, theirs):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_exact_module_refuses_other_shapes(tmp_path, backend):
    """The bug of the issue: an exact module for batch 2 given batch 3 raises, naming the shapes."""
    pytest.importorskip(backend)
    module = import_file(tmp_path, module_of("bij,bjk->bik", None, [(2, 3, 4), (2, 4, 5)], backend, generic=False))
    xs = [np.ones((3, 3, 4)), np.ones((3, 4, 5))]
    if backend == "torch":
        import torch
        xs = [torch.tensor(x) for x in xs]
    function = module.forward if backend == "numpy" else module.einsum
    message = (r"einsum 'bij,bjk->bik' takes operands of shapes \(2, 3, 4\), \(2, 4, 5\); "
               r"got \(3, 3, 4\), \(3, 4, 5\)")
    with pytest.raises(ValueError, match=message):
        function(*xs)
    with pytest.raises(ValueError, match=message):
        module.vjp(np.ones((3, 3, 5)), *xs)


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_generic_module_refuses_what_does_not_fit(tmp_path, backend):
    """Unequal sizes of one label, a wrong rank, a broadcast the class does not have, a wrong
    cotangent: each a ValueError, never a wrong result."""
    pytest.importorskip(backend)
    module = import_file(tmp_path, module_of("bij,bjk->bik", None, None, backend))
    function = module.forward if backend == "numpy" else module.einsum
    convert = np.asarray
    if backend == "torch":
        import torch
        convert = torch.tensor
    pattern = r"einsum 'bij,bjk->bik' takes operands of shapes \(n0, n1, n2\), \(n0, n2, n3\); got "
    for shapes in ([(2, 3, 4), (2, 5, 5)], [(2, 3, 4), (3, 4, 5)], [(3, 4), (2, 4, 5)], [(1, 3, 4), (2, 4, 5)]):
        with pytest.raises(ValueError, match=pattern + re.escape(", ".join(map(str, shapes)))):
            function(*[convert(np.ones(s)) for s in shapes])
    with pytest.raises(ValueError, match=r"the cotangent g has shape \(2, 3, 4\) but the output has \(2, 3, 5\)"):
        module.vjp(convert(np.ones((2, 3, 4))), convert(np.ones((2, 3, 4))), convert(np.ones((2, 4, 5))))


def test_module_documents_its_operands():
    text = einsgrad.compile("b i j, b j k -> b i k").module(backend="torch")
    doc = text.split('"""')[1]
    assert "einsum 'bij,bjk->bik'" in doc  # the canonical spec, never the text as typed
    assert "x0  operand 0, subscripts 'bij', shape (n0, n1, n2)" in doc
    assert "x1  operand 1, subscripts 'bjk', shape (n0, n2, n3)" in doc
    assert "output shape (n0, n1, n3)" in doc and "Needs torch alone" in doc
    exact = einsgrad.compile("bij,bjk->bik").module((2, 3, 4), (2, 4, 5), backend="jax")
    assert "x1  operand 1, subscripts 'bjk', shape (2, 4, 5)" in exact and "exactly these shapes" in exact


@pytest.mark.parametrize("call, message", [
    pytest.param(lambda e: e.module(backend="dask"), r"backend must be one of numpy, torch, jax, got 'dask'",
                 id="unknown backend"),
    pytest.param(lambda e: e.module((2, 3), (4, 3), backend="torch", dtypes=["float32", "float64"]),
                 r"a torch module takes one dtype for every operand, got float32, float64", id="mixed dtypes"),
    pytest.param(lambda e: e.module((0, 3), (4, 3), generic=True),
                 r"shape-generic code is planned for sizes of at least 1", id="empty dimension"),
])
def test_bad_module_requests(call, message):
    with pytest.raises(EinsumSpecError, match=message):
        call(einsgrad.compile("ik,jk->ij"))


def test_module_in_a_subprocess_needs_only_its_framework(tmp_path):
    """The torch module imported by a fresh interpreter in which einsgrad cannot be imported."""
    pytest.importorskip("torch")
    import subprocess
    import sys

    (tmp_path / "layer.py").write_text(einsgrad.compile("bij,bjk->bik").module(backend="torch"), encoding="utf-8")
    (tmp_path / "einsgrad.py").write_text("raise ImportError('einsgrad must not be needed')\n", encoding="utf-8")
    script = ("import torch, layer\n"
              "for b in (2, 5):\n"
              "    x = torch.randn(b, 3, 4, dtype=torch.float64, requires_grad=True)\n"
              "    w = torch.randn(b, 4, 6, dtype=torch.float64, requires_grad=True)\n"
              "    assert torch.autograd.gradcheck(layer.einsum, (x, w))\n"
              "    assert layer.einsum(x, w).shape == (b, 3, 6)\n"
              "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
