"""Gradients of einsum specs checked against hand derivations from matrix calculus.

Every expected value here is written with plain numpy matrix operations (``G.T @ X``,
``G.sum(0)``, ``np.diag``...), never computed by einsgrad.
"""

from __future__ import annotations

import numpy as np
import pytest

import einsgrad


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _randn(rng, shape, dtype=np.float64):
    """Random values of ``shape`` and ``dtype`` (complex gets a random imaginary part)."""
    x = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        x = x + 1j * rng.standard_normal(shape)
    return np.asarray(x, dtype=dtype)


# --------------------------------------------------------------------------------------
# Each case: spec, sizes, operand shapes, output shape, forward(ops), gradients(G, ops).
# The forward and gradients are matrix calculus written by hand.
# --------------------------------------------------------------------------------------


def _trace_grads(G, A):
    return (G * np.eye(A.shape[0]),)


def _batched_grads(G, A, B):
    # A: (8,1,3,4) broadcast over axis 1; B: (1,5,4,2) broadcast over axis 0.
    dA = (G @ np.swapaxes(B, -1, -2)).sum(axis=1, keepdims=True)
    dB = (np.swapaxes(A, -1, -2) @ G).sum(axis=0, keepdims=True)
    return dA, dB


def _size1_grads(G, A, B):
    # Y_ik = Σ_j A_i0 B_jk = A[:, 0] ⊗ Σ_j B_j·.
    dA = (G @ B.sum(axis=0)).reshape(A.shape)
    dB = np.broadcast_to(A[:, 0] @ G, B.shape)
    return dA, dB


CASES = [
    pytest.param(
        "ik,jk->ij", None, [(3, 4), (5, 4)], (3, 5),
        lambda X, W: X @ W.T,
        lambda G, X, W: (G @ W, G.T @ X),
        id="linear_X_Wt"),
    pytest.param(
        "ik,kj->ij", None, [(3, 4), (4, 5)], (3, 5),
        lambda X, W: X @ W,
        lambda G, X, W: (G @ W.T, X.T @ G),
        id="matmul_X_W"),
    pytest.param(
        "j->ij", {"i": 3}, [(5,)], (3, 5),
        lambda b: np.tile(b, (3, 1)),
        lambda G, b: (G.sum(axis=0),),
        id="bias_broadcast"),
    pytest.param(
        "ii->", None, [(4, 4)], (),
        lambda A: np.trace(A),
        _trace_grads,
        id="trace"),
    pytest.param(
        "ii->i", None, [(4, 4)], (4,),
        lambda A: np.diag(A).copy(),
        lambda G, A: (np.diag(G),),
        id="diagonal"),
    pytest.param(
        "i,j->ij", None, [(3,), (4,)], (3, 4),
        lambda a, b: np.outer(a, b),
        lambda G, a, b: (G @ b, G.T @ a),
        id="outer_product"),
    pytest.param(
        "i,ij,j->", None, [(3,), (3, 4), (4,)], (),
        lambda x, A, y: x @ A @ y,
        lambda G, x, A, y: (G * (A @ y), G * np.outer(x, y), G * (A.T @ x)),
        id="bilinear_form"),
    pytest.param(
        "...ij,...jk->...ik", None, [(8, 1, 3, 4), (1, 5, 4, 2)], (8, 5, 3, 2),
        lambda A, B: A @ B,
        _batched_grads,
        id="batched_matmul_broadcast_batch"),
    pytest.param(
        "ij,ij->ij", None, [(3, 4), (3, 4)], (3, 4),
        lambda A, B: A * B,
        lambda G, A, B: (G * B, G * A),
        id="hadamard"),
    pytest.param(
        "ij->ji", None, [(3, 4)], (4, 3),
        lambda A: A.T.copy(),
        lambda G, A: (G.T,),
        id="transpose"),
    pytest.param(
        "ij->", None, [(3, 4)], (),
        lambda A: A.sum(),
        lambda G, A: (G * np.ones_like(A),),
        id="sum_all"),
    pytest.param(
        "ij,jk->ik", None, [(3, 1), (4, 5)], (3, 5),
        lambda A, B: np.outer(A[:, 0], B.sum(axis=0)),
        _size1_grads,
        id="size1_labelled_broadcast"),
    pytest.param(
        ",ij->ij", None, [(), (3, 4)], (3, 4),
        lambda s, M: s * M,
        lambda G, s, M: ((G * M).sum(), s * G),
        id="scalar_times_matrix"),
]


@pytest.mark.parametrize("spec, sizes, shapes, out_shape, forward, grads", CASES)
def test_forward_matches_hand_derivation(spec, sizes, shapes, out_shape, forward, grads):
    """The forward value equals the matrix expression it stands for."""
    rng = _rng(1)
    ops = [_randn(rng, s) for s in shapes]
    y = einsgrad.compile(spec, sizes=sizes)(*ops)
    expected = forward(*ops)
    assert y.shape == out_shape
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("spec, sizes, shapes, out_shape, forward, grads", CASES)
def test_vjp_matches_hand_derivation(spec, sizes, shapes, out_shape, forward, grads):
    """Every gradient from ``vjp`` equals the hand-derived matrix expression."""
    rng = _rng(2)
    ops = [_randn(rng, s) for s in shapes]
    G = _randn(rng, out_shape)
    got = einsgrad.compile(spec, sizes=sizes).vjp(G, *ops)
    expected = grads(G, *ops)
    assert len(got) == len(ops)
    for k, (g, e, x) in enumerate(zip(got, expected, ops)):
        assert g.shape == x.shape, f"operand {k}"
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12, err_msg=f"operand {k}")


@pytest.mark.parametrize("spec, sizes, shapes, out_shape, forward, grads", CASES)
def test_pullback_matches_hand_derivation(spec, sizes, shapes, out_shape, forward, grads):
    """``value_and_pullback`` gives the same value and gradients as the hand derivation."""
    rng = _rng(3)
    ops = [_randn(rng, s) for s in shapes]
    G = _randn(rng, out_shape)
    y, pullback = einsgrad.compile(spec, sizes=sizes).value_and_pullback(*ops)
    np.testing.assert_allclose(y, forward(*ops), rtol=1e-12, atol=1e-12)
    got = pullback(G)
    for k, (g, e, x) in enumerate(zip(got, grads(G, *ops), ops)):
        assert g.shape == x.shape, f"operand {k}"
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12, err_msg=f"operand {k}")


@pytest.mark.parametrize("spec, sizes, shapes, out_shape, forward, grads", CASES)
def test_each_wrt_alone_matches_hand_derivation(spec, sizes, shapes, out_shape, forward, grads):
    """Asking for one gradient at a time (int ``wrt``) gives the same hand-derived value."""
    rng = _rng(4)
    ops = [_randn(rng, s) for s in shapes]
    G = _randn(rng, out_shape)
    lin = einsgrad.compile(spec, sizes=sizes)
    for k, e in enumerate(grads(G, *ops)):
        g = lin.vjp(G, *ops, wrt=k)
        assert isinstance(g, np.ndarray)
        assert g.shape == ops[k].shape
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12, err_msg=f"operand {k}")


# --------------------------------------------------------------------------------------
# Complex: the plain contraction of G with the other operands, without conjugation.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [
    pytest.param(np.complex128, id="complex128"),
    pytest.param(np.complex64, id="complex64"),
])
def test_complex_linear_layer_has_no_conjugation(dtype):
    """``Y = X Wᵀ`` with complex values: ``dX = G W`` and ``dW = Gᵀ X``, no conjugate."""
    rng = _rng(5)
    X, W, G = (_randn(rng, s, dtype) for s in [(3, 4), (5, 4), (3, 5)])
    dX, dW = einsgrad.compile("ik,jk->ij").vjp(G, X, W)
    tol = 1e-12 if dtype == np.complex128 else 1e-5
    assert dX.dtype == dtype and dW.dtype == dtype
    np.testing.assert_allclose(dX, G @ W, rtol=tol, atol=tol)
    np.testing.assert_allclose(dW, G.T @ X, rtol=tol, atol=tol)
    # The conjugated (Wirtinger) answer differs: guard against it explicitly.
    assert not np.allclose(dX, G @ W.conj(), rtol=tol, atol=tol)


def test_complex_layer_real_operand_gets_real_part():
    """A real input next to a complex weight gets the real part of ``G W``, as float64."""
    rng = _rng(6)
    X = _randn(rng, (3, 4))
    W, G = _randn(rng, (5, 4), np.complex128), _randn(rng, (3, 5), np.complex128)
    dX, dW = einsgrad.compile("ik,jk->ij").vjp(G, X, W)
    assert dX.dtype == np.float64 and dX.shape == X.shape
    assert dW.dtype == np.complex128
    np.testing.assert_allclose(dX, (G @ W).real, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dW, G.T @ X, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------
# Backward spec strings, written by hand.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, wrt, sizes, expected", [
    pytest.param("ik,jk->ij", 0, None, "ij,jk->ik", id="linear_dX"),
    pytest.param("ik,jk->ij", 1, None, "ij,ik->jk", id="linear_dW"),
    pytest.param("ik,kj->ij", 0, None, "ij,kj->ik", id="matmul_dX"),
    pytest.param("ik,kj->ij", 1, None, "ij,ik->kj", id="matmul_dW"),
    pytest.param("j->ij", 0, {"i": 3}, "ij->j", id="bias"),
    pytest.param("ij->i", 0, None, "i->ij", id="row_sum"),
    pytest.param("ii->", 0, None, "->ii", id="trace"),
    pytest.param("ii->i", 0, None, "i->ii", id="diagonal"),
    pytest.param("i,j->ij", 0, None, "ij,j->i", id="outer_da"),
    pytest.param("i,j->ij", 1, None, "ij,i->j", id="outer_db"),
    pytest.param("i,ij,j->", 0, None, ",ij,j->i", id="bilinear_dx"),
    pytest.param("i,ij,j->", 1, None, ",i,j->ij", id="bilinear_dA"),
    pytest.param("i,ij,j->", 2, None, ",i,ij->j", id="bilinear_dy"),
    pytest.param("...ij,...jk->...ik", 0, None, "...ik,...jk->...ij", id="batched_dA"),
    pytest.param("...ij,...jk->...ik", 1, None, "...ik,...ij->...jk", id="batched_dB"),
    pytest.param("ij,ij->ij", 1, None, "ij,ij->ij", id="hadamard"),
    pytest.param("ij->ji", 0, None, "ji->ij", id="transpose"),
    pytest.param("ij->", 0, None, "->ij", id="sum_all"),
    pytest.param(",ij->ij", 0, None, "ij,ij->", id="scalar_ds"),
    pytest.param(",ij->ij", 1, None, "ij,->ij", id="scalar_dM"),
    pytest.param("...ij->ij", 0, None, "ij->...ij", id="batch_sum"),
    pytest.param("ik,jk", 1, None, "ij,ik->jk", id="implicit_output"),
    pytest.param("ij,jk,kl->il", -1, None, "il,ij,jk->kl", id="negative_wrt"),
])
def test_grad_spec_strings(spec, wrt, sizes, expected):
    """``grad_spec`` gives the hand-written backward spec: cotangent first, then the rest."""
    assert einsgrad.grad_spec(spec, wrt, sizes=sizes) == expected


@pytest.mark.parametrize("spec, expected", [
    pytest.param("ik,jk->ij", ("ij,jk->ik", "ij,ik->jk"), id="linear"),
    pytest.param("i,ij,j->", (",ij,j->i", ",i,j->ij", ",i,ij->j"), id="bilinear"),
    pytest.param("ii->i", ("i->ii",), id="diagonal"),
])
def test_grad_specs_property(spec, expected):
    """``Einsum.grad_specs`` lists every operand's backward spec in operand order."""
    assert einsgrad.compile(spec).grad_specs == expected


# --------------------------------------------------------------------------------------
# The symbolic involution: differentiating the backward w.r.t. its cotangent.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, wrt, sizes, back_sizes, expected", [
    pytest.param("ik,jk->ij", 0, None, None, "ik,jk->ij", id="linear_0"),
    pytest.param("ik,jk->ij", 1, None, None, "jk,ik->ij", id="linear_1"),
    pytest.param("i,ij,j->", 2, None, None, "j,i,ij->", id="bilinear_2"),
    pytest.param("i,ij,j->", 1, None, None, "ij,i,j->", id="bilinear_1"),
    pytest.param("abc,cd,de->abe", 1, None, None, "cd,abc,de->abe", id="chain_1"),
    pytest.param("...ij,...jk->...ik", 1, None, None, "...jk,...ij->...ik", id="batched_1"),
    pytest.param("ij->i", 0, None, {"j": 4}, "ij->i", id="row_sum"),
    pytest.param("ii->i", 0, None, None, "ii->i", id="diagonal"),
    pytest.param("j->ij", 0, {"i": 3}, None, "j->ij", id="bias"),
])
def test_grad_spec_twice_moves_operand_first(spec, wrt, sizes, back_sizes, expected):
    """``grad_spec(grad_spec(S, k), 0)`` is ``S`` with operand ``k`` moved to the front.

    A backward spec with a broadcast (``"i->ij"``) needs ``sizes=`` to be read again.
    """
    once = einsgrad.grad_spec(spec, wrt, sizes=sizes)
    assert einsgrad.grad_spec(once, 0, sizes=back_sizes) == expected
