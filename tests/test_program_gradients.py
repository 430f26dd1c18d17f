"""Several gradients of a program in one reverse sweep, and Hessians of the benchmark's cases.

Every value is checked against torch autograd (``torch.autograd.grad``, ``torch.func.hessian``)
on the same function written in torch, and the Hessians also against the textbook formulas
written by hand (``A + Aᵀ``, ``Xᵀ diag(σ(1 − σ)) X``, ``2 δ ⊗ VᵀV``).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import einsgrad
from einsgrad import EinsumSpecError

torch = pytest.importorskip("torch")

from test_program_statements import CLASSIC, LAYER, generated_programs  # noqa: E402


def _arrays(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(s) * 0.7 for n, s in shapes.items()}


def _torch_grads(f, arrays, names):
    ts = {n: torch.tensor(v, requires_grad=n in names) for n, v in arrays.items()}
    value = f(**ts)
    grads = (torch.autograd.grad(value, [ts[n] for n in names], allow_unused=True) if value.requires_grad
             else [None] * len(names))  # a loss none of them reaches
    return [np.zeros_like(arrays[n]) if g is None else g.numpy() for n, g in zip(names, grads)]


# -- several gradients, one sweep ------------------------------------------------------------

@pytest.mark.parametrize("name, text, shapes, f", CLASSIC, ids=[c[0] for c in CLASSIC])
def test_all_gradients_in_one_sweep_against_torch(name, text, shapes, f):
    p = einsgrad.program(text)
    a = _arrays(shapes)
    names = list(p.inputs)
    g = p.grad(names)
    got = g(**a)
    assert isinstance(got, tuple) and len(got) == len(names)
    assert g.outputs == tuple("d" + n for n in names)
    for n, value, expected in zip(names, got, _torch_grads(f, a, names)):
        np.testing.assert_allclose(value, expected, rtol=1e-10, atol=1e-12, err_msg=f"{n}\n{g}")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(generated_programs(), st.integers(0, 2 ** 16), st.randoms(use_true_random=False))
def test_generated_programs_all_gradients_against_torch(case, seed, random):
    text, shapes, loss = case
    p = einsgrad.program(text)
    a = _arrays(shapes, seed)
    names = list(p.inputs)
    random.shuffle(names)
    names = names[:random.randint(1, len(names))]
    expected = _torch_grads(loss, {n: a[n] for n in shapes}, names)
    if not all(np.all(np.abs(e) < 1e6) for e in expected):
        return  # overflowed: nothing comparable
    got = p.grad(names)(**{n: a[n] for n in p.inputs})
    for n, value, e in zip(names, got, expected):
        np.testing.assert_allclose(value, e, rtol=1e-8, atol=1e-8, err_msg=f"{n}\n{p.grad(names)}")


def test_the_layer_shares_its_cotangent():
    p = einsgrad.program(LAYER)
    g = p.grad(["X", "W", "c"])
    made = [s.name for s in g.statements]
    assert made == ["H", "A", "dH", "dX", "dW", "dc"]  # the forward and dH once, for all three
    assert str(g).splitlines()[2] == "dH[b,j] = (A[b,j] - T[b,j]) * (1 - A[b,j]^2)"


def test_an_indexed_polynomial_program_takes_its_cotangent():
    p = einsgrad.program("Y[i,j] = X[i,k] * W[j,k] + b[j]")
    a = _arrays({"X": (4, 3), "W": (5, 3), "b": (5,), "dY": (4, 5)})
    dX, dW, db = p.grad(["X", "W", "b"])(**a)
    ts = {n: torch.tensor(a[n], requires_grad=True) for n in ("X", "W", "b")}
    Y = ts["X"] @ ts["W"].T + ts["b"]
    expected = torch.autograd.grad(Y, [ts["X"], ts["W"], ts["b"]], torch.tensor(a["dY"]))
    for value, e in zip((dX, dW, db), expected):
        np.testing.assert_allclose(value, e.numpy(), rtol=1e-12)


def test_out_names_and_fresh_defaults():
    p = einsgrad.program("H[b,j] = X[b,k] * W[j,k]; L = H[b,j] * dW[b,j]")
    g = p.grad(["W", "X"])
    assert g.outputs[1] == "dX" and g.outputs[0] not in ("dW", "H", "dH")  # dW is an input
    named = p.grad(["W", "X"], out=["GW", "GX"])
    assert named.outputs == ("GW", "GX")
    a = _arrays({"X": (3, 2), "W": (4, 2), "dW": (3, 4)})
    for x, y in zip(g(**a), named(**a)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("call, match", [
    (lambda p: p.grad([]), "at least one tensor"),
    (lambda p: p.grad(["W", "W"]), "names 'W' twice"),
    (lambda p: p.grad(["W", "Q"]), "cannot differentiate by 'Q'"),
    (lambda p: p.grad(["W", "c"], out="dW"), "a list of 2 names"),
    (lambda p: p.grad(["W", "c"], out=["a"]), "a list of 2 names"),
    (lambda p: p.grad(["W", "c"], out=["H", "q"]), "already uses"),
    (lambda p: p.grad(["W"], indices=("p", "q")), "indices= is for the gradient by one tensor"),
    (lambda p: p.grad(["W", "c"]).grad("W"), "grad needs a program of one output"),
    (lambda p: p.grad(["W", "c"]).hessian("W"), "hessian needs a program of one output"),
    (lambda p: p.grad(["W", "c"]).jacobian("W"), "jacobian needs a program of one output"),
    (lambda p: p.grad(["W", "c"]).hvp("W"), "hvp needs a program of one output"),
    (lambda p: p.grad(["W", "c"]).explain("W"), "explain needs a program of one output"),
])
def test_several_gradients_refuse_bad_requests(call, match):
    with pytest.raises(EinsumSpecError, match=match):
        call(einsgrad.program(LAYER))


# -- the Hessians of the benchmark (benchmarks/hessians.py) ----------------------------------

def _logistic_by_hand(w, X, y):
    s = 1 / (1 + np.exp(-(X @ w)))  # sigmoid(X w)
    return X.T @ (X * (s * (1 - s))[:, None])


def _softplus(u):
    return torch.nn.functional.softplus(u, threshold=1e9)


HESSIANS = {
    "quadratic": ("f = x[i] * A[i,j] * x[j]", "x", lambda n, m, k: {"x": (n,), "A": (n, n)},
                  lambda x, A: x @ A @ x, lambda x, A: A + A.T),
    "logistic": ("z[i] = X[i,k] * w[k]\nL = softplus(z[i]) - y[i] * z[i]", "w",
                 lambda n, m, k: {"w": (n,), "X": (m, n), "y": (m,)},
                 lambda w, X, y: (_softplus(X @ w) - y * (X @ w)).sum(),
                 lambda w, X, y: _logistic_by_hand(w, X, y)),
    "factorization": ("R[i,j] = T[i,j] - U[i,a] * V[j,a]\nL = R[i,j]^2", "U",
                      lambda n, m, k: {"U": (m, k), "T": (m, n), "V": (n, k)},
                      lambda U, T, V: ((T - U @ V.T) ** 2).sum(),
                      lambda U, T, V: 2 * np.einsum("ij,ab->iajb", np.eye(U.shape[0]), V.T @ V)),
}


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(sorted(HESSIANS)), st.integers(1, 6), st.integers(1, 7), st.integers(1, 3),
       st.integers(0, 2 ** 16))
def test_benchmark_hessians_against_torch_func_hessian(case, n, m, k, seed):
    text, wrt, shapes, f, by_hand = HESSIANS[case]
    a = _arrays(shapes(n, m, k), seed)
    names = [wrt] + [x for x in a if x != wrt]
    others = [torch.tensor(a[x]) for x in names[1:]]
    expected = torch.func.hessian(lambda u: f(u, *others))(torch.tensor(a[wrt])).numpy()
    got = einsgrad.program(text).hessian(wrt)(**a)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got, by_hand(*(a[x] for x in names)), rtol=1e-10, atol=1e-12)


def test_a_hessian_keeps_a_delta_as_a_diagonal_not_a_dense_cotangent():
    H = einsgrad.program("R[i,j] = T[i,j] - U[i,a] * V[j,a]\nL = R[i,j]^2").hessian("U")
    result = H.statements[-1]
    assert all(len(s.indices) <= 2 for s in H.statements[:-1])  # no 4-index dR[i,j,p,q] stored
    assert any(f.is_delta for t in result.terms for f in t.factors)
    a = _arrays({"U": (5, 2), "T": (5, 3), "V": (3, 2)})
    np.testing.assert_allclose(H(**a), 2 * np.einsum("ij,ab->iajb", np.eye(5), a["V"].T @ a["V"]), rtol=1e-12)


@pytest.mark.parametrize("text, shapes, f", [
    ("S[k,i] = x[i] * x[i] * x[i] + B[k,i]\nL = S[k,i] * S[k,i]", {"x": (3,), "B": (2, 3)},
     lambda x, B: ((x ** 3 + B) ** 2).sum()),
    ("S[k,j,i] = x[i] * x[i] + B[j,k]\nT[i] = S[k,j,i] * x[i]\nL = T[i] * T[i]", {"x": (3,), "B": (4, 2)},
     lambda x, B: (((x ** 2 + B.T[:, :, None]).sum((0, 1)) * x) ** 2).sum()),
    ("H[b,j] = X[b,k] * x[j,k] + c[j]\nA[b,j] = tanh(H[b,j])\nL = 0.5 * (A[b,j] - T[b,j])^2",
     {"x": (3, 2), "X": (4, 2), "c": (3,), "T": (4, 3)},
     lambda x, X, c, T: 0.5 * ((torch.tanh(X @ x.T + c) - T) ** 2).sum()),
], ids=["broadcast cotangent", "broadcast then summed", "tanh layer"])
def test_a_hessian_through_a_cotangent_broadcast_along_an_index(text, shapes, f):
    """A delta-bearing cotangent chained as its terms must hold every index the chain sums
    over (one constant along an index was summed once, not once per entry: wrong by that
    index's size)."""
    a = _arrays(shapes, 3)
    names = list(shapes)
    others = [torch.tensor(a[n]) for n in names[1:]]
    expected = torch.func.hessian(lambda u: f(u, *others))(torch.tensor(a["x"])).numpy()
    np.testing.assert_allclose(einsgrad.program(text).hessian("x")(**a), expected, rtol=1e-10, atol=1e-12)


def test_a_hessian_computes_no_gradient_it_does_not_read():
    H = einsgrad.program("z[i] = X[i,k] * w[k]\nL = softplus(z[i]) - y[i] * z[i]").hessian("w")
    assert [s.name for s in H.statements] == ["z", "t", "dz1", "H"]  # no gradient g: nothing reads it
    assert str(H).splitlines()[-1] == "H[k,i] = dz1[j,k] * X[j,i]"


def test_float32_stays_float32_through_fractions_and_quotients():
    p = einsgrad.program("y[i] = sqrt(x[i]); L = 0.5 * y[i] * q[i]")
    x, q = np.float32([1, 2, 4]), np.float32([1, -1, 3])
    g = p.grad("x")(x=x, q=q)
    assert g.dtype == np.float32 and p(x=x, q=q).dtype == np.float32
    tx = torch.tensor(x.astype(np.float64), requires_grad=True)
    (expected,) = torch.autograd.grad((0.5 * torch.sqrt(tx) * torch.tensor(q.astype(np.float64))).sum(), [tx])
    np.testing.assert_allclose(g, expected.numpy(), rtol=1e-6)
    assert p.grad("x")(x=x.astype(np.int64), q=q.astype(np.int64)).dtype == np.float64
