"""``explain`` of a program of statements: the backprop step by step, rendered from what grad kept.

The expected lines are written by hand, as one derives the tanh layer's gradient on paper:
each step's local derivative by its one-line rule (or the product rule as deltas), each
cotangent, the factored result. The values behind them are checked numerically in
tests/test_program_statements.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import einsgrad
from einsgrad import EinsumSpecError, backprop, derivation
from einsgrad.backprop_explanation import explain_statements

LAYER = """
    H[b,j] = X[b,k] * W[j,k] + c[j]
    A[b,j] = tanh(H[b,j])
    L = 0.5 * (A[b,j] - T[b,j])^2
"""


def test_the_tanh_layer_explained():
    lines = str(einsgrad.program(LAYER).explain("W")).splitlines()
    assert lines[0] == ('The program "H[b,j] = X[b,k] * W[j,k] + c[j]; A[b,j] = tanh(H[b,j]); '
                        'L = 0.5 * (A[b,j] - T[b,j])^2" has a scalar output L.')
    assert lines[2] == "Gradient with respect to W, by reverse mode over the statements:"
    assert lines[3].endswith('"A[b,j] = tanh(H[b,j])"; "t[b,j] = A[b,j] - T[b,j]"; '
                             '"L = 0.5 * t[b,j] * t[b,j]"')
    assert lines[5:9] == [
        '   "L = 0.5 * t[b,j] * t[b,j]": t occurs twice; by the product rule ∂L/∂t_pq = '
        '0.5 Σ_bj δ_bp δ_jq t_bj + 0.5 Σ_bj t_bj δ_bp δ_jq = 0.5 t_pq + 0.5 t_pq = t_pq',
        '   "t[b,j] = A[b,j] - T[b,j]": A occurs once; by the product rule ∂t_bj/∂A_pq = δ_bp δ_jq',
        '   "A[b,j] = tanh(H[b,j])": tanh\' = 1 - y^2, so ∂A_bj/∂H_bj = "1 - A[b,j]^2"',
        '   "H[b,j] = X[b,k] * W[j,k] + c[j]": W occurs once; by the product rule '
        '∂H_bj/∂W_pq = Σ_k X_bk δ_jp δ_kq = X_bq δ_jp',
    ]
    assert lines[9].startswith("3. The cotangents ∂L/∂S (the statements dS), each the sum")
    assert lines[10:14] == ['   "dt[b,j] = t[b,j]"', '   "dA[b,j] = t[b,j]"',
                            '   "dH[b,j] = t[b,j] * (1 - A[b,j]^2)"', '   "dW[j,k] = dH[b,j] * X[b,k]"']
    assert lines[14].endswith('"H[b,j] = X[b,k] * W[j,k] + c[j]; A[b,j] = tanh(H[b,j]); '
                              'dH[b,j] = (A[b,j] - T[b,j]) * (1 - A[b,j]^2); dW[j,k] = dH[b,j] * X[b,k]"')
    assert lines[15:] == ["   In matrix form: ∂L/∂W = ((A - T) ∘ (1 - A∘A))ᵀ X, with A = tanh(H), H = X Wᵀ + 1 cᵀ"]


def test_matrix_forms_of_the_results():
    e = einsgrad.program(LAYER).explain()
    where = ", with A = tanh(H), H = X Wᵀ + 1 cᵀ"
    cotangent = "((A - T) ∘ (1 - A∘A))"  # ∂L/∂H, written where it is read
    assert [(g.name, g.einsums, g.matrix_form) for g in e.gradients] == [
        ("X", ("bj,jk->bk",), f"∂L/∂X = {cotangent} W{where}"),
        ("W", ("bj,bk->jk",), f"∂L/∂W = {cotangent}ᵀ X{where}"),
        ("c", ("bj->j",), f"∂L/∂c = {cotangent}ᵀ 1{where}"),
        ("T", (), f"∂L/∂T = T - A{where}")]  # dT[b,j] = -(A[b,j] - T[b,j]): no einsum, a sum


def test_every_input_is_explained_and_the_result_is_the_gradient():
    p = einsgrad.program(LAYER)
    e = p.explain()
    assert [g.name for g in e.gradients] == list(p.inputs)
    assert [g.result for g in e.gradients] == [str(p.grad(n)) for n in p.inputs]
    assert "T occurs once; by the product rule ∂t_bj/∂T_pq = -δ_bp δ_jq" in str(e)


def test_explain_renders_without_deriving_again(monkeypatch):
    p = einsgrad.program(LAYER)
    grads = (p.grad("W"), p.grad("c"))

    def refuse(*args, **kwargs):
        raise AssertionError("explain derived again")
    monkeypatch.setattr(derivation, "differentiate", refuse)
    monkeypatch.setattr(backprop, "differentiate", refuse)
    text = str(explain_statements(p, ("W", "c"), grads))
    assert "∂H_bj/∂c_p = δ_jp" in text and "Σ_k X_bk δ_jp δ_kq" in text


def test_functions_by_their_rule_and_a_power():
    text = str(einsgrad.program("y[i] = sigmoid(x[i])^-1; L = sqrt(y[i])").explain("x"))
    assert "sqrt' = 0.5 / y, so ∂t1_i/∂y_i = \"0.5 / t1[i]\"" in text
    assert "(u^e)' = e * u^(e - 1) with e = -1, so ∂y_i/∂t_i = \"-1 / t[i]^2\"" in text
    assert "sigmoid' = y * (1 - y), so ∂t_i/∂x_i = \"t[i] * (1 - t[i])\"" in text


def test_an_indexed_output_names_its_cotangent():
    text = str(einsgrad.program("A[i,j] = tanh(sum[k](X[i,k] * W[j,k]))").explain("W"))
    assert "with L a scalar loss; the cotangent G = ∂L/∂A (the input dA) has A's indices." in text
    assert "In matrix form: ∂L/∂W = (G ∘ (1 - A∘A))ᵀ X, with A = tanh(X Wᵀ)" in text
    assert '"dt[i,j] = dA[i,j] * (1 - A[i,j]^2)"' in text


def test_a_tensor_off_the_path():
    text = str(einsgrad.program("A[i] = tanh(x[i]); B[j] = exp(y[j]); L = B[j]").explain("x"))
    assert "x is on no path to L, so the gradient is 0." in text


def test_latex_escapes_powers():
    latex = einsgrad.program(LAYER).explain("W").latex()
    assert r"1 - y\^{}2" in latex and "y^2" not in latex


def test_hessian_style_for_statements():
    """Least squares: the Hessian is 2 Xᵀ X, derived as the Jacobian of the gradient program."""
    p = einsgrad.program("L = (sum[k](X[i,k] * w[k]) - y[i])^2")
    e = p.explain("w", style="hessian")
    text = str(e)
    assert "Hessian by w, the Jacobian of the gradient, by reverse mode over its statements:" in text
    assert [g.matrix_form for g in e.gradients] == ["∂L/∂w = 2 Xᵀ (X w - y)"]
    assert [(h.name, h.result, h.matrix_form) for h in e.hessians] == [
        ("w", str(p.hessian("w")), "∂²L/∂w² = 2 Xᵀ X")]
    assert repr(e).endswith("∂/∂w: ∂L/∂w = 2 Xᵀ (X w - y); ∂²/∂w²: ∂²L/∂w² = 2 Xᵀ X>")


def test_hessian_style_without_a_matrix_form_says_so():
    e = einsgrad.program(LAYER).explain("W", style="hessian")
    assert e.hessians[0].matrix_form is None  # ∂²L/∂W∂W has four indices
    last = str(e).splitlines()[-1]
    assert last.startswith("   No matrix form (an index has no place in a product of matrices); in index form: \"")
    assert last.endswith(str(e.hessians[0].result).splitlines()[-1] + '"')


def test_hessian_style_needs_a_scalar_program():
    with pytest.raises(EinsumSpecError, match=r"style='hessian' needs a scalar program"):
        einsgrad.program("A[i,j] = tanh(sum[k](X[i,k] * W[j,k]))").explain("W", style="hessian")


def test_softmax_cross_entropy_is_p_minus_y():
    """Written with log-sum-exp, the gradient prints as ``t / t1 - y``: ``t = exp(z)``,
    ``t1`` its row sums, so ``t / t1`` is softmax ``p``; numerically ``p - y`` either way."""
    lse = einsgrad.program("L = log(sum[j](exp(z[b,j]))) - y[b,j] * z[b,j]")
    assert str(lse.grad("z")) == ("t[b,j] = exp(z[b,j])\nt1[b] = t[b,j]\n"
                                  "dz[b,j] = -y[b,j] + t[b,j] / t1[b]")
    quotient = einsgrad.program("E[b,j] = exp(z[b,j]); S[b] = sum[j](E[b,j]); P[b,j] = E[b,j] / S[b]\n"
                                "L = -y[b,j] * log(P[b,j])")
    rng = np.random.default_rng(3)
    z, y = rng.standard_normal((3, 4)), rng.random((3, 4))
    y /= y.sum(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    for prog in (lse, quotient):
        np.testing.assert_allclose(prog.grad("z")(z=z, y=y), p - y, rtol=1e-12, atol=1e-14)
