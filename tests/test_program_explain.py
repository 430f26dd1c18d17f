"""``Program.explain``: a program's gradients derived by hand, step by step.

The text tests look for the steps a careful person writes (each substring below is written
by hand), never for whole copied outputs; the einsums it reports are checked against matrix
calculus written with numpy; random programs check that the result it derives is the one
``Program.grad`` computes.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings

import einsgrad
from einsgrad import EinsumSpecError
from test_program import programs, render

LINEAR = "Y[i,j] = X[i,k] * W[j,k] + b[j]"
QUADRATIC = "f = x[i] * A[i,j] * x[j]"


def _einsum_sum(gradient, terms, arrays):
    """The gradient from the reported einsums: ``Σ c numpy.einsum(spec, operands)``."""
    return sum(float(t.coefficient) * np.einsum(spec, *(arrays[f.name] for f in t.factors))
               for t, spec in zip(terms, gradient.einsums))


def test_linear_layer_weight():
    text = str(einsgrad.program(LINEAR).explain("W"))
    for step in ["1. The program with its sums written out: Y_ij = Σ_k X_ik W_jk + b_j",
                 "2. Chain rule for one entry: ∂L/∂W_pq = Σ_ij G_ij ∂Y_ij/∂W_pq",
                 "with G = ∂L/∂Y",
                 "3. W occurs once: ∂W_jk/∂W_pq = δ_jp δ_kq",
                 "∂Y_ij/∂W_pq = Σ_k X_ik δ_jp δ_kq",
                 "4. Contracting the deltas: ∂L/∂W_pq = Σ_ijk G_ij X_ik δ_jp δ_kq = Σ_i G_ip X_iq",
                 '5. Renaming p, q to j, k: "dW[j,k] = dY[i,j] * X[i,k]"',
                 '"ij,ik->jk"', "In matrix form: ∂L/∂W = Gᵀ X"]:
        assert step in text
    assert "Gradient with respect to X" not in text


def test_linear_layer_every_input_and_the_einsums_compute_the_gradients():
    prog = einsgrad.program(LINEAR)
    e = prog.explain()
    assert [g.name for g in e.gradients] == ["X", "W", "b"]
    assert [g.result for g in e.gradients] == [str(prog.grad(n)) for n in "XWb"]
    assert [g.matrix_form for g in e.gradients] == ["∂L/∂X = G W", "∂L/∂W = Gᵀ X", "∂L/∂b = Gᵀ 1"]
    rng = np.random.default_rng(0)
    a = {"X": rng.standard_normal((3, 4)), "W": rng.standard_normal((5, 4)),
         "dY": rng.standard_normal((3, 5))}
    by_hand = {"X": a["dY"] @ a["W"], "W": a["dY"].T @ a["X"], "b": a["dY"].sum(axis=0)}
    for g in e.gradients:
        got = _einsum_sum(g, prog.grad(g.name).terms, a)
        np.testing.assert_allclose(got, by_hand[g.name], rtol=1e-12)


def test_broadcast_bias_sums_the_cotangent():
    text = str(einsgrad.program(LINEAR).explain("b"))
    assert "∂b_j/∂b_p = δ_jp" in text
    assert "∂L/∂b_p = Σ_ij G_ij δ_jp = Σ_i G_ip" in text
    assert "b_j lacks Y's index i: the forward broadcast b along i" in text
    assert "sums G over i: Σ_i G_ip." in text
    assert '"db[j] = dY[i,j]"' in text and '"ij->j"' in text


def test_summed_index_only_in_the_tensor_is_a_broadcast_of_the_gradient():
    text = str(einsgrad.program("Y[i] = A[i,j]").explain("A"))
    assert "A_ij alone holds j, which the forward sums: the gradient is constant along j" in text
    assert '"dA[i,j] = dY[i] + 0 * A[k,j]"' in text and '"i->ij"' in text


def test_quadratic_form_two_occurrences():
    e = einsgrad.program(QUADRATIC).explain("x")
    text = str(e)
    assert "2. f is a scalar: the gradient is ∂f/∂x_p directly." in text
    assert "3. x occurs twice: ∂x_i/∂x_p = δ_ip, ∂x_j/∂x_p = δ_jp" in text
    assert "∂f/∂x_p = Σ_ij δ_ip A_ij x_j + Σ_ij x_i A_ij δ_jp" in text
    assert "4. Contracting the deltas: ∂f/∂x_p = Σ_j A_pj x_j + Σ_i x_i A_ip" in text
    assert '"g[i] = A[i,j] * x[j] + x[j] * A[j,i]"' in text
    assert "merge" not in text  # A x and Aᵀ x differ unless A is symmetric
    (g,) = e.gradients
    assert g.einsums == ("ij,j->i", "j,ji->i") and g.matrix_form == "∂f/∂x = (A + Aᵀ) x"  # A x + Aᵀ x, factored
    rng = np.random.default_rng(1)
    a = {"A": rng.standard_normal((4, 4)), "x": rng.standard_normal(4)}
    got = _einsum_sum(g, einsgrad.program(QUADRATIC).grad("x").terms, a)
    np.testing.assert_allclose(got, (a["A"] + a["A"].T) @ a["x"], rtol=1e-12)


def test_like_terms_merge():
    e = einsgrad.program("f = x[i] * x[i]").explain("x")
    text = str(e)
    assert "∂f/∂x_p = Σ_i δ_ip x_i + Σ_i x_i δ_ip" in text
    assert "= x_p + x_p" in text
    assert "Terms 1 and 2 of step 4 are equal up to renaming and merge: 2 * x[i]." in text
    assert e.gradients[0].result == "g[i] = 2 * x[i]" and e.gradients[0].matrix_form == "∂f/∂x = 2 x"


def test_trace_keeps_its_delta():
    e = einsgrad.program("f = X[i,i]").explain("X")
    text = str(e)
    assert "∂X_ii/∂X_pq = δ_ip δ_iq" in text and "∂f/∂X_pq = Σ_i δ_ip δ_iq" in text
    assert "∂f/∂X_pq = δ_pq" in text
    assert "δ_pq survives: the gradient is zero off that diagonal." in text
    assert e.gradients[0].result == "g[i,j] = delta[i,j] + 0 * X[i,k]"
    assert e.gradients[0].einsums == ("->ii",) and e.gradients[0].matrix_form == "∂f/∂X = I"


def test_a_tensor_in_no_term_has_a_zero_gradient():
    h = einsgrad.program(QUADRATIC).hessian("x")  # H[i,j] = A[i,j] + A[j,i]: x is gone
    text = str(h.explain("x"))
    assert "3. x appears in no term, so the gradient is 0." in text
    assert '4. The result: "dx[i] = 0 * x[i]"' in text


def test_hessian_is_the_jacobian_of_the_gradient():
    e = einsgrad.program(QUADRATIC).explain("x", style="hessian")
    text = str(e)
    assert "Hessian by x, the Jacobian of the gradient g:" in text
    assert "g_i = Σ_j A_ij x_j + Σ_j x_j A_ji" in text
    assert "One entry of the Hessian is H_ip = ∂g_i/∂x_p" in text
    assert "∂g_i/∂x_p = Σ_j A_ij δ_jp + Σ_j δ_jp A_ji" in text
    assert "∂g_i/∂x_p = A_ip + A_pi" in text
    (h,) = e.hessians
    assert h.result == "H[i,j] = A[i,j] + A[j,i]" and h.matrix_form == "∂²f/∂x² = A + Aᵀ"
    assert repr(e).endswith("∂/∂x: ∂f/∂x = (A + Aᵀ) x; ∂²/∂x²: ∂²f/∂x² = A + Aᵀ>")


def test_hessian_keeps_deltas_between_the_gradient_and_the_tensor():
    prog = einsgrad.program("f = X[i,j] * X[j,k] * X[k,i]")  # tr(X³)
    e = prog.explain(style="hessian")
    assert e.gradients[0].result == "g[i,j] = 3 * X[j,k] * X[k,i]"
    assert "Terms 1, 2 and 3 of step 4 are equal up to renaming and merge" in str(e)
    assert e.gradients[0].matrix_form == "∂f/∂X = 3 Xᵀ Xᵀ"
    assert "∂g_ij/∂X_pq = 3 δ_jp X_qi + 3 X_jp δ_iq" in str(e)
    assert e.hessians[0].result == str(prog.hessian("X"))


def test_renders_latex_and_a_one_line_repr():
    e = einsgrad.program(QUADRATIC).explain("x")
    latex = e.latex()
    assert latex.startswith("\\begin{align*}") and latex.endswith("\\end{align*}")
    assert latex.isascii() and "\\partial" in latex and "\\delta_{ip}" in latex
    body = latex.removeprefix("\\begin{align*}").removesuffix("\\end{align*}")
    assert e._repr_latex_() == "$$\\begin{aligned}" + body + "\\end{aligned}$$"
    assert repr(e) == "<ProgramExplanation of 'f = x[i] * A[i,j] * x[j]': ∂/∂x: ∂f/∂x = (A + Aᵀ) x>"
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.style = "other"


def test_einsgrad_explain_takes_a_program():
    prog = einsgrad.program(LINEAR)
    assert einsgrad.explain(prog, wrt="W") == prog.explain("W")
    assert einsgrad.explain(prog) == prog.explain()


@pytest.mark.parametrize("call, match", [
    (lambda p: p.explain("Z"), r"cannot differentiate by 'Z': it is not a tensor of the program"),
    (lambda p: p.explain("delta"), r"cannot differentiate by 'delta'"),
    (lambda p: p.explain("W", style="poetry"), r"style must be one of 'index', 'hessian', 'matrix', got 'poetry'"),
    (lambda p: p.explain("W", style="hessian"), r"style='hessian' needs a scalar program"),
    (lambda p: einsgrad.explain(p, "X,W"), r"names: not for a program"),
    (lambda p: einsgrad.explain(p, sizes={"i": 2}, elementwise=True), r"sizes, elementwise: not for"),
], ids=["unknown", "delta", "style", "hessian", "names", "sizes"])
def test_bad_input(call, match):
    with pytest.raises(EinsumSpecError, match=match):
        call(einsgrad.program(LINEAR))


@settings(max_examples=60)
@given(programs())
def test_random_programs_explain_the_gradient_they_compute(case):
    output, terms = case
    prog = einsgrad.program(render(output, terms))
    e = prog.explain()
    assert [g.name for g in e.gradients] == list(prog.inputs)
    text = str(e)
    for g in e.gradients:
        assert g.result == str(prog.grad(g.name))
        assert f'"{g.result}"' in text
    assert e.latex().isascii()


@settings(max_examples=30)
@given(programs(scalar=True))
def test_random_programs_explain_the_hessian_they_compute(case):
    output, terms = case
    prog = einsgrad.program(render(output, terms))
    e = prog.explain(style="hessian")
    assert [h.result for h in e.hessians] == [str(prog.hessian(n)) for n in prog.inputs]
