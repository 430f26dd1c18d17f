"""``Einsum.jacobian``: the full Jacobian, against hand formulas, central finite differences
(numpy.einsum or the reference evaluator of the extended notation as the forward) and the
identity ``vjp(G) == tensordot(G, J, axes=Y.ndim)``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import einsgrad
from einsgrad import EinsumSpecError
from oracles import reference_einsum, upcast
from strategies import ALL_DTYPES, EXACT_DTYPES, einsum_cases, extended_cases


def finite_difference_jacobian(f, operands, k: int) -> np.ndarray:
    """``∂f/∂x_k`` entry by entry, shape ``f.shape + x_k.shape``, in double precision.

    f is linear in ``x_k``, so the central difference with a unit step is exact up to
    rounding; a holomorphic f needs no conjugation and no imaginary step.
    """
    xs = [upcast(x) for x in operands]
    y = np.asarray(f(*xs))
    jacobian = np.zeros(y.shape + xs[k].shape, dtype=np.result_type(*xs))
    for index in np.ndindex(*xs[k].shape):
        step = np.zeros(xs[k].shape)
        step[index] = 1.0
        plus, minus = list(xs), list(xs)
        plus[k], minus[k] = xs[k] + step, xs[k] - step
        jacobian[(...,) + index] = (np.asarray(f(*plus)) - np.asarray(f(*minus))) / 2
    return jacobian


def _assert_close(got, expected, rtol):
    scale = max(1.0, float(np.abs(upcast(expected)).max(initial=0.0)))
    np.testing.assert_allclose(upcast(got), upcast(expected), rtol=rtol, atol=rtol * scale)


# -- hand-derived ------------------------------------------------------------------------


def test_linear_layer_jacobian_by_hand():
    """``Y = X Wᵀ``: ``∂Y_ij/∂W_pq = X_iq δ_jp`` and ``∂Y_ij/∂X_pq = δ_ip W_jq``."""
    rng = np.random.default_rng(0)
    X, W = rng.standard_normal((4, 3)), rng.standard_normal((5, 3))
    i, j, p, q = np.ogrid[:4, :5, :5, :3]
    expected_w = X[i, q] * (j == p)
    lin = einsgrad.compile("ik,jk->ij")
    J = lin.jacobian(X, W, wrt=1)
    assert J.shape == (4, 5, 5, 3) and J.dtype == np.float64
    np.testing.assert_array_equal(J, expected_w)
    i, j, p, q = np.ogrid[:4, :5, :4, :3]
    np.testing.assert_array_equal(lin.jacobian(X, W, wrt=0), (i == p) * W[j, q])
    np.testing.assert_array_equal(lin.jacobian(X, W, wrt=-2), (i == p) * W[j, q])


@pytest.mark.parametrize("spec, shape, expected", [
    pytest.param("ii->", (3, 3), lambda: np.eye(3), id="trace: the identity"),
    pytest.param("ij->i", (2, 3), lambda: np.eye(2)[:, :, None] * np.ones(3), id="row sum"),
    pytest.param("ii->i", (3, 3), lambda: np.einsum("ip,iq->ipq", np.eye(3), np.eye(3)),
                 id="diagonal: two deltas"),
    pytest.param("ij->ji", (2, 3), lambda: np.einsum("jq,ip->jipq", np.eye(3), np.eye(2)),
                 id="transpose"),
    pytest.param("->", (), lambda: np.ones(()), id="scalar"),
])
def test_one_operand_jacobians(spec, shape, expected):
    """A one-operand forward's Jacobian is made of deltas alone (the scalar 1 as its operand)."""
    x = np.random.default_rng(1).standard_normal(shape)
    J = einsgrad.compile(spec).jacobian(x, wrt=0)
    np.testing.assert_array_equal(J, expected())
    assert J.flags.writeable and not np.shares_memory(J, x)


def test_size_one_broadcast_in_the_operand():
    """A size-1 dimension broadcast against a larger one: ``Y_ij = a_i0 b_ij`` gives
    ``∂Y_ij/∂a_p0 = δ_ip b_ij``, of shape Y.shape + (3, 1)."""
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((3, 1)), rng.standard_normal((3, 4))
    J = einsgrad.compile("ij,ij->ij").jacobian(a, b, wrt=0)
    i, j, p, _ = np.ogrid[:3, :4, :3, :1]
    np.testing.assert_array_equal(J, (i == p) * b[i, j])


@pytest.mark.parametrize("dtypes, k, expected", [
    pytest.param(("float64", "float64"), 1, "float64", id="float64"),
    pytest.param(("float32", "float64"), 0, "float32", id="a float32 operand stays float32"),
    pytest.param(("float64", "float32"), 0, "float64", id="float64 operand of a mixed pair"),
    pytest.param(("float64", "complex128"), 0, "complex128", id="a real operand of a complex map"),
    pytest.param(("float32", "complex128"), 0, "complex64", id="complex of its own precision"),
    pytest.param(("complex64", "complex64"), 1, "complex64", id="complex64"),
    pytest.param(("int64", "int64"), 1, "int64", id="integers"),
])
def test_dtype_is_the_vjps(dtypes, k, expected):
    """The vjp's dtype for that operand, complex where the Jacobian has complex entries."""
    a, b = np.ones((2, 3), dtype=dtypes[0]), np.ones((4, 3), dtype=dtypes[1])
    assert einsgrad.compile("ik,jk->ij").jacobian(a, b, wrt=k).dtype == np.dtype(expected)


def test_complex_jacobian_needs_no_conjugation():
    """``Y = a b`` (an outer product) of complex vectors: ``∂Y_ij/∂a_p = δ_ip b_j``, not conj(b)."""
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal(2) + 1j * rng.standard_normal(2), rng.standard_normal(3) + 1j
    J = einsgrad.compile("i,j->ij").jacobian(a, b, wrt=0)
    np.testing.assert_array_equal(J, np.einsum("ip,j->ijp", np.eye(2), b))


# -- errors --------------------------------------------------------------------------------


def test_too_large_jacobian_is_refused():
    """More than 2**24 elements is refused, saying how many and why."""
    lin = einsgrad.compile("ij,jk->ik")
    a, b = np.empty((128, 64)), np.empty((64, 64))
    with pytest.raises(EinsumSpecError, match=r"would hold 67,108,864 elements .*more than the 16,777,216"):
        lin.jacobian(a, b, wrt=0)
    assert lin.jacobian(np.empty((64, 64)), b, wrt=0).size == 2**24  # the limit itself is fine


def test_wrt_out_of_range_is_refused():
    with pytest.raises(EinsumSpecError, match=r"wrt=2 is out of range"):
        einsgrad.compile("ik,jk->ij").jacobian(np.ones((2, 3)), np.ones((4, 3)), wrt=2)


def test_wrt_is_required():
    with pytest.raises(TypeError, match=r"wrt"):
        einsgrad.compile("ik,jk->ij").jacobian(np.ones((2, 3)), np.ones((4, 3)))


def test_shape_mismatch_names_the_operand():
    with pytest.raises(EinsumSpecError, match=r"label 'k' has size 3 in operand 0 but 2 in operand 1"):
        einsgrad.compile("ik,jk->ij").jacobian(np.ones((2, 3)), np.ones((4, 2)), wrt=0)


# -- hypothesis: finite differences and the vjp identity -------------------------------------


@given(einsum_cases(dtypes=EXACT_DTYPES), st.data())
def test_jacobian_matches_finite_differences(case, data):
    """Repeated labels, ellipsis, size-1 broadcasting, scalars, complex: numpy.einsum is the
    forward of the finite differences."""
    k = data.draw(st.integers(0, len(case.shapes) - 1), label="wrt")
    operands = case.operands()
    J = einsgrad.compile(case.spec).jacobian(*operands, wrt=k)
    expected = finite_difference_jacobian(lambda *xs: np.einsum(case.spec, *xs), operands, k)
    assert J.shape == expected.shape
    _assert_close(J, expected, 1e-12)


@given(extended_cases(), st.data())
def test_extended_jacobian_matches_finite_differences(case, data):
    """The extended notation (broadcasts, output diagonals, sums over the batch): the
    reference evaluator is the forward of the finite differences."""
    k = data.draw(st.integers(0, len(case.shapes) - 1), label="wrt")
    operands = case.operands()
    J = einsgrad.compile(case.spec, sizes=case.sizes).jacobian(*operands, wrt=k)
    forward = lambda *xs: reference_einsum(case.inputs, case.output, xs, case.sizes)  # noqa: E731
    expected = finite_difference_jacobian(forward, operands, k)
    assert J.shape == expected.shape
    _assert_close(J, expected, 1e-12)


@given(einsum_cases(dtypes=ALL_DTYPES), st.data())
def test_vjp_is_the_cotangent_times_the_jacobian(case, data):
    """``vjp(G) == tensordot(G, J, axes=Y.ndim)`` (its real part for a real operand)."""
    k = data.draw(st.integers(0, len(case.shapes) - 1), label="wrt")
    operands = case.operands()
    compiled = einsgrad.compile(case.spec)
    y = compiled(*operands)
    G = case.cotangent(y.shape)
    J = compiled.jacobian(*operands, wrt=k)
    expected = np.tensordot(upcast(G), upcast(J), axes=y.ndim)
    if not np.iscomplexobj(operands[k]):
        expected = expected.real
    low = any(np.dtype(d) in (np.float32, np.complex64) for d in case.dtypes)
    _assert_close(compiled.vjp(G, *operands, wrt=k), expected, 1e-4 if low else 1e-12)
