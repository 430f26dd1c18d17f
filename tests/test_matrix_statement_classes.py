"""Matrix forms that generated programs lacked, one test per class the census found
(tests/form_census.py): each expected text is the textbook derivation written by hand, and
each value is checked three ways, the printed form read back (test_matrix_statements'
reader), the derived program, and central differences of the loss written here in numpy.
"""

from __future__ import annotations

import numpy as np
import pytest

import einsgrad
from oracles import central_gradient
from test_matrix_statements import evaluate

RNG = np.random.default_rng(23)


def _arrays(shapes: dict) -> dict:
    return {n: RNG.standard_normal(s) * 0.7 for n, s in shapes.items()}


def _check(text, name, expected_form, loss, arrays, textbook):
    """The printed form is ``expected_form``, and it, the derived program and central
    differences of ``loss`` all equal ``textbook`` (a numpy formula written by hand)."""
    p = einsgrad.program(text)
    form = p.explain(name).gradients[0].matrix_form
    assert form == expected_form
    value = textbook(**arrays)
    np.testing.assert_allclose(evaluate(form, arrays, np.shape(arrays[name])), value, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(p.grad(name)(**{n: arrays[n] for n in p.inputs}), value, rtol=1e-10, atol=1e-12)
    differences = central_gradient(lambda v: loss(**{**arrays, name: v}), arrays[name])
    np.testing.assert_allclose(differences, value, rtol=1e-6, atol=1e-8)


# -- many entrywise factors over the same indices: one entrywise product --------------------------
# A term of more operands than a form is searched for (six), most of them over the same two
# indices: Σ_k of an entrywise product is (A ∘ B ∘ ...)ᵀ 1, a column scaling is (...) Diag(x).

_MANY = "Q[k,i] * tanh(C[k,i]) * exp(C[k,i]) * sin(C[k,i]) * cos(C[k,i]) * D[k,i]"
_SHAPES = {"Q": (2, 3), "C": (2, 3), "D": (2, 3), "E": (2, 3), "P": (3, 2), "x": (3,), "y": (2,), "s": ()}


def _many(C, Q, D):
    return Q * np.tanh(C) * np.exp(C) * np.sin(C) * np.cos(C) * D


def test_many_entrywise_factors_summed_along_rows():
    """∂/∂x_i Σ_ki x_i M_ki E_ki = Σ_k (M ∘ E)_ki, the column sums: ``(M ∘ E)ᵀ 1``."""
    text = f"L = {_MANY} * E[k,i] * x[i]"
    _check(text, "x", "∂L/∂x = (Q ∘ tanh(C) ∘ exp(C) ∘ sin(C) ∘ cos(C) ∘ D ∘ E)ᵀ 1",
           lambda C, Q, D, E, x, **_: np.sum(_many(C, Q, D) * E * x),
           _arrays(_SHAPES), lambda C, Q, D, E, **_: (_many(C, Q, D) * E).sum(axis=0))


def test_many_entrywise_factors_scaled_by_a_vector_and_a_scalar():
    """∂/∂E_ki Σ s x_i M_ki E_ki = s M_ki x_i: the columns of M scaled by x, ``s M Diag(x)``."""
    text = f"L = s * x[i] * {_MANY} * E[k,i]"
    _check(text, "E", "∂L/∂E = s (Q ∘ tanh(C) ∘ exp(C) ∘ sin(C) ∘ cos(C) ∘ D) Diag(x)",
           lambda C, Q, D, E, x, s, **_: np.sum(s * x * _many(C, Q, D) * E),
           _arrays(_SHAPES), lambda C, Q, D, x, s, **_: s * _many(C, Q, D) * x)


def test_many_entrywise_factors_one_of_them_transposed():
    """∂/∂y_k Σ y_k x_i M_ki P_ik = Σ_i (M ∘ Pᵀ)_ki x_i: ``(M ∘ Pᵀ) x``."""
    text = f"L = y[k] * x[i] * {_MANY} * P[i,k]"
    _check(text, "y", "∂L/∂y = (Q ∘ tanh(C) ∘ exp(C) ∘ sin(C) ∘ cos(C) ∘ D ∘ Pᵀ) x",
           lambda C, Q, D, P, x, y, **_: np.einsum("k,i,ki,ik->", y, x, _many(C, Q, D), P),
           _arrays(_SHAPES), lambda C, Q, D, P, x, **_: (_many(C, Q, D) * P.T) @ x)


# -- a written-in cotangent too long to print: the forward's temporaries it repeats named ---------
# L = c Σ_i q_i u_i², u = S0 (x ∘ A 1) - 2, S0 = 2 s, c = s 1ᵀ y. By hand:
# dL/ds = (1ᵀ y) uᵀ (q ∘ u) + c Σ_i 2 q_i u_i (x_i (A 1)_i) dS0/ds = (uᵀ (q ∘ u)) 1ᵀ y + 4 ((c (q ∘ u)) ∘ x)ᵀ A 1.
# Reverse mode keeps the cotangent dS0, which writes u in twice; where that is longer than the
# writer prints in place (MAX_WRITTEN_IN), u is named instead of the form being refused.

_LONG = "S0 = 2 * s\nS1[i] = (sum[j](A[i,j] * (S0 * x[i])) - 2)^2 * sum[j](y[j] * s)\nL = S1[i] * q[i]"


def _long_loss(A, x, y, q, s, **_):
    u = 2 * s * x * A.sum(axis=1) - 2
    return np.sum(q * u ** 2) * s * y.sum()


def _long_gradient(A, x, y, q, s, **_):
    u = 2 * s * x * A.sum(axis=1) - 2
    return u @ (q * u) * y.sum() + 4 * ((s * y.sum() * (q * u)) * x) @ A.sum(axis=1)


@pytest.mark.parametrize("limit", [2000, 40])
def test_a_long_written_in_cotangent_names_the_temporaries_it_repeats(monkeypatch, limit):
    from einsgrad import matrix_statements

    monkeypatch.setattr(matrix_statements, "MAX_WRITTEN_IN", limit)
    arrays = _arrays({"A": (3, 4), "x": (3,), "y": (4,), "q": (3,), "s": ()})
    _check(_LONG, "s", "∂L/∂s = (t1ᵀ (q ∘ t1)) 1ᵀ y + 4 ((((s 1ᵀ y) (q ∘ t1)) ∘ x)ᵀ A 1), "
           "with t1 = S0 (x ∘ (A 1)) - 2, S0 = 2 s", _long_loss, arrays, _long_gradient)
