"""Semantics of compiled einsums: no mutation, no aliasing, dtypes, threads, caching, wrt,
extended notation, the closure of backward specs, generated source and empty dimensions.

Expected values come from numpy written by hand and from finite differences.
"""

from __future__ import annotations

import ast
import threading

import numpy as np
import pytest

import einsgrad
from einsgrad import EinsumSpecError


def _randn(rng, shape, dtype=np.float64):
    x = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        x = x + 1j * rng.standard_normal(shape)
    return np.asarray(x, dtype=dtype)


def _make(spec_case, seed=0, dtype=np.float64):
    """Random operands and cotangent for a (spec, sizes, shapes, out_shape) case."""
    spec, sizes, shapes, out_shape = spec_case
    rng = np.random.default_rng(seed)
    ops = [_randn(rng, s, dtype) for s in shapes]
    G = _randn(rng, out_shape, dtype)
    return einsgrad.compile(spec, sizes=sizes), ops, G


# Specs whose gradients are views or broadcasts of something in a naive implementation.
ALIAS_CASES = [
    pytest.param(("ij->ij", None, [(3, 4)], (3, 4)), id="identity"),
    pytest.param(("ij->ji", None, [(3, 4)], (4, 3)), id="transpose"),
    pytest.param(("ij->i", None, [(3, 4)], (3,)), id="broadcast_back_row_sum"),
    pytest.param(("ij->", None, [(3, 4)], ()), id="sum_all"),
    pytest.param(("j->ij", {"i": 3}, [(4,)], (3, 4)), id="bias"),
    pytest.param(("ii->i", None, [(3, 3)], (3,)), id="diagonal"),
    pytest.param(("ii->ii", None, [(3, 3)], (3, 3)), id="diagonal_kept"),
    pytest.param(("ij,ij->ij", None, [(3, 4), (3, 4)], (3, 4)), id="hadamard"),
    pytest.param((",ij->ij", None, [(), (3, 4)], (3, 4)), id="scalar_times_matrix"),
    pytest.param(("i,->i", None, [(3,), ()], (3,)), id="vector_times_scalar"),
    pytest.param(("ij,jk->ik", None, [(3, 1), (4, 5)], (3, 5)), id="size1_broadcast"),
    pytest.param(("ik,jk->ij", None, [(3, 4), (5, 4)], (3, 5)), id="linear"),
    pytest.param(("...ij->ij", None, [(2, 3, 4)], (3, 4)), id="batch_sum"),
    pytest.param(("i,j->ij", None, [(3,), (4,)], (3, 4)), id="outer"),
]


# --------------------------------------------------------------------------------------
# No mutation, no aliasing, fresh writeable arrays.
# --------------------------------------------------------------------------------------


def is_broadcast_view(g) -> bool:
    """A read-only view that repeats values along an axis (stride 0): how a gradient that is
    a pure broadcast is returned."""
    return not g.flags.writeable and 0 in g.strides


def _check_fresh(grads, ops, G, indices=None):
    """Each gradient is a writeable ndarray of its operand's shape that aliases nothing."""
    indices = range(len(grads)) if indices is None else indices
    for k, g in zip(indices, grads):
        assert type(g) is np.ndarray, f"gradient {k} is {type(g)}"
        assert g.flags.writeable or is_broadcast_view(g), f"gradient {k} is read-only"
        assert g.shape == ops[k].shape
        for j, x in enumerate(ops):
            assert not np.shares_memory(g, x), f"gradient {k} aliases operand {j}"
        assert not np.shares_memory(g, G), f"gradient {k} aliases the cotangent"
    for a in range(len(grads)):
        for b in range(a + 1, len(grads)):
            assert not np.shares_memory(grads[a], grads[b]), f"gradients {a} and {b} share memory"


@pytest.mark.parametrize("case", ALIAS_CASES)
def test_operands_not_modified(case):
    """Forward, vjp and pullback leave operands and cotangent bit-for-bit unchanged."""
    lin, ops, G = _make(case)
    before = [x.copy() for x in ops]
    G_before = G.copy()
    lin(*ops)
    lin.vjp(G, *ops)
    for k in range(len(ops)):
        lin.vjp(G, *ops, wrt=k)
    _, pullback = lin.value_and_pullback(*ops)
    pullback(G)
    for x, b in zip(ops, before):
        np.testing.assert_array_equal(x, b)
    np.testing.assert_array_equal(G, G_before)


@pytest.mark.parametrize("case", ALIAS_CASES)
def test_vjp_gradients_are_fresh_and_writeable(case):
    """``vjp`` gradients share no memory with operands or cotangent, and can be written."""
    lin, ops, G = _make(case)
    grads = lin.vjp(G, *ops)
    _check_fresh(grads, ops, G)
    before = [x.copy() for x in ops] + [G.copy()]
    for g in grads:
        if g.flags.writeable:
            g[...] = 123.0
    for x, b in zip(ops + [G], before):
        np.testing.assert_array_equal(x, b)


@pytest.mark.parametrize("case", ALIAS_CASES)
def test_single_wrt_gradient_is_fresh(case):
    """A gradient asked for alone (int ``wrt``) is fresh and writeable too."""
    lin, ops, G = _make(case)
    for k in range(len(ops)):
        g = lin.vjp(G, *ops, wrt=k)
        _check_fresh([g], ops, G, indices=[k])


@pytest.mark.parametrize("case", ALIAS_CASES)
def test_pullback_gradients_are_fresh_and_writeable(case):
    """Pullback gradients share no memory with operands or cotangent, and can be written;
    writing into them does not change a second pullback's result."""
    lin, ops, G = _make(case)
    _, pullback = lin.value_and_pullback(*ops)
    first = pullback(G)
    _check_fresh(first, ops, G)
    expected = [g.copy() for g in first]
    for g in first:
        if g.flags.writeable:
            g[...] = -7.0
    second = pullback(G)
    for g, e in zip(second, expected):
        np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("case", ALIAS_CASES)
def test_outputs_are_ndarrays(case):
    """Forward values and gradients are ``np.ndarray`` instances, 0-d ones included."""
    lin, ops, G = _make(case)
    y = lin(*ops)
    assert type(y) is np.ndarray
    assert y.shape == case[3]
    y2, pullback = lin.value_and_pullback(*ops)
    assert type(y2) is np.ndarray
    assert all(type(g) is np.ndarray for g in lin.vjp(G, *ops))
    assert all(type(g) is np.ndarray for g in pullback(G))


def test_zero_dim_results_are_ndarrays():
    """A scalar output and a scalar operand's gradient are 0-d arrays, not numpy scalars."""
    x, y = np.arange(3.0), np.arange(3.0) + 1
    lin = einsgrad.compile("i,i->")
    out = lin(x, y)
    assert type(out) is np.ndarray and out.shape == ()
    assert float(out) == pytest.approx(float(x @ y))
    ds, dM = einsgrad.compile(",ij->ij").vjp(np.ones((2, 2)), np.array(2.0), np.full((2, 2), 3.0))
    assert type(ds) is np.ndarray and ds.shape == ()
    assert float(ds) == pytest.approx(12.0)
    assert type(einsgrad.einsum("ij->", np.ones((2, 3)))) is np.ndarray


@pytest.mark.parametrize("view", [
    pytest.param(lambda a: np.ascontiguousarray(a.T).T, id="transposed_storage"),
    pytest.param(lambda a: np.asfortranarray(a), id="fortran_order"),
    pytest.param(lambda a: np.repeat(a, 2, axis=1)[:, ::2], id="strided_slice"),
    pytest.param(lambda a: a[::-1, ::-1].copy()[::-1, ::-1], id="negative_strides"),
    pytest.param(lambda a: np.broadcast_to(a, (2,) + a.shape)[1], id="read_only_view"),
])
def test_non_contiguous_operands(view):
    """Operands with any memory layout give the matrix-calculus values and stay unchanged."""
    rng = np.random.default_rng(13)
    X, W, G = rng.standard_normal((4, 3)), rng.standard_normal((5, 3)), rng.standard_normal((4, 5))
    Xv, Wv, Gv = view(X), view(W), view(G)
    np.testing.assert_array_equal(Xv, X)
    lin = einsgrad.compile("ik,jk->ij")
    np.testing.assert_allclose(lin(Xv, Wv), X @ W.T, rtol=1e-12, atol=1e-12)
    for dX, dW in (lin.vjp(Gv, Xv, Wv), lin.value_and_pullback(Xv, Wv)[1](Gv)):
        np.testing.assert_allclose(dX, G @ W, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dW, G.T @ X, rtol=1e-12, atol=1e-12)
    A = view(rng.standard_normal((4, 4)))
    np.testing.assert_allclose(einsgrad.einsum("ii->i", A), np.diag(A), rtol=1e-12)
    np.testing.assert_allclose(einsgrad.vjp("ii->i", np.arange(4.0), A, wrt=0), np.diag(np.arange(4.0)))
    np.testing.assert_array_equal(Xv, X)
    np.testing.assert_array_equal(Wv, W)


# --------------------------------------------------------------------------------------
# dtypes.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype, tol", [
    pytest.param(np.float32, 1e-5, id="float32"),
    pytest.param(np.float64, 1e-12, id="float64"),
    pytest.param(np.complex64, 1e-5, id="complex64"),
    pytest.param(np.complex128, 1e-12, id="complex128"),
])
def test_dtypes_preserved_and_values_correct(dtype, tol):
    """Forward and gradients keep the operands' dtype and match the matrix expressions."""
    rng = np.random.default_rng(0)
    X, W, G = (_randn(rng, s, dtype) for s in [(3, 4), (4, 5), (3, 5)])
    lin = einsgrad.compile("ik,kj->ij")
    y = lin(X, W)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, X @ W, rtol=tol, atol=tol)
    dX, dW = lin.vjp(G, X, W)
    assert dX.dtype == dtype and dW.dtype == dtype
    np.testing.assert_allclose(dX, G @ W.T, rtol=tol, atol=tol)
    np.testing.assert_allclose(dW, X.T @ G, rtol=tol, atol=tol)
    _, pullback = lin.value_and_pullback(X, W)
    assert [g.dtype for g in pullback(G)] == [np.dtype(dtype)] * 2


@pytest.mark.parametrize("dx, dw, dg", [
    pytest.param(np.float32, np.float64, np.float64, id="f32_x_f64"),
    pytest.param(np.float64, np.float32, np.float64, id="f64_x_f32"),
    pytest.param(np.float32, np.float32, np.float64, id="f32_f32_cotangent_f64"),
    pytest.param(np.float32, np.complex128, np.complex128, id="f32_x_c128"),
    pytest.param(np.complex64, np.float64, np.complex128, id="c64_x_f64"),
    pytest.param(np.float64, np.float32, np.float32, id="f64_x_f32_cotangent_f32"),
    pytest.param(np.complex128, np.float64, np.float64, id="c128_x_f64_real_cotangent"),
    pytest.param(np.complex64, np.float32, np.float32, id="c64_x_f32_real_cotangent"),
])
def test_mixed_dtypes_each_gradient_has_operand_dtype(dx, dw, dg):
    """With mixed dtypes every gradient has its own operand's dtype (real part for reals)."""
    rng = np.random.default_rng(1)
    X, W, G = _randn(rng, (3, 4), dx), _randn(rng, (5, 4), dw), _randn(rng, (3, 5), dg)
    lin = einsgrad.compile("ik,jk->ij")
    assert lin(X, W).dtype == np.result_type(X, W)
    for grads in (lin.vjp(G, X, W), lin.value_and_pullback(X, W)[1](G)):
        dX, dW = grads
        assert dX.dtype == dx and dW.dtype == dw
        ref_dX = G.astype(np.complex128) @ W.astype(np.complex128)
        ref_dW = G.astype(np.complex128).T @ X.astype(np.complex128)
        ref_dX = ref_dX if np.dtype(dx).kind == "c" else ref_dX.real
        ref_dW = ref_dW if np.dtype(dw).kind == "c" else ref_dW.real
        np.testing.assert_allclose(dX, ref_dX, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(dW, ref_dW, rtol=1e-4, atol=1e-4)


def test_float32_close_to_float64_reference():
    """A float32 chain contraction is close to the float64 numpy reference."""
    rng = np.random.default_rng(2)
    A, B, C = (rng.standard_normal(s) for s in [(6, 7), (7, 8), (8, 5)])
    G = rng.standard_normal((6, 5))
    lin = einsgrad.compile("ij,jk,kl->il")
    y = lin(*(m.astype(np.float32) for m in (A, B, C)))
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, A @ B @ C, rtol=1e-4, atol=1e-4)
    dA, dB, dC = lin.vjp(G.astype(np.float32), *(m.astype(np.float32) for m in (A, B, C)))
    assert dA.dtype == dB.dtype == dC.dtype == np.float32
    np.testing.assert_allclose(dA, G @ (B @ C).T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dB, A.T @ G @ C.T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dC, (A @ B).T @ G, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [
    pytest.param(np.int64, id="int64"),
    pytest.param(np.int32, id="int32"),
    pytest.param(np.int8, id="int8"),
    pytest.param(np.uint8, id="uint8"),
    pytest.param(np.bool_, id="bool"),
])
@pytest.mark.parametrize("spec, shapes", [
    pytest.param("ij,jk->ik", [(2, 3), (3, 4)], id="matmul"),
    pytest.param("ij->i", [(2, 3)], id="row_sum"),
    pytest.param("ij->", [(2, 3)], id="sum_all"),
    pytest.param("ii->i", [(3, 3)], id="diagonal"),
    pytest.param("i,j->ij", [(2,), (3,)], id="outer"),
    pytest.param("ij,ij->ij", [(2, 3), (2, 3)], id="hadamard"),
    pytest.param("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)], id="chain"),
])
def test_integer_forward_equals_numpy(spec, shapes, dtype):
    """Integer and bool operands give exactly numpy.einsum's values and dtype."""
    rng = np.random.default_rng(3)
    ops = [rng.integers(0, 4, size=s).astype(dtype) for s in shapes]
    expected = np.asarray(np.einsum(spec, *ops))
    got = einsgrad.compile(spec)(*ops)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def test_int_times_float_forward():
    """Mixed integer and float operands promote like numpy."""
    a = np.arange(6).reshape(2, 3)
    b = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    expected = np.einsum("ij,jk->ik", a, b)
    got = einsgrad.einsum("ij,jk->ik", a, b)
    assert got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, rtol=1e-6)


# --------------------------------------------------------------------------------------
# Threads and the per-shape cache.
# --------------------------------------------------------------------------------------


def test_thread_safety_one_compiled_object_many_shapes():
    """One compiled object used by 8 threads at once, each with its own shapes, is correct."""
    lin = einsgrad.compile("bik,bjk->bij", cache_size=4)
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            rng = np.random.default_rng(t)
            barrier.wait(timeout=30)
            for it in range(15):
                b, n, m, d = 1 + t % 3, 2 + t, 3 + (t + it) % 4, 2 + it % 3
                X, W = rng.standard_normal((b, n, d)), rng.standard_normal((b, m, d))
                G = rng.standard_normal((b, n, m))
                np.testing.assert_allclose(lin(X, W), X @ W.transpose(0, 2, 1), rtol=1e-12, atol=1e-12)
                dX, dW = lin.vjp(G, X, W)
                np.testing.assert_allclose(dX, G @ W, rtol=1e-12, atol=1e-12)
                np.testing.assert_allclose(dW, G.transpose(0, 2, 1) @ X, rtol=1e-12, atol=1e-12)
                y, pullback = lin.value_and_pullback(X, W)
                np.testing.assert_allclose(pullback(G)[1], G.transpose(0, 2, 1) @ X, rtol=1e-12,
                                           atol=1e-12)
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not any(th.is_alive() for th in threads)
    assert not errors, repr(errors[0])


def test_per_shape_cache_is_bounded_and_still_correct():
    """With ``cache_size=2`` many shape signatures stay correct and the cache holds at most 2."""
    lin = einsgrad.compile("ik,kj->ij", cache_size=2)
    rng = np.random.default_rng(4)
    shapes = [(n, 3, 2 + n % 3) for n in range(1, 9)]
    for _ in range(2):  # cycle twice: evicted signatures are rebuilt correctly
        for n, k, m in shapes:
            X, W, G = rng.standard_normal((n, k)), rng.standard_normal((k, m)), rng.standard_normal((n, m))
            np.testing.assert_allclose(lin(X, W), X @ W, rtol=1e-12, atol=1e-12)
            dX, dW = lin.vjp(G, X, W)
            np.testing.assert_allclose(dX, G @ W.T, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(dW, X.T @ G, rtol=1e-12, atol=1e-12)
            info = lin._records.cache_info()
            assert info.maxsize == 2
            assert info.currsize <= 2


# --------------------------------------------------------------------------------------
# wrt.
# --------------------------------------------------------------------------------------


def _chain():
    rng = np.random.default_rng(5)
    A, B, C, G = (rng.standard_normal(s) for s in [(2, 3), (3, 4), (4, 5), (2, 5)])
    expected = (G @ (B @ C).T, A.T @ G @ C.T, (A @ B).T @ G)
    return einsgrad.compile("ij,jk,kl->il"), (A, B, C), G, expected


@pytest.mark.parametrize("wrt, picks", [
    pytest.param([1], (1,), id="list_one"),
    pytest.param((0,), (0,), id="tuple_one"),
    pytest.param([2, 0], (2, 0), id="reversed_pair"),
    pytest.param([1, 2, 0], (1, 2, 0), id="permutation"),
    pytest.param([-1, 0], (2, 0), id="negative_index"),
    pytest.param(range(3), (0, 1, 2), id="range"),
    pytest.param(np.array([2, 1]), (2, 1), id="numpy_array"),
])
def test_wrt_subset_and_order(wrt, picks):
    """``wrt`` returns the requested gradients in the requested order, equal to the full vjp's."""
    lin, ops, G, expected = _chain()
    full = lin.vjp(G, *ops)
    got = lin.vjp(G, *ops, wrt=wrt)
    assert isinstance(got, tuple) and len(got) == len(picks)
    _, pullback = lin.value_and_pullback(*ops, wrt=wrt)
    pulled = pullback(G)
    assert isinstance(pulled, tuple) and len(pulled) == len(picks)
    for g, p, k in zip(got, pulled, picks):
        np.testing.assert_allclose(g, expected[k], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(g, full[k], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(p, expected[k], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("wrt, k", [
    pytest.param(0, 0, id="zero"),
    pytest.param(2, 2, id="two"),
    pytest.param(-2, 1, id="minus_two"),
    pytest.param(np.int64(1), 1, id="numpy_int"),
])
def test_int_wrt_returns_single_array(wrt, k):
    """An integer ``wrt`` returns the bare array (vjp, pullback and one-shot vjp)."""
    lin, ops, G, expected = _chain()
    g = lin.vjp(G, *ops, wrt=wrt)
    assert type(g) is np.ndarray
    np.testing.assert_allclose(g, expected[k], rtol=1e-12, atol=1e-12)
    p = lin.value_and_pullback(*ops, wrt=wrt)[1](G)
    assert type(p) is np.ndarray
    np.testing.assert_allclose(p, expected[k], rtol=1e-12, atol=1e-12)
    one_shot = einsgrad.vjp("ij,jk,kl->il", G, *ops, wrt=wrt)
    np.testing.assert_allclose(one_shot, expected[k], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("wrt", [pytest.param([], id="list"), pytest.param((), id="tuple")])
def test_empty_wrt_returns_empty_tuple(wrt):
    """An empty ``wrt`` computes nothing and returns ``()``."""
    lin, ops, G, _ = _chain()
    assert lin.vjp(G, *ops, wrt=wrt) == ()
    y, pullback = lin.value_and_pullback(*ops, wrt=wrt)
    np.testing.assert_allclose(y, ops[0] @ ops[1] @ ops[2], rtol=1e-12)
    assert pullback(G) == ()


def test_one_shot_functions_match_numpy():
    """``einsgrad.einsum`` and ``einsgrad.vjp`` give the matrix-calculus values."""
    rng = np.random.default_rng(6)
    X, W, G = rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.standard_normal((3, 5))
    np.testing.assert_allclose(einsgrad.einsum("ik,jk->ij", X, W), X @ W.T, rtol=1e-12)
    dX, dW = einsgrad.vjp("ik,jk->ij", G, X, W)
    np.testing.assert_allclose(dX, G @ W, rtol=1e-12)
    np.testing.assert_allclose(dW, G.T @ X, rtol=1e-12)


# --------------------------------------------------------------------------------------
# grad_spec determinism.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("variants, wrt, expected", [
    pytest.param(["ik,jk->ij", "ik,jk", " i k , j k -> i j ", "ik , jk->ij"], 1, "ij,ik->jk",
                 id="linear_dW"),
    pytest.param(["ik,jk->ij", "ik,jk", "ik,jk ->ij"], 0, "ij,jk->ik", id="linear_dX"),
    pytest.param(["...ij,...jk->...ik", "...ij,...jk", "... ij, ...jk -> ...ik"], 1,
                 "...ik,...ij->...jk", id="batched"),
    pytest.param(["ij->", " i j -> ", "ij ->"], 0, "->ij", id="sum_all"),
    pytest.param(["ij", "ij->ij", " i j "], 0, "ij->ij", id="identity_implicit"),
    pytest.param(["ba->ab", "ba"], 0, "ab->ba", id="implicit_sorted_output"),
])
def test_grad_spec_deterministic_across_variants(variants, wrt, expected):
    """The same spec written implicitly, explicitly or with spaces gives one backward string,
    the same on every call."""
    results = {einsgrad.grad_spec(v, wrt) for v in variants for _ in range(3)}
    assert results == {expected}
    assert {einsgrad.compile(v).grad_specs[wrt] for v in variants} == {expected}


# --------------------------------------------------------------------------------------
# Extended notation: forward values by hand, gradients by finite differences.
# --------------------------------------------------------------------------------------


def _iij(x):
    out = np.zeros((x.shape[0], x.shape[0], x.shape[1]))
    for a in range(x.shape[0]):
        out[a, a, :] = x[a, :]
    return out


EXTENDED = [
    pytest.param("i->ij", {"j": 3}, [(4,)], lambda x: np.repeat(x[:, None], 3, axis=1), id="broadcast_new_axis"),
    pytest.param("j->ij", {"i": 2}, [(4,)], lambda b: np.tile(b, (2, 1)), id="bias"),
    pytest.param("i->ii", None, [(4,)], lambda x: np.diag(x), id="place_on_diagonal"),
    pytest.param("->ii", {"i": 3}, [()], lambda s: s * np.eye(3), id="scalar_to_identity"),
    pytest.param("...ij->ij", None, [(2, 3, 3, 4)], lambda x: x.sum(axis=(0, 1)), id="sum_batch"),
    pytest.param("ij->iij", None, [(3, 4)], _iij, id="diagonal_plus_free"),
    pytest.param("i,j->ijk", {"k": 2}, [(3,), (4,)],
                 lambda a, b: np.repeat(np.outer(a, b)[:, :, None], 2, axis=2), id="outer_broadcast"),
    pytest.param("ij,jk->iik", None, [(3, 4), (4, 2)],
                 lambda a, b: np.einsum("ik,ij->ijk", a @ b, np.eye(3)), id="matmul_onto_diagonal"),
]


def _finite_difference_grad(f, ops, G, k, eps=1e-6):
    """d<G, f(ops)>/d ops[k] by central differences on the hand-written numpy forward."""
    x = ops[k]
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        plus = [o.copy() for o in ops]
        minus = [o.copy() for o in ops]
        plus[k][idx] += eps
        minus[k][idx] -= eps
        grad[idx] = (np.sum(G * f(*plus)) - np.sum(G * f(*minus))) / (2 * eps)
    return grad


@pytest.mark.parametrize("spec, sizes, shapes, forward", EXTENDED)
def test_extended_notation_forward(spec, sizes, shapes, forward):
    """Extended-notation forwards (broadcast, diagonal placement, batch sum) equal numpy by hand."""
    rng = np.random.default_rng(7)
    ops = [rng.standard_normal(s) for s in shapes]
    y = einsgrad.compile(spec, sizes=sizes)(*ops)
    expected = forward(*ops)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("spec, sizes, shapes, forward", EXTENDED)
def test_extended_notation_gradient_finite_differences(spec, sizes, shapes, forward):
    """Extended-notation gradients equal central finite differences of the numpy forward."""
    rng = np.random.default_rng(8)
    ops = [rng.standard_normal(s) for s in shapes]
    G = rng.standard_normal(forward(*ops).shape)
    lin = einsgrad.compile(spec, sizes=sizes)
    grads = lin.vjp(G, *ops)
    pulled = lin.value_and_pullback(*ops)[1](G)
    for k in range(len(ops)):
        expected = _finite_difference_grad(forward, ops, G, k)
        np.testing.assert_allclose(grads[k], expected, rtol=1e-6, atol=1e-6, err_msg=f"operand {k}")
        np.testing.assert_allclose(pulled[k], expected, rtol=1e-6, atol=1e-6, err_msg=f"operand {k}")


def test_output_ellipsis_sizes_broadcast():
    """``sizes={'...': (2,)}`` gives an output-only ellipsis its batch shape."""
    x = np.arange(3.0)
    lin = einsgrad.compile("i->...i", sizes={"...": (2,)})
    y = lin(x)
    np.testing.assert_array_equal(y, np.stack([x, x]))
    G = np.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(lin.vjp(G, x, wrt=0), G.sum(axis=0))


# --------------------------------------------------------------------------------------
# Closure: a backward spec, compiled and run, is the gradient.
# --------------------------------------------------------------------------------------


CLOSURE = [
    pytest.param("ik,jk->ij", None, [(3, 4), (5, 4)], (3, 5), 1, None,
                 lambda G, X, W: G.T @ X, id="linear_dW"),
    pytest.param("ik,jk->ij", None, [(3, 4), (5, 4)], (3, 5), 0, None,
                 lambda G, X, W: G @ W, id="linear_dX"),
    pytest.param("ik,kj->ij", None, [(3, 4), (4, 5)], (3, 5), 1, None,
                 lambda G, X, W: X.T @ G, id="matmul_dW"),
    pytest.param("i,ij,j->", None, [(3,), (3, 4), (4,)], (), 1, None,
                 lambda G, x, A, y: G * np.outer(x, y), id="bilinear_dA"),
    pytest.param("ij->i", None, [(3, 4)], (3,), 0, {"j": 4},
                 lambda G, A: np.repeat(G[:, None], 4, axis=1), id="row_sum"),
    pytest.param("ii->", None, [(3, 3)], (), 0, {"i": 3},
                 lambda G, A: G * np.eye(3), id="trace"),
    pytest.param("ii->i", None, [(3, 3)], (3,), 0, None,
                 lambda G, A: np.diag(G), id="diagonal"),
    pytest.param("j->ij", {"i": 2}, [(4,)], (2, 4), 0, None,
                 lambda G, b: G.sum(axis=0), id="bias"),
    pytest.param("...ij,...jk->...ik", None, [(2, 3, 4), (2, 4, 5)], (2, 3, 5), 1, None,
                 lambda G, A, B: A.transpose(0, 2, 1) @ G, id="batched_dB"),
]


@pytest.mark.parametrize("spec, sizes, shapes, out_shape, k, back_sizes, expected", CLOSURE)
def test_backward_spec_compiles_to_the_gradient(spec, sizes, shapes, out_shape, k, back_sizes, expected):
    """``compile(grad_spec(S, k))(G, *others)`` is the hand-derived gradient and vjp's."""
    rng = np.random.default_rng(9)
    ops = [rng.standard_normal(s) for s in shapes]
    G = rng.standard_normal(out_shape)
    back = einsgrad.compile(einsgrad.grad_spec(spec, k, sizes=sizes), sizes=back_sizes)
    got = back(G, *ops[:k], *ops[k + 1:])
    want = expected(G, *ops)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(einsgrad.compile(spec, sizes=sizes).vjp(G, *ops, wrt=k), want,
                               rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------
# Generated source.
# --------------------------------------------------------------------------------------


SOURCE_CASES = [
    pytest.param("ik,jk->ij", None, [(3, 4), (5, 4)], id="linear"),
    pytest.param("ij,jk,kl->il", None, [(2, 3), (3, 4), (4, 5)], id="chain"),
    pytest.param("ii->i", None, [(3, 3)], id="diagonal"),
    pytest.param("j->ij", {"i": 3}, [(4,)], id="bias"),
    pytest.param("...ij,...jk->...ik", None, [(2, 1, 3, 4), (1, 5, 4, 2)], id="batched_broadcast"),
    pytest.param("ij,jk->ik", None, [(3, 1), (4, 5)], id="size1_broadcast"),
    pytest.param("i->ii", None, [(3,)], id="place_on_diagonal"),
    pytest.param("ij->", None, [(3, 4)], id="sum_all"),
]


def _imported_modules(source: str) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            modules.add((node.module or "").split(".")[0])
    return modules


def _exec_source(source: str) -> dict:
    namespace: dict = {}
    exec(compile(source, "<einsgrad-source-test>", "exec"), namespace)  # noqa: S102
    return namespace


@pytest.mark.parametrize("spec, sizes, shapes", SOURCE_CASES)
def test_source_runs_with_numpy_alone(spec, sizes, shapes):
    """``source()`` defines ``forward`` and ``vjp``, imports numpy only, and reproduces the
    compiled object's values (which in turn match numpy.einsum / the hand formulas)."""
    rng = np.random.default_rng(10)
    ops = [rng.standard_normal(s) for s in shapes]
    lin = einsgrad.compile(spec, sizes=sizes)
    y = lin(*ops)
    G = rng.standard_normal(y.shape)
    grads = lin.vjp(G, *ops)
    source = lin.source()
    assert isinstance(source, str)
    assert "def forward" in source and "def vjp" in source
    assert _imported_modules(source) <= {"numpy"}
    namespace = _exec_source(source)
    (y_src, *_) = namespace["forward"](*ops)
    np.testing.assert_allclose(y_src, y, rtol=1e-12, atol=1e-12)
    grads_src = namespace["vjp"](G, *ops)
    assert len(grads_src) == len(ops)
    for k, (gs, g) in enumerate(zip(grads_src, grads)):
        assert np.shape(gs) == ops[k].shape
        np.testing.assert_allclose(gs, g, rtol=1e-12, atol=1e-12, err_msg=f"operand {k}")
    try:
        reference = np.einsum(spec, *ops)
    except ValueError:  # extended notation: numpy has no reference
        return
    np.testing.assert_allclose(y_src, reference, rtol=1e-12, atol=1e-12)


def test_source_from_compile_time_shapes_and_explicit_shapes():
    """``source()`` works before any call with ``shapes=``, and with shapes as arguments."""
    rng = np.random.default_rng(11)
    X, W, G = rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.standard_normal((3, 5))
    for source in (einsgrad.compile("ik,jk->ij", shapes=[(3, 4), (5, 4)]).source(),
                   einsgrad.compile("ik,jk->ij").source((3, 4), (5, 4))):
        namespace = _exec_source(source)
        np.testing.assert_allclose(namespace["forward"](X, W)[0], X @ W.T, rtol=1e-12)
        dX, dW = namespace["vjp"](G, X, W)
        np.testing.assert_allclose(dX, G @ W, rtol=1e-12)
        np.testing.assert_allclose(dW, G.T @ X, rtol=1e-12)


def test_source_follows_last_used_shapes():
    """Without ``shapes=`` the source is for the shapes of the latest new call."""
    lin = einsgrad.compile("ik,jk->ij")
    lin(np.ones((2, 3)), np.ones((4, 3)))
    lin(np.ones((6, 7)), np.ones((5, 7)))
    X, W = np.arange(42.0).reshape(6, 7), np.arange(35.0).reshape(5, 7)
    np.testing.assert_allclose(_exec_source(lin.source())["forward"](X, W)[0], X @ W.T)


def test_source_without_shapes_is_an_error():
    """``source()`` with no shapes known refuses with an ``EinsumSpecError``."""
    with pytest.raises(EinsumSpecError, match=r"source\(\) needs shapes"):
        einsgrad.compile("ik,jk->ij").source()


# --------------------------------------------------------------------------------------
# Size-0 dimensions.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, shapes, forward, grads", [
    pytest.param("ij,jk->ik", [(0, 3), (3, 4)], lambda A, B: A @ B,
                 lambda G, A, B: (G @ B.T, A.T @ G), id="empty_rows"),
    pytest.param("ij,jk->ik", [(2, 0), (0, 4)], lambda A, B: A @ B,
                 lambda G, A, B: (G @ B.T, A.T @ G), id="empty_contraction"),
    pytest.param("ij->", [(0, 3)], lambda A: A.sum(), lambda G, A: (G * np.ones_like(A),),
                 id="sum_of_empty"),
    pytest.param("ii->i", [(0, 0)], lambda A: np.diag(A).copy(), lambda G, A: (np.diag(G),),
                 id="empty_diagonal"),
    pytest.param("...ij->ij", [(0, 2, 3)], lambda A: A.sum(axis=0),
                 lambda G, A: (np.broadcast_to(G, A.shape).copy(),), id="empty_batch"),
    pytest.param("i,j->ij", [(0,), (3,)], lambda a, b: np.outer(a, b),
                 lambda G, a, b: (G @ b, G.T @ a), id="empty_outer"),
])
def test_size_zero_dimensions(spec, shapes, forward, grads):
    """Zero-size dimensions give numpy's (possibly zero) values and correctly shaped gradients."""
    rng = np.random.default_rng(12)
    ops = [rng.standard_normal(s) for s in shapes]
    lin = einsgrad.compile(spec)
    y = lin(*ops)
    expected = forward(*ops)
    assert y.shape == np.shape(expected)
    np.testing.assert_allclose(y, expected, atol=1e-12)
    G = rng.standard_normal(y.shape)
    for got_all in (lin.vjp(G, *ops), lin.value_and_pullback(*ops)[1](G)):
        for k, (g, e) in enumerate(zip(got_all, grads(G, *ops))):
            assert g.shape == ops[k].shape, f"operand {k}"
            np.testing.assert_allclose(g, e, atol=1e-12, err_msg=f"operand {k}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.complex128, np.complex64, np.int64])
@pytest.mark.parametrize("spec, shape", [
    ("ij->i", (300, 400)), ("ij->j", (300, 400)), ("ij->", (300, 400)),
    ("ijk->i", (20, 60, 70)), ("ijk->jk", (20, 60, 70)), ("ijk->ik", (20, 60, 70)),
    ("ij->i", (4, 20000)), ("ij->j", (20000, 4)),  # single precision: too long for a dot
])
@pytest.mark.parametrize("layout", ["c", "fortran"])
def test_large_sums_equal_numpy(spec, shape, dtype, layout):
    """Sums over 65536 elements and more (run as a product with a ones vector where the array
    is contiguous and floating) give numpy.einsum's values and dtype, forward and backward."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape) * 10
    x = (x + 1j * rng.standard_normal(shape) if np.dtype(dtype).kind == "c" else x).astype(dtype)
    x = np.asfortranarray(x) if layout == "fortran" else x
    y = einsgrad.compile(spec)(x)
    expected = np.einsum(spec, x.astype(np.complex128 if x.dtype.kind == "c" else np.float64))
    assert y.dtype == np.einsum(spec, x).dtype and y.shape == expected.shape
    bound = np.einsum(spec, np.abs(x).astype(np.float64))
    rtol = 1e-12 if np.dtype(dtype).char in "dDq" else 2e-5
    assert np.all(np.abs(y - expected) <= rtol * bound + 1e-300)
    # the same sums in a backward: "i->ij" broadcasts, its own backward "ij->i" sums
    inputs, output = spec.split("->")
    g = einsgrad.compile(f"{output}->{inputs}", sizes=dict(zip(inputs, shape))).vjp(x, np.ones(y.shape, dtype))
    assert np.all(np.abs(g - expected) <= rtol * bound + 1e-300)
