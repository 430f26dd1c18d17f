"""Forward mode: ``jvp_spec`` and ``Einsum.jvp``, against hand formulas, central finite
differences of ``numpy.einsum`` (or the reference evaluator of the extended notation), the sum
of the terms computed one by one by ``numpy.einsum``, and ``torch.func.jvp`` / ``jax.jvp`` of
the frameworks' own einsum (skipped without them)."""

from __future__ import annotations

import contextlib
import functools
import operator

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import einsgrad
from einsgrad import EinsumSpecError, derive
from einsgrad.spec import parse
from oracles import reference_einsum, upcast
from strategies import ALL_DTYPES, EXACT_DTYPES, Case, einsum_cases, extended_cases, random_array

STEP = 0.25

CURATED = [
    pytest.param("ik,jk->ij", [(4, 3), (5, 3)], id="linear"),
    pytest.param("ab,bc,cd,de->ae", [(2, 3), (3, 4), (4, 5), (5, 2)], id="chain"),
    pytest.param("iij->ji", [(3, 3, 2)], id="repeated label"),
    pytest.param("ii->", [(3, 3)], id="trace"),
    pytest.param("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)], id="broadcast batch"),
    pytest.param("ij,ij->ij", [(3, 1), (3, 4)], id="size-1 broadcast"),
    pytest.param("ij,jk->ik", [(3, 0), (0, 2)], id="size-0 contracted"),
    pytest.param("ij,jk->ik", [(0, 3), (3, 2)], id="size-0 output"),
    pytest.param("i,i,i->", [(4,), (4,), (4,)], id="triple dot"),
    pytest.param("bhqk,bhkd->bhqd", [(2, 2, 3, 4), (2, 2, 4, 3)], id="attention apply"),
    pytest.param("i,j->ij", [(3,), (2,)], id="outer"),
    pytest.param("ij->", [(1, 1)], id="size-1 sum"),
]


def five_point(f, operands, tangents):
    """``d/dt f(x + t T)`` at 0 by the five-point stencil, exact for the polynomials of degree
    at most 4 in ``t`` that an einsum of at most four operands is (double precision)."""
    xs = [upcast(x) for x in operands]
    ts = [np.zeros_like(x) if t is None else upcast(t) for x, t in zip(xs, tangents)]

    def at(t):
        return upcast(f(*(x + t * u for x, u in zip(xs, ts))))

    return (at(-2 * STEP) - 8 * at(-STEP) + 8 * at(STEP) - at(2 * STEP)) / (12 * STEP)


def terms_by_numpy(spec: str, operands, tangents):
    """``Σ_k einsum(jvp_spec(spec, k), T_k, *others)``, each term by ``numpy.einsum`` in
    double precision: the jvp as the sum of its symbolic terms."""
    xs = [upcast(x) for x in operands]
    total = None
    for k, t in enumerate(tangents):
        if t is None:
            continue
        term = np.einsum(einsgrad.jvp_spec(spec, k), upcast(t), *(xs[:k] + xs[k + 1:]))
        total = term if total is None else total + term
    return total


def draw_tangents(case: Case, data, allow_none=True):
    """A tangent per operand, of the operand's dtype and shape; some None when ``allow_none``."""
    rng = np.random.default_rng(case.seed + 2)
    tangents = [random_array(rng, s, d) for s, d in zip(case.shapes, case.dtypes)]
    if allow_none:
        keep = data.draw(st.lists(st.booleans(), min_size=len(tangents), max_size=len(tangents)))
        tangents = [t if k else None for t, k in zip(tangents, keep)]
    return tangents


def assert_close(got, expected, f, operands, tangents, rtol):
    """Entry by entry within ``rtol`` of the jvp over the moduli of every value (the scale of
    the rounding errors of ``got``), plus the stencil's own rounding in double precision (a few
    ulps of the moduli's values at its farthest point)."""
    moduli = [np.abs(upcast(x)) for x in operands]
    steps = [None if t is None else np.abs(upcast(t)) for t in tangents]
    far = f(*(x if t is None else x + 2 * STEP * t for x, t in zip(moduli, steps)))
    allowed = rtol * np.abs(five_point(f, moduli, steps)) + 1e-14 * np.abs(upcast(far))
    err = np.abs(upcast(got) - upcast(expected))
    assert (err <= allowed + 1e-300).all(), (np.max(err - allowed), got, expected)


RTOL = {np.dtype(np.float16): 1.6e-2, np.dtype(np.float32): 2e-6, np.dtype(np.complex64): 2e-6,
        np.dtype(np.float64): 1e-13, np.dtype(np.complex128): 1e-13}  # about 16 ulps


# -- the symbolic terms -------------------------------------------------------------------


@pytest.mark.parametrize("spec, wrt, expected", [
    pytest.param("ik,jk->ij", None, ("ik,jk->ij", "jk,ik->ij"), id="linear: dX Wᵀ + X dWᵀ"),
    pytest.param("ik,jk->ij", 1, "jk,ik->ij", id="one operand: one spec"),
    pytest.param("ik,jk->ij", [-1], ("jk,ik->ij",), id="a sequence: a tuple"),
    pytest.param("ii->i", 0, "ii->i", id="diagonal: the forward itself"),
    pytest.param("ab,bc,cd", 2, "cd,ab,bc->ad", id="implicit output made explicit"),
    pytest.param("...ij,jk->...ik", 1, "jk,...ij->...ik", id="ellipsis"),
])
def test_jvp_spec_by_hand(spec, wrt, expected):
    """Each term is the forward with the tangent first, the other operands in order."""
    assert einsgrad.jvp_spec(spec, wrt) == expected


def test_jvp_spec_sizes_and_bad_wrt():
    """``sizes=`` for labels only the output has; a bad ``wrt`` names itself."""
    assert einsgrad.jvp_spec("i->ij", sizes={"j": 3}) == ("i->ij",)
    with pytest.raises(EinsumSpecError, match="wrt=2 is out of range"):
        einsgrad.jvp_spec("ik,jk->ij", 2)
    with pytest.raises(EinsumSpecError, match="names an operand twice"):
        einsgrad.jvp_spec("ik,jk->ij", [0, 0])


@given(einsum_cases(dtypes=EXACT_DTYPES))
def test_tangent_term_is_the_transpose_of_the_backward(case: Case):
    """Swapping the tangent and the output of a jvp term gives the backward spec of the same
    operand, exactly: the vjp is the transpose of the jvp."""
    spec = parse(case.spec)
    for k in range(len(spec.inputs)):
        assert derive.backward(derive.tangent(spec, k), 0) == derive.backward(spec, k)


# -- Einsum.jvp against independent oracles ------------------------------------------------


@pytest.mark.parametrize("spec, shapes", CURATED)
def test_curated_against_finite_differences(spec, shapes):
    """Every tangent, each one alone, and none: finite differences of ``numpy.einsum``."""
    rng = np.random.default_rng(0)
    ops = [rng.standard_normal(s) for s in shapes]
    tangents = [rng.standard_normal(s) for s in shapes]
    compiled = einsgrad.compile(spec)
    f = lambda *a: np.einsum(spec, *a)  # noqa: E731
    choices = [tangents] + [[t if m == k else None for m, t in enumerate(tangents)] for k in range(len(ops))]
    for chosen in choices:
        got = compiled.jvp(chosen, *ops)
        expected = five_point(f, ops, chosen)
        assert got.shape == expected.shape and got.dtype == np.float64
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)
    zero = compiled.jvp([None] * len(ops), *ops)
    assert zero.shape == f(*ops).shape and not zero.any()
    for chosen in choices[:2] + [[None] * len(ops)]:
        y, dy = compiled.value_and_jvp(chosen, *ops)
        np.testing.assert_allclose(y, f(*ops), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dy, compiled.jvp(chosen, *ops), rtol=1e-12, atol=1e-14)


@given(einsum_cases(dtypes=ALL_DTYPES + (np.dtype(np.float16),)), st.data())
def test_jvp_equals_finite_differences(case: Case, data):
    """Random specs ('...', size-1 broadcasts, repeated labels, size 0, implicit output), every
    float and complex dtype, mixed, some tangents None: within rounding of the dtype."""
    ops = case.operands()
    tangents = draw_tangents(case, data)
    compiled = einsgrad.compile(case.spec)
    got = compiled.jvp(tangents, *ops)
    f = lambda *a: np.einsum(case.spec, *a)  # noqa: E731
    expected = five_point(f, ops, tangents)
    present = [t for t in tangents if t is not None]
    assert got.shape == expected.shape
    assert got.dtype == np.result_type(*ops, *present)
    y, dy = compiled.value_and_jvp(tangents, *ops)
    rtol = max(RTOL[np.dtype(d)] for d in case.dtypes)
    # its own plan (sharing the forward's intermediates) may lay a GEMM out otherwise, a
    # transposed copy read in place by BLAS: equal within rounding, not bit for bit
    assert dy.dtype == got.dtype and dy.shape == got.shape
    assert_close(dy, expected, f, ops, tangents, rtol)
    assert y.dtype == compiled(*ops).dtype and y.shape == got.shape
    scale = np.abs(f(*(np.abs(upcast(x)) for x in ops)))
    assert (np.abs(upcast(y) - upcast(f(*(upcast(x) for x in ops)))) <= rtol * scale + 1e-300).all()
    assert_close(got, expected, f, ops, tangents, rtol)


@given(einsum_cases(dtypes=EXACT_DTYPES), st.data())
def test_jvp_equals_the_sum_of_its_terms(case: Case, data):
    """``Einsum.jvp`` equals the terms of ``jvp_spec``, each run by ``numpy.einsum``."""
    ops = case.operands()
    tangents = draw_tangents(case, data)
    assume(any(t is not None for t in tangents))
    got = einsgrad.compile(case.spec).jvp(tangents, *ops)
    np.testing.assert_allclose(got, terms_by_numpy(case.spec, ops, tangents), rtol=1e-10, atol=1e-10)


@settings(max_examples=50)
@given(extended_cases(), st.data())
def test_extended_notation_against_the_reference(case: Case, data):
    """Broadcasts, diagonal placement and sums over '...' (einsgrad's extended notation)."""
    ops = case.operands()
    tangents = draw_tangents(case, data)
    got = einsgrad.compile(case.spec, sizes=case.sizes).jvp(tangents, *ops)
    f = lambda *a: reference_einsum(case.inputs, case.output, a, case.sizes)  # noqa: E731
    np.testing.assert_allclose(got, five_point(f, ops, tangents), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.int32, np.int64, np.uint16])
def test_integers_and_booleans_are_exact(dtype):
    """Integer (and boolean) operands and tangents: the exact sum of the terms, each by
    ``numpy.einsum``, in the operands' dtype (booleans: or of ands, as numpy's)."""
    rng = np.random.default_rng(1)
    shapes = [(3, 4), (4, 5), (5, 2)]
    ops = [rng.integers(0, 4, s).astype(dtype) for s in shapes]
    tangents = [rng.integers(0, 4, s).astype(dtype) for s in shapes]
    spec = "ab,bc,cd->ad"
    got = einsgrad.compile(spec).jvp(tangents, *ops)
    expected = functools.reduce(operator.add, [np.einsum(spec, *(t if m == k else x for m, x in enumerate(ops)))
                                               for k, t in enumerate(tangents)])
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, expected)


def test_complex_is_holomorphic():
    """A complex tangent is not conjugated: ``d(z w) = dz w + z dw``."""
    z, w = np.array([1 + 2j]), np.array([3 - 1j])
    dz, dw = np.array([0.5j]), np.array([2.0 + 0j])
    got = einsgrad.compile("i,i->").jvp([dz, dw], z, w)
    assert got == dz[0] * w[0] + z[0] * dw[0]


def test_a_real_operand_with_a_complex_tangent():
    """dY takes the dtype of operands and tangents together."""
    x, w = np.ones((2, 3)), np.ones((3,))
    got = einsgrad.compile("ij,j->i").jvp([np.full((2, 3), 1j), None], x, w)
    assert got.dtype == np.complex128
    np.testing.assert_array_equal(got, np.full(2, 3j))


def test_the_result_owns_its_memory():
    """A jvp that is a view of a tangent (a transpose) is returned as a copy."""
    t = np.arange(6.0).reshape(2, 3)
    got = einsgrad.compile("ij->ji").jvp([t], np.zeros((2, 3)))
    np.testing.assert_array_equal(got, t.T)
    assert not np.shares_memory(got, t)


@pytest.mark.parametrize("library", ["torch", "jax", "dask"])
@pytest.mark.parametrize("spec, shapes", CURATED)
def test_other_libraries_arrays(library, spec, shapes):
    """torch, jax and dask arrays give an array of their library (their dialect's code), with
    the values of numpy's; mixed dtypes too (torch and jax cast to the common one first)."""
    module = pytest.importorskip({"torch": "torch", "jax": "jax.numpy", "dask": "dask.array"}[library])
    with pytest.importorskip("jax").enable_x64(True) if library == "jax" else contextlib.nullcontext():
        _check_library_jvp(module, library, spec, shapes)


def _check_library_jvp(module, library, spec, shapes):
    convert = getattr(module, {"torch": "tensor", "jax": "asarray", "dask": "from_array"}[library])
    rng = np.random.default_rng(3)
    ops = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    tangents = [rng.standard_normal(s).astype(np.float32 if k else np.float64) for k, s in enumerate(shapes)]
    tangents[-1] = None if len(shapes) > 1 else tangents[-1]
    compiled = einsgrad.compile(spec)
    expected = compiled.jvp(tangents, *ops)
    got = compiled.jvp([None if t is None else convert(t) for t in tangents], *(convert(x) for x in ops))
    assert type(got).__module__.partition(".")[0] in {"torch": ("torch",), "jax": ("jax", "jaxlib"),
                                                       "dask": ("dask",)}[library]
    assert np.dtype(str(got.dtype).replace("torch.", "")) == expected.dtype
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6, atol=1e-6)
    zero = compiled.jvp([None] * len(ops), *(convert(x) for x in ops))
    assert type(zero).__module__.partition(".")[0] == type(got).__module__.partition(".")[0]
    assert not np.asarray(zero).any() and tuple(zero.shape) == expected.shape


# -- cost ------------------------------------------------------------------------------------


def _flops(compiled, shapes, wrt):
    """FLOPs of the jvp plan of ``wrt``, without its additions, and of the forward."""
    from einsgrad.signature import Mode, PlanKey

    record = compiled._signature_record(tuple(shapes))
    jvp = record.plan(PlanKey(Mode.JVP, tuple(wrt)))
    adds = sum(step.flops for step in jvp.steps if step.operation.__class__.__name__ == "Add")
    return jvp.flops - adds, record.plan(PlanKey(Mode.FORWARD, None)).flops


@pytest.mark.parametrize("spec, shapes", [p for p in CURATED if p.id not in ("trace", "size-1 sum")])
def test_pushing_tangents_along_the_tree_costs(spec, shapes):
    """One tangent costs exactly the forward's FLOPs (each step runs once, on the tangent where
    it flows); every tangent at most three forwards (the primal, and each step once per
    argument), whatever the number of operands."""
    compiled = einsgrad.compile(spec)
    n = len(shapes)
    for k in range(n):
        jvp, forward = _flops(compiled, shapes, (k,))
        assert jvp == forward
    jvp, forward = _flops(compiled, shapes, tuple(range(n)))
    assert jvp <= 3 * forward


# -- bad input --------------------------------------------------------------------------------


def test_bad_tangents_are_named():
    lin = einsgrad.compile("ik,jk->ij")
    X, W = np.ones((2, 3)), np.ones((4, 3))
    with pytest.raises(EinsumSpecError, match=r"one tangent \(or None\) per operand: 2 .*got 1"):
        lin.jvp([X], X, W)
    with pytest.raises(EinsumSpecError, match="one tangent .* got float"):
        lin.jvp(1.0, X, W)
    with pytest.raises(EinsumSpecError, match=r"the tangent of operand 1 has shape \(3, 4\) but operand 1 has shape \(4, 3\)"):
        lin.jvp([None, np.ones((3, 4))], X, W)
    with pytest.raises(EinsumSpecError, match="the tangent of operand 0 cannot be read as an array"):
        lin.jvp([[[1.0], [1.0, 2.0]], None], X, W)
    with pytest.raises(EinsumSpecError, match="names 2 operand"):
        lin.jvp([None, None], X)
    with pytest.raises(EinsumSpecError, match="not numeric"):
        lin.jvp([np.array([["a"] * 3] * 2), None], X, W)


# -- the frameworks' own forward mode ----------------------------------------------------------


@settings(max_examples=30)
@given(einsum_cases(dtypes=EXACT_DTYPES), st.data())
def test_jvp_equals_torch_func_jvp(case: Case, data):
    """``torch.func.jvp`` of ``torch.einsum`` (operands cast to the common dtype inside)."""
    torch = pytest.importorskip("torch")
    ops = case.operands()
    tangents = draw_tangents(case, data, allow_none=False)
    common = torch.complex128 if any(np.iscomplexobj(x) for x in ops) else torch.float64
    try:
        _, expected = torch.func.jvp(lambda *a: torch.einsum(case.explicit_spec, *(x.to(common) for x in a)),
                                     tuple(torch.tensor(x) for x in ops), tuple(torch.tensor(t) for t in tangents))
    except RuntimeError:
        assume(False)
    got = einsgrad.compile(case.spec).jvp(tangents, *ops)
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-10, atol=1e-10)


@settings(max_examples=20)  # jax compiles every primitive per new shape
@given(einsum_cases(dtypes=EXACT_DTYPES), st.data())
def test_jvp_equals_jax_jvp(case: Case, data):
    """``jax.jvp`` of ``jnp.einsum`` in float64/complex128."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    ops = case.operands()
    tangents = draw_tangents(case, data, allow_none=False)
    with jax.enable_x64(True):
        try:
            _, expected = jax.jvp(lambda *a: jnp.einsum(case.spec, *a),
                                  tuple(jnp.asarray(x) for x in ops), tuple(jnp.asarray(t) for t in tangents))
        except (ValueError, TypeError):
            assume(False)
        got = einsgrad.compile(case.spec).jvp(tangents, *ops)
        np.testing.assert_allclose(got, np.asarray(expected), rtol=1e-10, atol=1e-10)
