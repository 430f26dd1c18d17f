"""The derivation value: each step it keeps is checked numerically, and the narrators only render it.

Every intermediate step of a :class:`~einsgrad.derivation.Derivation` (the product rule's
summands with their deltas, the chain with the cotangent, the deltas contracted) is evaluated
here by plain ``numpy.einsum`` with ``numpy.eye`` for each delta, and must equal the gradient
by finite differences of an independent evaluation of the program (``reference`` of
test_program). So a step the narrators print cannot be wrong while the result is right.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import einsgrad
from einsgrad import derivation, explanation, program_explanation, programs
from test_program import SIZE, TENSORS, _arrays, _numeric, check_gradient, programs as random_programs
from test_program import reference, render


def evaluate(product, free, arrays) -> np.ndarray:
    """``Σ_over Π factors`` over the indices ``free`` (broadcast along those no factor holds),
    every index of size SIZE."""
    names = sorted({i for f in product.factors for i in f.indices} | set(free), key=str)
    letter = {name: chr(ord("a") + n) for n, name in enumerate(names)}
    operands = [np.eye(SIZE) if f.is_delta else arrays[f.name] for f in product.factors]
    spec = ",".join("".join(letter[i] for i in f.indices) for f in product.factors)
    held = [i for i in free if any(i in f.indices for f in product.factors)]
    value = np.einsum(f"{spec}->{''.join(letter[i] for i in held)}", *operands) if operands else np.ones(())
    shape = [SIZE if i in held else 1 for i in free]
    return np.broadcast_to(np.reshape(value, shape), (SIZE,) * len(free))


def total(steps, free, arrays) -> np.ndarray:
    return sum((float(c) * evaluate(p, free, arrays) for c, p in steps), np.zeros((SIZE,) * len(free)))


@settings(max_examples=60, deadline=None)
@given(random_programs(), st.integers(0, 2**16))
def test_every_step_of_a_gradient_is_the_gradient(case, seed):
    output, terms = case
    prog = einsgrad.program(render(output, terms))
    a = _arrays({name: (SIZE,) * rank for name, rank in TENSORS.items()}, seed)
    G = np.random.default_rng(seed + 1).standard_normal((SIZE,) * len(output)) if output else 1.0
    given_arrays = {**a, "dY": G}
    for name in prog.inputs:
        grad = prog.grad(name)
        d = grad.derivation
        assert d.name == name and d.terms == grad.terms and d.result_indices == grad.output_indices
        assert len(d.occurrences) == sum(f.name == name for t in prog.terms for f in t.factors)
        assert len(d.groups) == len(d.occurrences)
        summands = total(d.chained, d.indices, given_arrays)
        contracted = total(d.contracted, d.indices, given_arrays)
        np.testing.assert_allclose(contracted, summands, rtol=1e-9, atol=1e-9)

        def forward(x, name=name):
            return np.sum(G * reference(output, _numeric(terms), {**a, name: x},
                                        {i: SIZE for i in "ijklmnopqrstuvwxyz"}))
        check_gradient(forward, summands, a[name], entrywise=False)


@pytest.mark.parametrize("text, name", [
    ("Y[i,j] = X[i,k] * W[j,k] + b[j]", "W"),
    ("Y[i] = A[i,i] * x[i] + A[i,j] * A[j,i]", "A"),
    ("f = x[i] * A[i,j] * x[j]", "x"),
])
def test_every_step_of_a_jacobian_is_the_jacobian(text, name):
    prog = einsgrad.program(text)
    rng = np.random.default_rng(0)
    arrays = {n: rng.standard_normal((SIZE,) * r) for n, r in prog.accepts}
    jacobian = prog.jacobian(name)
    d = jacobian.derivation
    assert d.cotangent is None and d.kept == prog.output_indices
    free = d.kept + d.indices
    expected = jacobian(**arrays)
    np.testing.assert_allclose(total(d.chained, free, arrays), expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(total(d.contracted, free, arrays), expected, rtol=1e-9, atol=1e-9)


def test_explain_renders_the_derivations_that_grad_made(monkeypatch):
    """One derivation per gradient (and per Hessian); the narrators simplify nothing."""
    calls = []
    original = derivation.differentiate
    monkeypatch.setattr(programs, "differentiate", lambda *a, **k: calls.append(a[2]) or original(*a, **k))
    prog = einsgrad.program("f = x[i] * A[i,j] * x[j] + 2 * x[i] * b[i]")
    prog.explain()
    assert calls == list(prog.inputs)
    calls.clear()
    prog.explain("x", style="hessian")
    assert calls == ["x", "x"]  # the gradient, then its Jacobian
    for narrator in (program_explanation, explanation):
        for simplifier in ("merge_like_terms", "simplify", "contract_deltas", "canonical_summed"):
            assert not hasattr(narrator, simplifier), (narrator.__name__, simplifier)


def test_the_derivation_names_what_the_narrator_writes():
    """The fresh indices are the narrator's ``p, q``, clear of every name in use."""
    prog = einsgrad.program("Y[p,q] = p[p,r] * q[q,r]")
    d = prog.grad("p").derivation
    assert prog.output_indices == ("i", "j")  # canonical: the tensors p, q keep their names
    assert d.indices == ("r", "s") and d.cotangent.name == "dY" and d.loss == "L"
    assert "∂L/∂p_rs" in str(prog.explain("p"))
