"""Printed results use the exact identities of sign, step and exp (issue 13, results factored).

``sign(u) |u| = u``, ``sign(u) u = |u|``, ``step(u) u = relu(u)``, ``step(u) relu(u) = relu(u)``,
``step(u)^n = step(u)``, ``sign(u)^3 = sign(u)`` (``sign(u)^2`` stays: 0 at 0), and the powers of
exponentials of one argument joined (``exp(x)^-0.5 = exp(-0.5 x)``, ``sqrt(exp(x)) = exp(x/2)``).
The expected text is written by hand, as a textbook writes each derivative; the values are
checked against torch autograd (zeros among the inputs, where sign and step jump: the
identities hold there too), against numpy evaluating the original expression, and a Hessian
against finite differences where the rewritten one is the true second derivative.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import einsgrad

torch = pytest.importorskip("torch")

# -- the text, as a person writes it ------------------------------------------------------------

GRADIENTS = [
    # d/dt |t|^2 = 2 |t| sign(t) = 2 t
    ("L = abs(t[i])^2", "t", "dt[i] = 2 * t[i]"),
    ("L = abs(t[i]) * abs(t[i])", "t", "dt[i] = 2 * t[i]"),
    # d/dt t |t| = |t| + t sign(t) = 2 |t|, the forward's |t| read
    ("L = t[i] * abs(t[i])", "t", "t1[i] = abs(t[i])\ndt[i] = 2 * t1[i]"),
    # d/dt relu(t)^2 = 2 relu(t) step(t) = 2 relu(t)
    ("L = relu(t[i])^2", "t", "t1[i] = relu(t[i])\ndt[i] = 2 * t1[i]"),
    ("L = t[i] * relu(t[i])", "t", "t1[i] = relu(t[i])\ndt[i] = 2 * t1[i]"),
    # d/dt |t|^3 = 3 |t|^2 sign(t) = 3 |t| t
    ("L = abs(t[i])^3", "t", "t1[i] = abs(t[i])\ndt[i] = 3 * t1[i] * t[i]"),
    # the product itself, by q: sign(t)^2 t = sign(t) |t| = t; step(t)^3 t = relu(t)
    ("L = q[i] * sign(t[i])^2 * t[i]", "q", "dq[i] = t[i]"),
    ("L = q[i] * step(t[i])^3 * t[i]", "q", "dq[i] = relu(t[i])"),
    ("L = q[i] * sign(t[i])^3", "q", "t1[i] = sign(t[i])\ndq[i] = t1[i]"),
    ("L = q[i] * sign(t[i])^2", "q", "t1[i] = sign(t[i])\ndq[i] = t1[i] * t1[i]"),  # 0 at 0: stays
    # (exp(x)^-0.5)' = -0.5 exp(-0.5 x); (exp(x)^1.5)' = 1.5 exp(1.5 x)
    ("L = exp(x[i])^(-0.5)", "x", "dx[i] = -0.5 * exp(-0.5 * x[i])"),
    ("L = exp(x[i])^1.5", "x", "dx[i] = 1.5 * exp(1.5 * x[i])"),
    ("L = q[i] * exp(x[i])^0.5", "x", "dx[i] = 0.5 * q[i] * exp(0.5 * x[i])"),
    ("L = exp(x[i])^0.5 * exp(x[i])^0.25", "x", "dx[i] = 0.75 * exp(0.75 * x[i])"),
    # (exp(x) sqrt(exp(x)))' = exp(x) sqrt(exp(x)) + 0.5 exp(x)^2 / sqrt(exp(x)) = 1.5 exp(1.5 x)
    ("L = exp(x[i]) * sqrt(exp(x[i]))", "x", "dx[i] = 1.5 * exp(1.5 * x[i])"),
    # sqrt(exp(x))' = 0.5 exp(x) / sqrt(exp(x)) = 0.5 sqrt(exp(x)), the forward's value read
    ("L = sqrt(exp(x[i]))", "x", "t[i] = exp(x[i])\nt1[i] = sqrt(t[i])\ndx[i] = 0.5 * t1[i]"),
    # (1 / sqrt(exp(x)))' = -0.5 exp(x) / sqrt(exp(x))^3 = -0.5 / sqrt(exp(x))
    ("L = 1/sqrt(exp(x[i]))", "x", "t[i] = exp(x[i])\nt1[i] = sqrt(t[i])\ndx[i] = -0.5 / t1[i]"),
    # what is not exact everywhere, or not shorter, stays
    ("L = exp(log(x[i]))", "x", "t[i] = log(x[i])\nt1[i] = exp(t[i])\ndx[i] = t1[i] / x[i]"),  # nan below 0
    ("L = log(exp(x[i]))", "x", "dx[i] = 1"),
    ("L = exp(x[i])^2", "x", "t[i] = exp(x[i])\ndx[i] = 2 * t[i] * t[i]"),  # the forward's exp, squared
    ("L = exp(x[i]) * exp(y[i])", "x", "t[i] = exp(x[i])\nt1[i] = exp(y[i])\ndx[i] = t1[i] * t[i]"),
    ("L = abs(t[i])", "t", "dt[i] = sign(t[i])"),
]


@pytest.mark.parametrize("text, wrt, expected", GRADIENTS, ids=[f"{c[0]} by {c[1]}" for c in GRADIENTS])
def test_gradients_print_as_a_textbook_writes_them(text, wrt, expected):
    assert str(einsgrad.program(text).grad(wrt)) == expected


HESSIANS = [
    ("L = abs(t[i])^2", "t", "H[i,j] = 2 * delta[i,j]"),  # (t^2)'' = 2
    ("L = exp(x[i])^(-0.5)", "x", "t1[i] = exp(-0.5 * x[i])\nH[i,j] = 0.25 * t1[i] * delta[i,j]"),
    ("L = sqrt(exp(x[i]))", "x", "t[i] = exp(x[i])\nt1[i] = sqrt(t[i])\nH[i,j] = 0.25 * t1[i] * delta[i,j]"),
    ("L = 1/sqrt(exp(x[i]))", "x", "t[i] = exp(x[i])\nt1[i] = sqrt(t[i])\nH[i,j] = 0.25 * delta[i,j] / t1[i]"),
    ("L = exp(x[i]) * sqrt(exp(x[i]))", "x", "t1[i] = exp(1.5 * x[i])\nH[i,j] = 2.25 * t1[i] * delta[i,j]"),
]


@pytest.mark.parametrize("text, wrt, expected", HESSIANS, ids=[c[0] for c in HESSIANS])
def test_hessians_print_as_a_textbook_writes_them(text, wrt, expected):
    assert str(einsgrad.program(text).hessian(wrt)) == expected


@pytest.mark.parametrize("text, form", [
    ("f = norm(abs(x))^2", "∂f/∂x = 2 x"),
    ("f = sum(abs(x) * abs(x))", "∂f/∂x = 2 x"),
    ("f = sum(sqrt(exp(x)))", "∂f/∂x = 0.5 sqrt(exp(x))"),
])
def test_matrix_forms(text, form):
    assert einsgrad.matrix(text).explain("x").gradients[0].matrix_form == form


# -- the values --------------------------------------------------------------------------------


def _step(u):
    return (u > 0).to(u.dtype)  # heaviside, 0 at 0; a constant to autograd, as einsgrad's step'


TORCH = {"t": lambda u: u, "abs": torch.abs, "sign": torch.sign, "relu": torch.relu, "step": _step}
NUMPY = {"t": lambda u: u, "abs": np.abs, "sign": np.sign, "relu": lambda u: np.maximum(u, 0),
         "step": lambda u: np.heaviside(u, 0)}


def _text(function: str, power: int) -> str:
    base = "t[i]" if function == "t" else f"{function}(t[i])"
    return base if power == 1 else f"{base}^{power}"


factors = st.lists(st.tuples(st.sampled_from(sorted(TORCH)), st.integers(1, 3)), min_size=1, max_size=4)


@settings(max_examples=60, deadline=None)
@given(factors, st.integers(0, 2 ** 16))
def test_products_of_sign_step_abs_relu_against_torch(chosen, seed):
    """``L = q[i] * f1(t[i])^p1 * ...``: the gradient by q (the product itself, rewritten) is
    numpy's value of the product as written, and both gradients are torch autograd's, at
    inputs with zeros among them, where sign and step jump."""
    text = "L = q[i] * " + " * ".join(_text(f, p) for f, p in chosen)
    rng = np.random.default_rng(seed)
    t = rng.integers(-2, 3, size=7).astype(float) * rng.choice([1.0, 0.5], size=7)
    q = rng.standard_normal(7)
    prog = einsgrad.program(text)
    product = np.prod([NUMPY[f](t) ** p for f, p in chosen], axis=0)
    np.testing.assert_array_equal(prog.grad("q")(q=q, t=t), product, err_msg=str(prog.grad("q")))
    tt, tq = torch.tensor(t, requires_grad=True), torch.tensor(q, requires_grad=True)
    value = (tq * torch.stack([TORCH[f](tt) ** p for f, p in chosen]).prod(0)).sum()
    gq, gt = torch.autograd.grad(value, [tq, tt], allow_unused=True)
    gt = torch.zeros_like(tt) if gt is None else gt  # a product of steps alone is constant in t
    np.testing.assert_allclose(prog.grad("q")(q=q, t=t), gq.numpy(), rtol=1e-13, atol=0)
    np.testing.assert_allclose(prog.grad("t")(q=q, t=t), gt.numpy(), rtol=1e-12, atol=1e-12,
                               err_msg=str(prog.grad("t")))


EXPONENTIALS = [
    ("L = q[i] * exp(x[i])^(-0.5)", lambda x, q: (q * torch.exp(x) ** -0.5).sum()),
    ("L = q[i] * exp(x[i])^1.5", lambda x, q: (q * torch.exp(x) ** 1.5).sum()),
    ("L = q[i] * sqrt(exp(x[i]))", lambda x, q: (q * torch.sqrt(torch.exp(x))).sum()),
    ("L = q[i] / sqrt(exp(x[i]))", lambda x, q: (q / torch.sqrt(torch.exp(x))).sum()),
    ("L = q[i] * exp(x[i])^0.5 * exp(x[i])^0.25", lambda x, q: (q * torch.exp(x) ** 0.5 * torch.exp(x) ** 0.25).sum()),
    ("L = q[i] * exp(x[i]) * sqrt(exp(x[i]))", lambda x, q: (q * torch.exp(x) * torch.sqrt(torch.exp(x))).sum()),
    ("L = q[i] * exp(2 * x[i])^(-0.25) * sqrt(exp(x[i]))",
     lambda x, q: (q * torch.exp(2 * x) ** -0.25 * torch.sqrt(torch.exp(x))).sum()),
    ("L = q[i] * abs(t[i])^2 * exp(x[i])^0.5", lambda x, q, t: (q * torch.abs(t) ** 2 * torch.exp(x) ** 0.5).sum()),
]


@pytest.mark.parametrize("text, f", EXPONENTIALS, ids=[c[0] for c in EXPONENTIALS])
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2 ** 16), n=st.integers(1, 6))
def test_exponentials_against_torch_gradients_and_hessians(text, f, seed, n):
    rng = np.random.default_rng(seed)
    prog = einsgrad.program(text)
    arrays = {name: rng.standard_normal(n) * 2 for name in prog.inputs}
    tensors = {k: torch.tensor(v) for k, v in arrays.items()}
    order = [k for k in ("x", "q", "t") if k in arrays]
    for wrt in order:
        x = tensors[wrt].clone().requires_grad_(True)
        args = {**tensors, wrt: x}
        (grad,) = torch.autograd.grad(f(*(args[k] for k in order)), [x])
        np.testing.assert_allclose(prog.grad(wrt)(**arrays), grad.numpy(), rtol=1e-11, atol=1e-13,
                                   err_msg=str(prog.grad(wrt)))
    hessian = torch.func.hessian(lambda u: f(u, *(tensors[k] for k in order[1:])))(tensors["x"])
    np.testing.assert_allclose(prog.hessian("x")(**arrays), hessian.numpy(), rtol=1e-10, atol=1e-13,
                               err_msg=str(prog.hessian("x")))


def test_the_hessian_of_a_square_of_abs_is_two_at_zero_too():
    """``|t|^2 = t^2``: its Hessian is ``2 I`` everywhere, as central differences of the
    function say at 0 as well (the chain rule's ``2 sign(t)^2`` is 0 there)."""
    def f(u):
        return np.sum(np.abs(u) ** 2)

    t, h, eye = np.array([0.0, -1.5, 2.0]), 1e-2, np.eye(3)
    fd = np.array([[(f(t + h * a + h * b) - f(t + h * a - h * b) - f(t - h * a + h * b) + f(t - h * a - h * b))
                    / (4 * h * h) for b in eye] for a in eye])
    got = einsgrad.program("L = abs(t[i])^2").hessian("t")(t=t)
    np.testing.assert_allclose(got, fd, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(got, 2 * eye)


# -- a power of exp the user wrote: the forward's value, printed as written ---------------------
# The identities rewrite what the derivative rules make (exp(x)^-1.5 exp(x) is exp(-0.5 x)). A
# factor the chain rule copies from the user's statement, ∂(y ∘ exp(x)^0.5)/∂y = exp(x)^0.5, is
# the forward's own value, and prints as the user wrote it, as sqrt(exp(x)) does above; so does
# a power that is a function's argument, the one spelling in the result and in the forward
# (1.5 exp(x)^1.5 ∘ cos(exp(x)^1.5), never beside an exp(1.5 x) of the same value).

USER_POWERS = [  # text, by, form, the gradient by hand (numpy), the loss (torch)
    ("A[i] = exp(x[i])^0.5 * y[i]\nL = A[i] * q[i]", "y", "∂L/∂y = q ∘ exp(x)^∘(0.5)",
     lambda x, y, q: q * np.exp(x) ** 0.5, lambda x, y, q: (torch.exp(x) ** 0.5 * y * q).sum()),
    ("A[i] = exp(x[i])^0.5 * y[i]\nL = A[i] * q[i]", "x", "∂L/∂x = 0.5 A ∘ q, with A = exp(x)^∘(0.5) ∘ y",
     lambda x, y, q: 0.5 * np.exp(x) ** 0.5 * y * q, lambda x, y, q: (torch.exp(x) ** 0.5 * y * q).sum()),
    ("L = sin(exp(x[i])^1.5) * q[i]", "x", "∂L/∂x = 1.5 exp(x)^∘(1.5) ∘ q ∘ cos(exp(x)^∘(1.5))",
     lambda x, q: 1.5 * np.exp(x) ** 1.5 * q * np.cos(np.exp(x) ** 1.5),
     lambda x, q: (torch.sin(torch.exp(x) ** 1.5) * q).sum()),
    # made by the power rule, not copied: one exp, as above
    ("L = exp(x[i])^1.5 * q[i]", "x", "∂L/∂x = 1.5 q ∘ exp(1.5 x)", lambda x, q: 1.5 * q * np.exp(1.5 * x),
     lambda x, q: (torch.exp(x) ** 1.5 * q).sum()),
]


@pytest.mark.parametrize("text, wrt, form, textbook, loss", USER_POWERS,
                         ids=[f"{c[0]} by {c[1]}" for c in USER_POWERS])
def test_a_power_of_exp_the_user_wrote_prints_as_written(text, wrt, form, textbook, loss):
    prog = einsgrad.program(text)
    assert prog.explain(wrt).gradients[0].matrix_form == form
    rng = np.random.default_rng(13)
    arrays = {n: rng.standard_normal(5) for n in prog.inputs}
    expected = textbook(**arrays)
    np.testing.assert_allclose(prog.grad(wrt)(**arrays), expected, rtol=1e-12)
    tensors = {n: torch.tensor(v, requires_grad=n == wrt) for n, v in arrays.items()}
    (grad,) = torch.autograd.grad(loss(**tensors), [tensors[wrt]])
    np.testing.assert_allclose(expected, grad.numpy(), rtol=1e-12)
