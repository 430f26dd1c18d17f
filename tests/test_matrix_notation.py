"""Matrix notation in: ``einsgrad.matrix(text, **ranks_or_shapes)``.

Translations are checked against index programs written here by hand; values and gradients
against torch autograd on the same formulas written in torch, against central finite
differences and against textbook gradients written in numpy; hypothesis-generated matrix
expressions are built together with their torch meaning, so the oracle never reads einsgrad's
parse; random strings give a program or an EinsumSpecError, nothing else.
"""

from __future__ import annotations

import doctest
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import einsgrad
from einsgrad import EinsumSpecError
from oracles import central_gradient as _central
from einsgrad import matrix_notation, matrix_types
from einsgrad.matrix_notation import index_program

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(7)
GENERATED = int(os.environ.get("EINSGRAD_GENERATED_MATRIX", "60"))
"""Examples of the generated-expression test: 60 in CI; set the variable (500) for a long hunt."""


def _arrays(**shapes):
    return {n: RNG.standard_normal(s) for n, s in shapes.items()}


# -- what the text means ----------------------------------------------------------------

@pytest.mark.parametrize("text, declared, expected", [
    pytest.param("Y = X @ W.T + b", dict(b=1), "Y[i,j] = X[i,k] * W[j,k] + b[j]", id="linear layer"),
    pytest.param("Y = X @ W' + b", dict(b=1), "Y[i,j] = X[i,k] * W[j,k] + b[j]", id="prime"),
    pytest.param("Y = X @ Wᵀ + b", dict(b=1), "Y[i,j] = X[i,k] * W[j,k] + b[j]", id="superscript T"),
    pytest.param("Y = exp(A @ B @ C)", {}, "Y[i,j] = exp(sum[k,l](A[i,k] * B[k,l] * C[l,j]))",
                 id="indices in reading order"),
    pytest.param("f = x.T @ A @ x", {}, "f = x[i] * A[i,j] * x[j]", id="quadratic form"),
    pytest.param("f = x @ A @ x", {}, "f = x[i] * A[i,j] * x[j]", id="numpy-like quadratic form"),
    pytest.param("f = tr(A @ X @ B)", {}, "f = A[i,j] * X[j,k] * B[k,i]", id="trace of a chain"),
    pytest.param("Y = x @ y.T", {}, "Y[i,j] = x[i] * y[j]", id="outer product"),
    pytest.param("f = x.T @ y", {}, "f = x[i] * y[i]", id="inner product"),
    pytest.param("v = A @ x", {}, "v[i] = A[i,j] * x[j]", id="matrix times vector"),
    pytest.param("v = x.T @ A", {}, "v[i] = x[j] * A[j,i]", id="row vector times matrix"),
    pytest.param("Y = A * B - 2 * A / B", {}, "Y[i,j] = A[i,j] * B[i,j] - 2 * A[i,j] / B[i,j]", id="elementwise"),
    pytest.param("Y = A + x", {}, "Y[i,j] = A[i,j] + x[j]", id="a vector goes along the last axis"),
    pytest.param("Y = A + c", {}, "Y[i,j] = A[i,j] + c", id="a scalar broadcasts"),
    pytest.param("Y = diag(x) @ A", {}, "Y[i,j] = x[i] * A[i,j]", id="diag of a vector (the delta contracted)"),
    pytest.param("v = diag(A)", {}, "v[i] = A[i,i]", id="diag of a matrix"),
    pytest.param("D = diag(x)", {}, "D[i,j] = x[i] * delta[i,j]", id="a diagonal matrix"),
    pytest.param("L = sum(diag(x) @ A)", {}, "L = x[i] * A[i,j]", id="a delta on summed indices contracted"),
    pytest.param("L = norm(X @ w - y)^2", {}, "L = (sum[j](X[i,j] * w[j]) - y[i])^2", id="least squares"),
    pytest.param("L = norm(x)", {}, "L = sqrt(sum[i](x[i]^2))", id="2-norm"),
    pytest.param("L = norm(a)", {}, "L = abs(a)", id="norm of a scalar"),
    pytest.param("L = sum(X + 1)", {}, "L = (X[i,j] + 1)", id="sum of a broadcast"),
    pytest.param("L = sum(X - T)", {}, "L = X[i,j] - T[i,j]", id="sum term by term"),
    pytest.param("L = sum(tanh(x * y))", {}, "L = sum[i](tanh(x[i] * y[i]))", id="scoped where ambiguous"),
    pytest.param("Y = tanh(X @ W.T + b)", dict(b=1), "Y[i,j] = tanh(sum[k](X[i,k] * W[j,k]) + b[j])",
                 id="a contraction inside a function"),
    pytest.param("Y = (A + B) @ C", {}, "Y[i,j] = (A[i,k] + B[i,k]) * C[k,j]", id="a sum times a matrix"),
    pytest.param("L = -x^2", {}, "L[i] = -x[i]^2", id="minus binds looser than a power"),
    pytest.param("Y = 2^3 * x / 4", {}, "Y[i] = 2 * x[i]", id="numbers fold"),
    pytest.param("Y = A**2 + x^(1/2)", {}, "Y[i,j] = A[i,j]^2 + x[j]^(1/2)", id="powers"),
    pytest.param("H = X @ W.T; A = relu(H)\nL = sum(A)", {},
                 "H[i,j] = X[i,k] * W[j,k]\nA[i,j] = relu(H[i,j])\nL = A[i,j]", id="statements"),
    pytest.param("x.T @ A @ x", {}, "f = x[i] * A[i,j] * x[j]", id="a bare expression is f"),
    pytest.param("f + 1", dict(f=0), "f1 = f + 1", id="f taken"),
    pytest.param("Y = B @ c", dict(B=(3, 4), c=(4,)), "Y[i] = B[i,j] * c[j]", id="declared shapes"),
])
def test_translation(text, declared, expected):
    assert str(einsgrad.matrix(text, **declared)) == str(einsgrad.program(expected))


def test_the_result_is_the_program_it_prints():
    m = einsgrad.matrix("L = 0.5 * norm(tanh(X @ W.T + b) - T)^2", b=1)
    assert isinstance(m, einsgrad.Program)
    assert m == einsgrad.program(str(m))
    assert str(m) == index_program("L = 0.5 * norm(tanh(X @ W.T + b) - T)^2", b=1)
    a = _arrays(X=(4, 3), W=(5, 3), b=(5,), T=(4, 5))
    np.testing.assert_allclose(m(**a), 0.5 * np.sum((np.tanh(a["X"] @ a["W"].T + a["b"]) - a["T"]) ** 2))


def test_docstrings():
    for module in (matrix_notation, matrix_types):
        failed, _ = doctest.testmod(module)
        assert failed == 0


@pytest.mark.parametrize("value, rank", [(0, 0), (1, 1), (2, 2), ((), 0), ((5,), 1), ((3, 4), 2),
                                         (np.zeros((3, 4)).shape, 2), ([np.int64(3)], 1), (np.int64(1), 1)])
def test_declarations(value, rank):
    m = einsgrad.matrix("L = sum(q)", q=value)
    assert dict(m.accepts)["q"] == rank


def test_conventional_ranks():
    m = einsgrad.matrix("L = sum(a * x) + sum(A) + sum(Zeta) + sum(h) + sum(__g)")
    assert dict(m.accepts) == {"a": 0, "x": 1, "A": 2, "Zeta": 2, "h": 1, "__g": 0}


# -- refused, with a caret ----------------------------------------------------------------

@pytest.mark.parametrize("text, declared, match, column", [
    pytest.param("L = x @ A @ B @ y + 1 ? 2", {}, "character '\\?' is not allowed", 22, id="bad character"),
    pytest.param("L = foo(x)", {}, "unknown function 'foo'; the functions are exp, log", 4, id="unknown function"),
    pytest.param("L = a.T", {}, "transpose of a scalar", 5, id="transpose of a scalar"),
    pytest.param("L = 2'", {}, "transpose of a scalar", 5, id="transpose of a number"),
    pytest.param("L = A @ a", {}, "'@' of a matrix and a scalar", 6, id="@ of a scalar"),
    pytest.param("L = A @ B", dict(A=(2, 3), B=(4, 5)), "contracts 3 with 4", 6, id="@ sizes"),
    pytest.param("L = A + B", dict(A=(2, 3), B=(2, 4)), "sizes do not fit: '\\+' of a 2x3", 6, id="+ sizes"),
    pytest.param("L = A + x", dict(A=(2, 3), x=(2,)), "last axis", 6, id="a vector along the wrong axis"),
    pytest.param("L = tr(x)", {}, "tr of a vector", 4, id="trace of a vector"),
    pytest.param("L = tr(A)", dict(A=(2, 3)), "tr of a 2x3 matrix", 4, id="trace of a non-square matrix"),
    pytest.param("L = diag(a)", {}, "diag of a scalar", 4, id="diag of a scalar"),
    pytest.param("L = x' * A * x", {}, "'\\*' is elementwise, as in numpy; the matrix product is '@'", 7,
                 id="matrixcalculus.org's * refused"),
    pytest.param("L = x.T + y", {}, "'\\+' of a row vector and a vector", 8, id="row and column"),
    pytest.param("L = A^2", {}, "A @ A", 5, id="matrix power refused"),
    pytest.param("L = x^y", {}, "expected a number after the power's operator", 6, id="power by a tensor"),
    pytest.param("L = x^2^3", {}, "a power of a power", 7, id="power of a power"),
    pytest.param("L = 2^0.5 * x", {}, "not a rational number", 5, id="irrational number"),
    pytest.param("L = x / 0", {}, "division by zero", 6, id="division by zero"),
    pytest.param("L = 1e400 * x", {}, "this number", 4, id="number out of range"),
    pytest.param("L = (x + y", {}, "expected '\\)' or an operator, found the end", 10, id="unclosed"),
    pytest.param("L = x y", {}, "expected an operator or the end, found 'y'", 6, id="juxtaposition"),
    pytest.param("L = exp + x", {}, "'exp' is a function, not a tensor: write exp", 4, id="function as tensor"),
    pytest.param("L = delta + x", {}, "Kronecker delta", 4, id="delta"),
    pytest.param("exp = x", {}, "'exp' is a function: a statement needs another name", 0, id="function as name"),
    pytest.param("L = x; L = y", {}, "'L' is defined twice", 7, id="defined twice"),
    pytest.param("L = M + x; M = A", {}, "read before this statement defines it", 11, id="read before defined"),
    pytest.param("L = L + x", {}, "used in its own statement", 4, id="recursive"),
    pytest.param("x + 1; L = x", {}, "only the last statement may be a bare expression", 0, id="bare first"),
    pytest.param("L = _1 + x", {}, "the rank of '_1' is unknown: declare it", 4, id="rank unknown"),
    pytest.param("A = x; L = sum(A)", dict(A=2), "'A' is declared a matrix", 0, id="declared rank of a statement"),
    pytest.param("", {}, "holds no expression", 0, id="empty"),
    pytest.param("L = " + "(" * 70 + "x" + ")" * 70, {}, "nest deeper than 64", 68, id="too deep"),
    pytest.param("L = " + "-" * 70 + "x", {}, "nest deeper than 64", 68, id="too many signs"),
    pytest.param("L = x" + " + x" * 250, {}, "more than 200 operations deep", 4 + 4 * 200 + 2, id="too long"),
    pytest.param("L = sum(A" + " @ A" * 250 + ")", {}, "more than 200 operations deep", 8 + 4 * 200 + 2,
                 id="a chain too long"),
])
def test_errors_point_at_their_column(text, declared, match, column):
    with pytest.raises(EinsumSpecError, match=match) as info:
        einsgrad.matrix(text, **declared)
    assert info.value.spec == text and info.value.column == column


def test_an_error_in_a_later_line_names_the_line():
    with pytest.raises(EinsumSpecError, match=r"line 2: L = tr\(x\)\n\s+\^") as info:
        einsgrad.matrix("A = X @ Y\nL = tr(x)")
    assert info.value.column == 14


@pytest.mark.parametrize("declared, match", [
    pytest.param(dict(x=3), "ranks 0, 1 and 2", id="rank 3"),
    pytest.param(dict(x=True), "declare a rank", id="a bool"),
    pytest.param(dict(x="1"), "declare a rank", id="a string"),
    pytest.param(dict(x=(2, 3, 4)), "at most two", id="three axes"),
    pytest.param(dict(x=(-1,)), "non-negative", id="negative size"),
    pytest.param(dict(x=1, zz=2), "zz= declared, but the text has no 'zz'", id="a typo"),
])
def test_bad_declarations(declared, match):
    with pytest.raises(EinsumSpecError, match=match):
        einsgrad.matrix("L = sum(x)", **declared)


def test_text_must_be_a_string():
    with pytest.raises(EinsumSpecError, match="matrix text is a string, got int"):
        einsgrad.matrix(3)


TOKENS = ["x", "y", "A", "B", "b", "W", "2", "0.5", "1e-3", "@", "*", "/", "+", "-", "^", "**", ".T", "'", "ᵀ",
          "(", ")", "tr(", "norm(", "diag(", "sum(", "exp(", "log(", "tanh(", "=", "L", "H", "\n", ";",
          " ", "1e400", "0", "foo(", "_q", "delta", "X.T", "T"]


@given(st.one_of(st.lists(st.sampled_from(TOKENS), max_size=14).map("".join),
                 st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)))
@settings(max_examples=400)
def test_random_text_gives_a_program_or_an_error(text):
    try:
        m = einsgrad.matrix(text)
    except EinsumSpecError as error:
        assert error.reason
        return
    assert isinstance(m, einsgrad.Program)
    assert einsgrad.program(str(m)) == m


DECLARED = st.fixed_dictionaries({}, optional={
    "x": st.sampled_from([0, 1, 2, (3,), (4,), (3, 4)]), "A": st.sampled_from([0, 1, 2, (3, 3), (3, 4), (4, 3)]),
    "b": st.sampled_from([1, (3,), (4,)]), "B": st.sampled_from([(3, 4), (4, 4), 2])})


@given(st.lists(st.sampled_from(TOKENS[:30]), max_size=14).map("".join), DECLARED)
@settings(max_examples=300)
def test_random_text_with_declarations_gives_a_program_or_an_error(text, declared):
    try:
        m = einsgrad.matrix(text, **declared)
    except EinsumSpecError as error:
        assert error.reason
        return
    assert isinstance(m, einsgrad.Program)


# -- the classic table, in both notations ---------------------------------------------------

def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


CLASSIC = [
    # name, matrix text, declarations, the index program written by hand, shapes, torch, textbook gradients
    ("tanh layer", "L = 0.5 * norm(tanh(X @ W.T + b) - T)^2", dict(b=1),
     "H[n,j] = X[n,k] * W[j,k] + b[j]; A[n,j] = tanh(H[n,j]); L = 0.5 * (A[n,j] - T[n,j])^2",
     dict(X=(4, 3), W=(5, 3), b=(5,), T=(4, 5)),
     lambda X, W, b, T: 0.5 * ((torch.tanh(X @ W.T + b) - T) ** 2).sum(),
     lambda X, W, b, T: {"W": (((A := np.tanh(X @ W.T + b)) - T) * (1 - A * A)).T @ X}),
    ("sigmoid layer", "L = 0.5 * norm(sigmoid(X @ W.T + b) - T)^2", dict(b=1),
     "A[n,j] = sigmoid(sum[k](X[n,k] * W[j,k]) + b[j]); L = 0.5 * (A[n,j] - T[n,j])^2",
     dict(X=(4, 3), W=(5, 3), b=(5,), T=(4, 5)),
     lambda X, W, b, T: 0.5 * ((torch.sigmoid(X @ W.T + b) - T) ** 2).sum(),
     lambda X, W, b, T: {"b": (((A := 1 / (1 + np.exp(-(X @ W.T + b)))) - T) * A * (1 - A)).sum(0)}),
    ("relu layer", "L = 0.5 * norm(relu(X @ W.T + b) - T)^2", dict(b=1),
     "H[n,j] = X[n,k] * W[j,k] + b[j]; L = 0.5 * (relu(H[n,j]) - T[n,j])^2",
     dict(X=(4, 3), W=(5, 3), b=(5,), T=(4, 5)),
     lambda X, W, b, T: 0.5 * ((torch.relu(X @ W.T + b) - T) ** 2).sum(),
     lambda X, W, b, T: {"X": ((np.maximum(H := X @ W.T + b, 0) - T) * (H > 0)) @ W}),
    ("logistic regression", "L = sum(log(1 + exp(-y * (X @ w))))", {},
     "z[n] = X[n,f] * w[f]; L = sum[n](log(1 + exp(-y[n] * z[n])))",
     dict(X=(6, 3), w=(3,), y=(6,)),
     lambda X, w, y: torch.log1p(torch.exp(-y * (X @ w))).sum(),
     lambda X, w, y: {"w": X.T @ (-y / (1 + np.exp(y * (X @ w))))}),
    ("softmax cross-entropy", "L = log(sum(exp(z))) - y.T @ z", {},
     "L = log(sum[j](exp(z[j]))) - y[j] * z[j]", dict(z=(5,), y=(5,)),
     lambda z, y: torch.logsumexp(z, 0) - y @ z,
     lambda z, y: {"z": _softmax(z) - y}),
    ("log-sum-exp", "L = log(sum(exp(x)))", {}, "L = log(sum[i](exp(x[i])))", dict(x=(5,)),
     lambda x: torch.logsumexp(x, 0), lambda x: {"x": _softmax(x)}),
    ("least squares", "L = norm(X @ w - y)^2", {}, "r[n] = X[n,f] * w[f] - y[n]; L = r[n]^2",
     dict(X=(6, 3), w=(3,), y=(6,)), lambda X, w, y: ((X @ w - y) ** 2).sum(),
     lambda X, w, y: {"w": 2 * X.T @ (X @ w - y)}),
    ("matrix factorization", "L = norm(T - U @ V.T)^2", {},
     "L = sum[i,j]((T[i,j] - sum[a](U[i,a] * V[j,a]))^2)", dict(T=(4, 3), U=(4, 2), V=(3, 2)),
     lambda T, U, V: ((T - U @ V.T) ** 2).sum(),
     lambda T, U, V: {"U": -2 * (T - U @ V.T) @ V, "V": -2 * (T - U @ V.T).T @ U}),
    ("quadratic form", "f = x.T @ A @ x", {}, "f = x[i] * A[i,j] * x[j]", dict(x=(4,), A=(4, 4)),
     lambda x, A: x @ A @ x, lambda x, A: {"x": (A + A.T) @ x, "A": np.outer(x, x)}),
    ("trace of a product", "f = tr(A @ X @ B)", {}, "f = A[p,q] * X[q,r] * B[r,p]",
     dict(A=(3, 4), X=(4, 5), B=(5, 3)), lambda A, X, B: torch.trace(A @ X @ B),
     lambda A, X, B: {"X": A.T @ B.T}),
]
IDS = [c[0] for c in CLASSIC]


def _torch_grads(f, arrays, names):
    ts = {n: torch.tensor(v, requires_grad=True) for n, v in arrays.items()}
    value = f(**ts)
    if not value.requires_grad:  # a constant
        return value.detach().numpy(), [np.zeros_like(arrays[n]) for n in names]
    grads = torch.autograd.grad(value, [ts[n] for n in names], allow_unused=True)
    return value.detach().numpy(), [np.zeros_like(arrays[n]) if g is None else g.numpy()
                                    for n, g in zip(names, grads)]


def _classic_arrays(name, shapes):
    a = _arrays(**shapes)
    if name == "softmax cross-entropy":
        a["y"] = _softmax(a["y"] * 3)  # sums to one: the gradient is p - y
    if name == "logistic regression":
        a["y"] = np.sign(a["y"])
    return a


@pytest.mark.parametrize("name, text, declared, index, shapes, f, textbook", CLASSIC, ids=IDS)
def test_classic_in_both_notations_against_torch(name, text, declared, index, shapes, f, textbook):
    m, p = einsgrad.matrix(text, **declared), einsgrad.program(index)
    a = _classic_arrays(name, shapes)
    assert set(m.inputs) == set(p.inputs) == set(shapes)
    value, grads = _torch_grads(f, a, list(shapes))
    for prog in (m, p):
        np.testing.assert_allclose(prog(**a), value, rtol=1e-11)
        for n, expected in zip(shapes, grads):
            np.testing.assert_allclose(prog.grad(n)(**a), expected, rtol=1e-10, atol=1e-12, err_msg=n)
    for n, expected in textbook(**a).items():
        np.testing.assert_allclose(m.grad(n)(**a), expected, rtol=1e-10, atol=1e-12, err_msg=n)


@pytest.mark.parametrize("name, text, declared, index, shapes, f, textbook", CLASSIC, ids=IDS)
def test_classic_against_finite_differences(name, text, declared, index, shapes, f, textbook):
    m = einsgrad.matrix(text, **declared)
    a = _classic_arrays(name, shapes)
    for n in shapes:
        expected = _central(lambda v: m(**{**a, n: v}), a[n])
        np.testing.assert_allclose(m.grad(n)(**a), expected, rtol=1e-6, atol=1e-7, err_msg=n)


def test_second_order_of_matrix_text():
    q = einsgrad.matrix("f = x.T @ A @ x")
    a = _arrays(x=(4,), A=(4, 4))
    np.testing.assert_allclose(q.hessian("x")(**a), a["A"] + a["A"].T, rtol=1e-12)
    ls = einsgrad.matrix("L = norm(X @ w - y)^2")
    a, v = _arrays(X=(6, 3), w=(3,), y=(6,)), RNG.standard_normal(3)
    np.testing.assert_allclose(ls.hessian("w")(**a), 2 * a["X"].T @ a["X"], rtol=1e-12)
    np.testing.assert_allclose(ls.hvp("w")(**a, v=v), 2 * a["X"].T @ a["X"] @ v, rtol=1e-12)


def test_explain_reads_the_index_program():
    m = einsgrad.matrix("f = x.T @ A @ x")
    assert m.explain("x").gradients[0].matrix_form == "∂f/∂x = (A + Aᵀ) x"
    layer = einsgrad.matrix("L = 0.5 * norm(tanh(X @ W.T + b) - T)^2", b=1)
    assert "tanh' = 1 - y^2" in str(layer.explain("W"))


def test_torch_and_jax_operands():
    m = einsgrad.matrix("L = norm(X @ w - y)^2")
    a = _arrays(X=(6, 3), w=(3,), y=(6,))
    expected = np.sum((a["X"] @ a["w"] - a["y"]) ** 2)
    np.testing.assert_allclose(float(m(**{n: torch.tensor(v) for n, v in a.items()})), expected, rtol=1e-12)
    jnp = pytest.importorskip("jax.numpy")
    np.testing.assert_allclose(float(m(**{n: jnp.asarray(v) for n, v in a.items()})), expected, rtol=1e-5)


# -- generated matrix expressions against torch autograd -------------------------------------

SHAPES = {"a": (), "x": (3,), "y": (3,), "z": (4,), "A": (3, 3), "B": (3, 4), "C": (4, 3)}
SMOOTH = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "sin": torch.sin, "cos": torch.cos,
          "softplus": torch.nn.functional.softplus, "relu": torch.relu, "abs": torch.abs}


class _Expressions:
    """Random matrix text built with its meaning in torch, by the shape it must have."""

    def __init__(self, draw):
        self.draw = draw

    def pick(self, options):
        return self.draw(st.sampled_from(options))

    def of(self, shape, depth):
        leaves = [n for n, s in SHAPES.items() if s == shape]
        if depth <= 0 or self.draw(st.integers(0, 3)) == 0:
            if not shape and self.draw(st.booleans()):
                value = self.pick([0.5, 2, 3])
                return str(value), lambda env: torch.tensor(float(value), dtype=torch.float64)
            name = self.pick(leaves)
            return name, lambda env: env[name]
        kind = self.pick(["elementwise", "function", "matmul", "power", "divide", "transpose", "reduce"])
        if kind == "elementwise":
            return self.elementwise(shape, depth)
        if kind == "function":
            f = self.pick(sorted(SMOOTH))
            text, fn = self.of(shape, depth - 1)
            return f"{f}({text})", lambda env: SMOOTH[f](fn(env))
        if kind == "matmul" and shape:
            return self.matmul(shape, depth)
        if kind == "power":
            text, fn = self.of(shape, depth - 1)
            op = "**" if len(shape) == 2 else self.pick(["^", "**"])
            e = self.pick([2, 3])
            return f"({text}){op}{e}", lambda env: fn(env) ** e
        if kind == "divide":
            (t1, f1), (t2, f2) = self.of(shape, depth - 1), self.of(shape, depth - 1)
            return f"({t1} / (2 + tanh({t2})))", lambda env: f1(env) / (2 + torch.tanh(f2(env)))
        if kind == "transpose" and len(shape) == 2:
            text, fn = self.of(shape[::-1], depth - 1)
            return f"({text}){self.pick(['.T', chr(39)])}", lambda env: fn(env).T
        if kind == "reduce" and not shape:
            return self.reduce(depth)
        return self.elementwise(shape, depth)

    def elementwise(self, shape, depth):
        op = self.pick(["+", "-", "*"])
        other = self.pick([s for s in {shape, shape[-1:], ()}])
        (t1, f1), (t2, f2) = self.of(shape, depth - 1), self.of(other, depth - 1)
        if self.draw(st.booleans()):
            (t1, f1), (t2, f2) = (t2, f2), (t1, f1)
        ops = {"+": lambda u, v: u + v, "-": lambda u, v: u - v, "*": lambda u, v: u * v}
        return f"({t1} {op} {t2})", lambda env: ops[op](f1(env), f2(env))

    def matmul(self, shape, depth):
        """A product whose operands have shapes some leaf has (3x3, 3x4, 4x3, 3, 4)."""
        ks = [k for k in (3, 4) if {(shape[0], k), (k, shape[-1])} <= set(SHAPES.values())]
        k = self.pick(ks)
        if len(shape) == 2:
            left, right = (shape[0], k), (k, shape[1])
        else:
            left, right = self.pick([((shape[0], k), (k,)), ((k,), (k, shape[0]))])
        (t1, f1), (t2, f2) = self.of(left, depth - 1), self.of(right, depth - 1)
        return f"({t1} @ {t2})", lambda env: f1(env) @ f2(env)

    def reduce(self, depth):
        kind = self.pick(["sum", "norm", "norm2", "tr", "inner", "diag"])
        if kind == "tr":
            text, fn = self.of((3, 3), depth - 1)
            return f"tr({text})", lambda env: torch.trace(fn(env))
        if kind == "inner":
            (t1, f1), (t2, f2) = self.of((3,), depth - 1), self.of((3,), depth - 1)
            return f"(({t1}).T @ ({t2}))", lambda env: f1(env) @ f2(env)
        if kind == "diag":
            text, fn = self.of((3,), depth - 1)
            return f"sum(diag({text}) @ A)", lambda env: (torch.diag(fn(env)) @ env["A"]).sum()
        text, fn = self.of(self.pick([(3,), (3, 4), (3, 3)]), depth - 1)
        if kind == "sum":
            return f"sum({text})", lambda env: fn(env).sum()
        if kind == "norm2":
            return f"norm({text})^2", lambda env: (fn(env) ** 2).sum()
        return f"norm({text})", lambda env: torch.sqrt((fn(env) ** 2).sum())


@st.composite
def matrix_expressions(draw):
    gen = _Expressions(draw)
    shape = draw(st.sampled_from([(), (3,), (3, 4), (3, 3)]))
    text, fn = gen.of(shape, draw(st.integers(1, 3)))
    if draw(st.booleans()):  # a second statement reads the first
        return f"H = {text}\nL = sum(H * H)", lambda env: (fn(env) * fn(env)).sum()
    return f"L = sum({text})", lambda env: fn(env).sum()


@given(matrix_expressions())
@settings(max_examples=GENERATED, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_generated_matrix_expressions_against_torch_autograd(case):
    text, fn = case
    m = einsgrad.matrix(text)
    names = list(dict(m.accepts))  # what cancels (A - A) is accepted, and its gradient is 0
    a = {n: RNG.standard_normal(SHAPES[n]) for n in names}
    value, grads = _torch_grads(lambda **t: fn(t), a, names)
    np.testing.assert_allclose(m(**a), value, rtol=1e-9, atol=1e-12, err_msg=text)
    for n, expected in zip(names, grads):
        np.testing.assert_allclose(m.grad(n)(**a), expected, rtol=1e-8, atol=1e-10, err_msg=f"{text}: d/d{n}")
