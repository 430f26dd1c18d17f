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
