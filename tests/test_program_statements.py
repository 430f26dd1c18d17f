"""Programs of several statements with elementwise functions, powers, quotients and scoped sums.

Values are checked against numpy written here, gradients against torch autograd on the same
formulas written in torch, and against central finite differences; hypothesis-generated
programs are built together with their torch meaning, so that the oracle never reads
einsgrad's parse.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import einsgrad
from einsgrad import EinsumSpecError
from oracles import central_gradient as _central

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(0)

GENERATED = int(os.environ.get("EINSGRAD_GENERATED_PROGRAMS", "60"))
"""Examples of the generated-program test: 60 in CI; set the variable (500) for a long hunt."""


def _arrays(**shapes):
    return {n: RNG.standard_normal(s) for n, s in shapes.items()}


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# -- reading and printing ----------------------------------------------------------------

LAYER = """
    H[b,j] = X[b,k] * W[j,k] + c[j]
    A[b,j] = tanh(H[b,j])
    L = 0.5 * (A[b,j] - T[b,j])^2
"""


def test_statements_print_and_read_back():
    p = einsgrad.program(LAYER)
    assert str(p) == ("H[b,j] = X[b,k] * W[j,k] + c[j]\nA[b,j] = tanh(H[b,j])\n"
                      "L = 0.5 * (A[b,j] - T[b,j])^2")
    assert einsgrad.program(str(p)) == p
    assert einsgrad.program(str(p).replace("\n", "; ")) == p
    assert p.inputs == ("X", "W", "c", "T") and p.output_name == "L" and p.output_indices == ()


@pytest.mark.parametrize("text, same", [
    ("Y[i] = x[i] / 2", "Y[i] = 0.5 * x[i]"),
    ("Y[i] = 1/2 * x[i] + 2^3 * y[i]", "Y[i] = 0.5 * x[i] + 8 * y[i]"),
    ("Y[i,j] = (X[i,k] * W[j,k])", "Y[i,j] = X[i,k] * W[j,k]"),
    ("f = -(x[i] * y[i])", "f = -x[i] * y[i]"),
])
def test_a_polynomial_statement_is_todays_program(text, same):
    assert einsgrad.program(text) == einsgrad.program(same)
    assert str(einsgrad.program(text)) == str(einsgrad.program(same))
    assert not einsgrad.program(text).statements


@pytest.mark.parametrize("literal, value", [("1e-3", "0.001"), ("2.5E2", "250"), ("1e+2", "100"),
                                            (".5e1", "5"), ("0e5", "0")])
def test_exponent_notation(literal, value):
    assert einsgrad.program(f"Y[i] = {literal} * x[i]") == einsgrad.program(f"Y[i] = {value} * x[i]")


@pytest.mark.parametrize("literal, match", [("1e300", r"reaches 10\^300"), ("1e-301", "has 301 digits"),
                                             ("1e9999999", "exponent is out of range")])
def test_exponent_notation_range(literal, match):
    with pytest.raises(EinsumSpecError, match=match):
        einsgrad.program(f"Y[i] = {literal} * x[i]")


def test_exact_rationals():
    p = einsgrad.program("Y[i] = x[i] / 3")
    assert str(p) == "Y[i] = 1/3 * x[i]" and einsgrad.program(str(p)) == p
    x = np.array([3.0, 6.0])
    np.testing.assert_allclose(p(x=x), x / 3, rtol=1e-15)


@pytest.mark.parametrize("text", [
    "L = log(sum[j](exp(z[j])))",
    "A[i,j] = tanh(sum[k](X[i,k] * W[j,k]) + b[j])",
    "P[b,j] = exp(z[b,j]) / sum[k](exp(z[b,k]))",
    "L = sqrt(1 + x[i]^2) - abs(y[i])^0.5 + relu(x[i]) * softplus(y[i])",
    "Y[i] = sigmoid(x[i])^-1 + sin(x[i]) * cos(x[i]) / (1 + x[i]^2)^(1/2)",
])
def test_expressions_read_back(text):
    p = einsgrad.program(text)
    assert einsgrad.program(str(p)) == p


# -- where sums go ------------------------------------------------------------------------

@pytest.mark.parametrize("text, index, inside, outside", [
    ("A[i,j] = tanh(X[i,k] * W[j,k])", "k", "tanh(sum[k](X[i,k] * W[j,k]))",
     "sum[k](tanh(X[i,k] * W[j,k]))"),
    ("L = (T[i,j] - U[i,a] * V[j,a])^2", "a", "(T[i,j] - sum[a](U[i,a] * V[j,a]))^2",
     "sum[a]((T[i,j] - U[i,a] * V[j,a])^2)"),
    ("L = 1 / (x[i] * y[i])", "i", "1 / sum[i](x[i] * y[i])", "sum[i](1 / (x[i] * y[i]))"),
])
def test_an_ambiguous_sum_is_refused_with_both_readings(text, index, inside, outside):
    with pytest.raises(EinsumSpecError, match=rf"index '{index}' occurs only inside") as info:
        einsgrad.program(text)
    assert info.value.reason.endswith(f"write {inside} or {outside}")
    assert info.value.spec == text and text[info.value.column] == index
    for reading in (inside, outside):
        einsgrad.program(text.split("=")[0] + "= " + reading)  # each reading is a program


def test_an_elementwise_index_is_summed_outside():
    """``(A - T)^2`` and ``tanh(x[i]) * (u[i] + 1)`` use ``i`` elementwise: one reading."""
    a = _arrays(A=(2, 3), T=(2, 3), x=(4,), u=(4,))
    np.testing.assert_allclose(einsgrad.program("L = (A[b,j] - T[b,j])^2")(A=a["A"], T=a["T"]),
                               ((a["A"] - a["T"]) ** 2).sum(), rtol=1e-13)
    np.testing.assert_allclose(einsgrad.program("L = tanh(x[i]) * (u[i] + 1)")(x=a["x"], u=a["u"]),
                               (np.tanh(a["x"]) * (a["u"] + 1)).sum(), rtol=1e-13)


PARSE_ERRORS = [
    ("Y[i] = foo(x[i])", r"unknown function 'foo'; the functions are abs, cos, exp", 7),
    ("A[i] = x[i]\nA[i] = y[i]", r"'A' is defined twice, first at column 0", 12),
    ("B[i] = A[i]\nA[i] = y[i]", r"'A' is read at column 7 before this statement defines it", 12),
    ("A[i] = x[i]\nB = A[i,j]", r"tensor 'A' has 2 index\(es\) here but 1", 16),
    ("L = sum[k](x[k] + y[i])", r"index 'k' of this sum is missing from a term", 8),
    ("L = sum[k,k](x[k])", r"index 'k' is repeated in sum", 10),
    ("Y[i] = x[i] / 0", r"division by zero", 14),
    ("Y[i] = x[i]^y[i]", r"expected a number after '\^', found 'y'", 12),
    ("Y[i] = 2^0.5 * x[i]", r"2\^0.5 is not a rational number", 7),
    ("Y[i] = tanh(x[i]", r"expected '\)' or an operator, found the end", 16),
    ("Y[i] = x[i]\nZ[i] = Z[i]", r"the output 'Z' is used on the right", 19),
    ("A[i] = x[i] % 2", r"character '%' is not allowed", 12),
    ("f = " + "tanh(" * 65 + "x" + ")" * 65, r"nest deeper than 64", 4 + 5 * 64 + 4),
]


@pytest.mark.parametrize("text, match, column", PARSE_ERRORS, ids=[e[0] for e in PARSE_ERRORS])
def test_parse_errors(text, match, column):
    with pytest.raises(EinsumSpecError, match=match) as info:
        einsgrad.program(text)
    assert info.value.spec == text and info.value.column == column


def test_an_error_in_a_later_line_names_the_line():
    with pytest.raises(EinsumSpecError) as info:
        einsgrad.program("A[i] = x[i]\nB[i] = tanh(A[i] * y[i]) +")
    assert str(info.value).splitlines()[1:] == ["    line 2: B[i] = tanh(A[i] * y[i]) +",
                                                "                                      ^"]


# -- evaluation ---------------------------------------------------------------------------

def _lse(z):
    return np.log(np.exp(z).sum())


EVALUATIONS = [
    (LAYER, dict(X=(4, 3), W=(5, 3), c=(5,), T=(4, 5)),
     lambda X, W, c, T: 0.5 * ((np.tanh(X @ W.T + c) - T) ** 2).sum()),
    ("L = log(sum[j](exp(z[j])))", dict(z=(6,)), _lse),
    ("A[i,j] = tanh(sum[k](X[i,k] * W[j,k]) + b[j])", dict(X=(2, 3), W=(4, 3), b=(4,)),
     lambda X, W, b: np.tanh(X @ W.T + b)),
    ("E[b,j] = exp(z[b,j]); P[b,j] = E[b,j] / sum[k](E[b,k])", dict(z=(3, 5)), _softmax),
    ("A[j,i] = sigmoid(X[i,j])", dict(X=(2, 3)), lambda X: 1 / (1 + np.exp(-X.T))),
    ("Y[i] = relu(x[i]) + abs(x[i])^3 - sqrt(1 + x[i]^2) / softplus(x[i])", dict(x=(7,)),
     lambda x: np.maximum(x, 0) + np.abs(x) ** 3 - np.sqrt(1 + x ** 2) / np.log1p(np.exp(x))),
    ("S[i] = sin(x[i]) * cos(y[j]); L = S[i] * S[i]", dict(x=(3,), y=(4,)),
     lambda x, y: ((np.sin(x) * np.cos(y).sum()) ** 2).sum()),
    ("D[i] = tanh(A[i,i]); L = D[i] / 3", dict(A=(3, 3)), lambda A: np.tanh(np.diag(A)).sum() / 3),
]


@pytest.mark.parametrize("text, shapes, expected", EVALUATIONS, ids=range(len(EVALUATIONS)))
def test_evaluation_against_numpy(text, shapes, expected):
    a = _arrays(**shapes)
    np.testing.assert_allclose(einsgrad.program(text)(**a), expected(*a.values()), rtol=1e-12)


def test_torch_operands_and_integer_inputs():
    p = einsgrad.program("A[i,j] = tanh(sum[k](X[i,k] * W[j,k]))")
    X, W = np.arange(6).reshape(2, 3), np.ones((4, 3), dtype=np.int64)
    np.testing.assert_allclose(p(X=X, W=W), np.tanh(X @ W.T), rtol=1e-14)
    np.testing.assert_allclose(p(X=torch.tensor(X * 0.1), W=torch.tensor(W * 1.0)),
                               np.tanh(0.1 * X @ W.T), rtol=1e-14)


def test_jax_operands():
    jnp = pytest.importorskip("jax.numpy")
    p = einsgrad.program(LAYER)
    a = _arrays(X=(4, 3), W=(5, 3), c=(5,), T=(4, 5))
    A = np.tanh(a["X"] @ a["W"].T + a["c"])
    got = p.grad("W")(**{n: jnp.asarray(v, dtype=jnp.float32) for n, v in a.items()})
    np.testing.assert_allclose(got, ((A - a["T"]) * (1 - A ** 2)).T @ a["X"], rtol=1e-4, atol=1e-5)


def test_evaluation_errors_name_the_tensor():
    p = einsgrad.program(LAYER)
    a = _arrays(X=(4, 3), W=(5, 3), c=(5,), T=(4, 5))
    with pytest.raises(EinsumSpecError, match="missing input 'T'"):
        p(X=a["X"], W=a["W"], c=a["c"])
    with pytest.raises(EinsumSpecError, match=r"index 'k' has size 2 in 'W' \(axis 1\) but 3 in 'X'"):
        p(**{**a, "W": np.ones((5, 2))})
    with pytest.raises(EinsumSpecError, match="'Z': not a tensor of the program"):
        p(**a, Z=1)


# -- gradients ----------------------------------------------------------------------------

def _torch_grads(f, arrays, names):
    ts = {n: torch.tensor(v, requires_grad=n in names) for n, v in arrays.items()}
    value = f(**ts)
    grads = torch.autograd.grad(value, [ts[n] for n in names], allow_unused=True)
    return value.detach().numpy(), [np.zeros_like(arrays[n]) if g is None else g.numpy()
                                    for n, g in zip(names, grads)]


CLASSIC = [
    ("tanh layer", LAYER, dict(X=(4, 3), W=(5, 3), c=(5,), T=(4, 5)),
     lambda X, W, c, T: 0.5 * ((torch.tanh(X @ W.T + c) - T) ** 2).sum()),
    ("sigmoid layer", "A[b,j] = sigmoid(sum[k](X[b,k] * W[j,k]) + c[j]); L = A[b,j] * T[b,j]",
     dict(X=(4, 3), W=(5, 3), c=(5,), T=(4, 5)),
     lambda X, W, c, T: (torch.sigmoid(X @ W.T + c) * T).sum()),
    ("relu layer", "H[b,j] = X[b,k] * W[j,k] + c[j]; L = relu(H[b,j]) * T[b,j]",
     dict(X=(4, 3), W=(5, 3), c=(5,), T=(4, 5)),
     lambda X, W, c, T: (torch.relu(X @ W.T + c) * T).sum()),
    ("logistic regression", "z[n] = X[n,f] * w[f]; L = softplus(z[n]) - y[n] * z[n]",
     dict(X=(6, 3), w=(3,), y=(6,)),
     lambda X, w, y: (torch.nn.functional.softplus(X @ w) - y * (X @ w)).sum()),
    ("softmax cross-entropy", "E[b,j] = exp(z[b,j]); S[b] = sum[j](E[b,j]); P[b,j] = E[b,j] / S[b]\n"
     "L = -y[b,j] * log(P[b,j])", dict(z=(3, 4), y=(3, 4)),
     lambda z, y: -(y * torch.log_softmax(z, dim=1)).sum()),
    ("log-sum-exp", "L = log(sum[j](exp(z[j])))", dict(z=(5,)), lambda z: torch.logsumexp(z, 0)),
    ("least squares", "r[n] = X[n,f] * w[f] - y[n]; L = r[n]^2", dict(X=(6, 3), w=(3,), y=(6,)),
     lambda X, w, y: ((X @ w - y) ** 2).sum()),
    ("matrix factorization", "L = sum[i,j]((T[i,j] - sum[a](U[i,a] * V[j,a]))^2)",
     dict(T=(4, 3), U=(4, 2), V=(3, 2)), lambda T, U, V: ((T - U @ V.T) ** 2).sum()),
    ("quotient and power", "q[i] = x[i] / (1 + y[i]^2)^0.5; L = q[i]^3 + 1 / sqrt(exp(x[i]))",
     dict(x=(4,), y=(4,)), lambda x, y: ((x / torch.sqrt(1 + y ** 2)) ** 3 + torch.exp(x) ** -0.5).sum()),
    ("trig and abs", "L = sin(x[i]) * cos(y[i]) + sum[i](abs(x[i] * y[i]))", dict(x=(4,), y=(4,)),
     lambda x, y: (torch.sin(x) * torch.cos(y) + torch.abs(x * y)).sum()),
]


@pytest.mark.parametrize("name, text, shapes, f", CLASSIC, ids=[c[0] for c in CLASSIC])
def test_gradients_against_torch_autograd(name, text, shapes, f):
    p = einsgrad.program(text)
    a = _arrays(**shapes)
    if name == "softmax cross-entropy":
        a["y"] = _softmax(a["y"] * 3)  # rows that sum to one, so that the gradient is p - y
    value, grads = _torch_grads(f, a, list(p.inputs))
    np.testing.assert_allclose(p(**a), value, rtol=1e-11)
    for n, expected in zip(p.inputs, grads):
        np.testing.assert_allclose(p.grad(n)(**a), expected, rtol=1e-10, atol=1e-12, err_msg=n)
    if name == "softmax cross-entropy":
        np.testing.assert_allclose(p.grad("z")(**a), _softmax(a["z"]) - a["y"], rtol=1e-10, atol=1e-12)


def test_the_tanh_layer_gradient_reads_as_backprop():
    g = einsgrad.program(LAYER).grad("W")
    assert str(g) == ("H[b,j] = X[b,k] * W[j,k] + c[j]\nA[b,j] = tanh(H[b,j])\n"
                      "dH[b,j] = (A[b,j] - T[b,j]) * (1 - A[b,j]^2)\n"
                      "dW[j,k] = dH[b,j] * X[b,k]")  # the user's index names, the forward's A
    assert g.output_name == "dW" and g.output_indices == ("j", "k")
    assert einsgrad.program(str(g)) == g


def test_an_indexed_output_takes_its_cotangent():
    p = einsgrad.program("A[i,j] = tanh(sum[k](X[i,k] * W[j,k]))")
    a = _arrays(X=(2, 3), W=(4, 3), dA=(2, 4))
    A = np.tanh(a["X"] @ a["W"].T)
    np.testing.assert_allclose(p.grad("W")(**a), ((1 - A ** 2) * a["dA"]).T @ a["X"], rtol=1e-12)


def test_a_gradient_by_a_tensor_off_the_path_is_zero():
    p = einsgrad.program("A[i] = tanh(x[i]); B[j] = exp(y[j]); L = B[j]")
    g = p.grad("x", out="gx")
    assert str(g) == "gx[i] = 0"
    np.testing.assert_array_equal(g(x=np.ones(3), y=np.ones(2)), np.zeros(3))


@pytest.mark.parametrize("action, match", [
    (lambda p: p.hvp("W", v="A"), r"the vector would be named 'A'"),
    (lambda p: p.grad("H"), r"cannot differentiate by 'H'"),
    (lambda p: p.grad("W", out="A"), r"the result would be named 'A'"),
])
def test_what_statements_do_not_do_yet_is_refused(action, match):
    with pytest.raises(EinsumSpecError, match=match):
        action(einsgrad.program(LAYER))


def _central_jacobian(f, x, h=1e-6):
    """``J[..x's axes, ..f's axes]`` by central differences (a Hessian from a gradient)."""
    columns = []
    for e in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[e] = h
        columns.append((np.asarray(f(x + step)) - np.asarray(f(x - step))) / (2 * h))
    return np.reshape(columns, x.shape + np.shape(columns[0]))


@pytest.mark.parametrize("name, text, shapes, f", CLASSIC[:8], ids=[c[0] for c in CLASSIC[:8]])
def test_gradients_against_finite_differences(name, text, shapes, f):
    p = einsgrad.program(text)
    a = _arrays(**shapes)
    for n in p.inputs:
        expected = _central(lambda v: p(**{**a, n: v}), a[n])
        np.testing.assert_allclose(p.grad(n)(**a), expected, rtol=1e-6, atol=1e-7, err_msg=n)


# -- generated programs -------------------------------------------------------------------

SIZES = {"i": 3, "j": 4, "k": 2}
INPUTS = {"x": "i", "y": "j", "A": "ij", "B": "jk", "C": "ki", "s": ""}


def _lift(value, indices):
    """A torch tensor over ``indices`` as one over ``i, j, k`` (1 where it has no axis)."""
    order = sorted(indices, key="ijk".index)
    value = value.permute(*[indices.index(i) for i in order]) if len(order) > 1 else value
    return value.reshape([SIZES[i] if i in indices else 1 for i in "ijk"])


def _sum(value, over):
    dims = ["ijk".index(i) for i in over]
    return value.sum(dim=dims, keepdim=True) if dims else value


FUNCTIONS = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "sin": torch.sin, "cos": torch.cos,
             "relu": torch.relu, "abs": torch.abs, "softplus": torch.nn.functional.softplus}
POSITIVE = {"exp": torch.exp, "softplus": torch.nn.functional.softplus}


class _Gen:
    """A random program built with its meaning in torch, statement by statement."""

    def __init__(self, draw):
        self.draw = draw
        self.tensors = dict(INPUTS)  # name -> its indices

    def pick(self, options):
        return self.draw(st.sampled_from(sorted(options)))

    def tensor(self, allowed):
        names = [n for n, ix in self.tensors.items() if set(ix) <= set(allowed)]
        made = [n for n in names if n not in INPUTS]
        name = self.pick(made if made and self.draw(st.booleans()) else names)  # statements read often
        ix = self.tensors[name]
        text = name + (f"[{','.join(ix)}]" if ix else "")
        return text, ix, lambda env: _lift(env[name], ix)

    def group(self, allowed, depth):
        """Terms over ``allowed`` indices, elementwise (nothing summed): text, indices, value."""
        parts = [self.product(allowed, depth, nested=True) for _ in range(self.draw(st.integers(1, 2)))]
        signs = [self.pick(["+", "-"]) for _ in parts[1:]]
        text = parts[0][0] + "".join(f" {s} {t}" for s, (t, _, _) in zip(signs, parts[1:]))
        held = "".join(dict.fromkeys(i for _, ix, _ in parts for i in ix))

        def value(env):
            total = parts[0][2](env)
            for s, (_, _, fn) in zip(signs, parts[1:]):
                total = total + fn(env) if s == "+" else total - fn(env)
            return total
        return text, held, value

    def positive(self, allowed, depth):
        g, ix, fn = self.group(allowed, depth)
        kind = self.pick(["exp", "softplus", "square"])
        if kind == "square":
            return f"(1 + ({g})^2)", ix, lambda env: 1 + fn(env) ** 2
        return f"{kind}({g})", ix, lambda env: POSITIVE[kind](fn(env))

    def factor(self, allowed, depth, nested):
        kinds = ["tensor", "tensor", "number", "repeat"] + (
            ["call", "log", "power", "scoped", "scoped", "divide"] if depth < 2 else [])
        kind = self.pick(kinds)
        inner = allowed if nested else self.outer
        if kind == "tensor":
            return self.tensor(allowed if nested else "ijk")
        if kind == "repeat":  # one tensor twice, as a product or a power: x[i] * x[i], S0[j]^3
            t, ix, fn = self.tensor(allowed if nested else "ijk")
            e = self.pick([2, 3, 0])
            return ((f"{t} * {t}", ix, lambda env: fn(env) * fn(env)) if e == 0 else
                    (f"{t}^{e}", ix, lambda env: fn(env) ** e))
        if kind == "number":
            text, value = self.pick([("0.5", 0.5), ("2", 2.0), ("1/3", 1 / 3), ("1.5", 1.5)])
            return text, "", lambda env: torch.tensor(value, dtype=torch.float64)
        if kind == "call":
            f = self.pick(FUNCTIONS)
            g, ix, fn = self.group(inner, depth + 1)
            return f"{f}({g})", ix, lambda env: FUNCTIONS[f](fn(env))
        if kind == "log":
            p, ix, fn = self.positive(inner, depth + 1)
            f = self.pick(["log", "sqrt"])
            return f"{f}({p})", ix, lambda env: (torch.log if f == "log" else torch.sqrt)(fn(env))
        if kind == "power":
            g, ix, fn = self.group(inner, depth + 1)
            e = self.pick([2, 3])
            return f"({g})^{e}", ix, lambda env: fn(env) ** e
        if kind == "divide":
            p, ix, fn = self.positive(inner, depth + 1)
            e = self.pick(["-1", "-0.5"])
            return f"{p}^{e}", ix, lambda env: fn(env) ** float(e)
        choices = [(k, n) for k in "ijk" if k not in inner for n, v in self.tensors.items()
                   if k in v and set(v) <= set(inner) | {k}]
        if not choices:
            return self.tensor(allowed if nested else "ijk")
        k, name = self.pick(choices)
        v = self.tensors[name]
        t = name + f"[{','.join(v)}]"
        g, ix, gfn = self.group(inner, depth + 1)
        held = "".join(dict.fromkeys(i for i in v + ix if i != k))
        return (f"sum[{k}]({t} * ({g}))", held,
                lambda env: _sum(_lift(env[name], v) * gfn(env), k))

    def product(self, allowed, depth, nested):
        parts = [self.factor(allowed, depth, nested) for _ in range(self.draw(st.integers(1, 3)))]
        held = "".join(dict.fromkeys(i for _, ix, _ in parts for i in ix))

        def value(env):
            total = parts[0][2](env)
            for _, _, fn in parts[1:]:
                total = total * fn(env)
            return total
        return " * ".join(t for t, _, _ in parts), held, value

    def term(self):
        """A statement's term: a product (indices off the output summed), a constant, or a
        product over some of the output's indices only (broadcast along the others)."""
        kind = self.pick(["product", "product", "constant", "broadcast"])
        if kind == "constant":
            text, value = self.pick([("0.5", 0.5), ("2", 2.0), ("1/3", 1 / 3)])
            if self.draw(st.booleans()):
                return f"{text} * s", "", lambda env: value * env["s"].reshape(1, 1, 1)
            return text, "", lambda env: torch.tensor(value, dtype=torch.float64)
        if kind == "broadcast":
            some = "".join(i for i in self.outer if self.draw(st.booleans()))
            return self.product(some, 1, nested=True)
        return self.product(self.outer, 0, nested=False)

    def statement(self, name):
        self.outer = "".join(self.draw(st.permutations("ijk"))[:self.draw(st.integers(0, 3))])
        terms = [self.term() for _ in range(self.draw(st.integers(1, 3)))]
        held = {i for _, ix, _ in terms for i in ix}
        out = "".join(i for i in self.outer if i in held)
        text = f"{name}{'[' + ','.join(out) + ']' if out else ''} = " + " + ".join(t for t, _, _ in terms)

        def value(env):
            total = torch.zeros([1, 1, 1], dtype=torch.float64)
            for _, ix, fn in terms:
                total = total + _sum(fn(env) * torch.ones([1, 1, 1], dtype=torch.float64),
                                     [i for i in ix if i not in out])
            total = total.expand([SIZES[i] if i in out else 1 for i in "ijk"])
            order = sorted(out, key="ijk".index)
            total = total.reshape([SIZES[i] for i in order])
            return total.permute(*[order.index(i) for i in out]) if len(out) > 1 else total
        self.tensors[name] = out
        return text, value


def _numpy(t) -> np.ndarray:
    """A torch result as numpy; torch may answer a ZeroTensor, which has no numpy() and no
    storage (a clone has both)."""
    return np.asarray(t.detach().clone().tolist(), dtype=float)


@st.composite
def generated_programs(draw):
    gen = _Gen(draw)
    texts, steps = [], []
    for n in range(draw(st.integers(1, 3))):
        text, value = gen.statement(f"S{n}")
        texts.append(text)
        steps.append((f"S{n}", value))
    last = steps[-1][0]
    ix = gen.tensors[last]
    probe = last + (f"[{','.join(ix)}]" if ix else "")
    texts.append(f"L = {probe} * q{'[' + ','.join(ix) + ']' if ix else ''}")
    shapes = {n: tuple(SIZES[i] for i in v) for n, v in INPUTS.items()}
    shapes["q"] = tuple(SIZES[i] for i in ix)

    def loss(**env):
        env = dict(env)
        for name, value in steps:
            env[name] = value(env)
        return (env[last] * env["q"]).sum()
    return "\n".join(texts), shapes, loss


def _torch_references(loss, a, names, n, v):
    """torch autograd's value, gradients, HVP along ``v`` and Hessian by ``n``, at ``a``."""
    value, grads = _torch_grads(loss, a, names)
    ts = {m: torch.tensor(x, requires_grad=True) for m, x in a.items()}
    (g,) = torch.autograd.grad(loss(**ts), [ts[n]], create_graph=True, allow_unused=True)
    hv = None if g is None or not g.requires_grad else torch.autograd.grad(
        (g * torch.tensor(v)).sum(), [ts[n]], allow_unused=True)[0]
    hv = np.zeros_like(v) if hv is None else _numpy(hv)
    others = {m: torch.tensor(x) for m, x in a.items() if m != n}
    H = _numpy(torch.autograd.functional.hessian(lambda x: loss(**others, **{n: x}), torch.tensor(a[n])))
    return [value, *grads, hv, H]


def _rounding_noise(loss, a, names, n, v, rng):
    """torch's references at ``a`` and at ``a`` moved by a relative 1e-12, each with how far
    the two differ: a well-conditioned quantity moves by about 1e-12 of itself, while one that
    cancels (``S^3 * S - S * S^3``, whose derivatives are exactly 0 and which einsgrad merges to
    0) is rounding noise in torch and moves by as much as it is."""
    moved = {m: x * (1 + 1e-12 * rng.standard_normal(np.shape(x))) for m, x in a.items()}
    here, there = _torch_references(loss, a, names, n, v), _torch_references(loss, moved, names, n, v)
    return here, [np.abs(x - y).max(initial=0) for x, y in zip(here, there)]


@settings(max_examples=GENERATED, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(generated_programs(), st.integers(0, 2 ** 16))
def test_generated_programs_against_torch_autograd(case, seed):
    """Value, every gradient, an HVP and a Hessian against torch autograd, each within its
    tolerance plus 100x torch's own rounding noise on it (see _rounding_noise); one gradient and
    the Hessian against central differences of einsgrad's own value and gradient."""
    text, shapes, loss = case
    p = einsgrad.program(text)
    assert einsgrad.program(str(p)) == p
    rng = np.random.default_rng(seed)
    a = {n: rng.standard_normal(s) * 0.7 for n, s in shapes.items()}
    names = [n for n in p.inputs]
    n = names[seed % len(names)]
    v = rng.standard_normal(a[n].shape)
    (value, *grads, hv_torch, H), (value_noise, *grad_noise, hv_noise, H_noise) = _rounding_noise(
        loss, {m: a[m] for m in shapes}, names, n, v, rng)
    assume(all(np.all(np.abs(x) < 1e6) for x in [value, *grads]))  # no overflow: values comparable
    given = {m: a[m] for m in p.inputs}
    np.testing.assert_allclose(p(**given), value, rtol=1e-9, atol=1e-9 + 100 * value_noise)
    for m, expected, noise in zip(names, grads, grad_noise):
        got = p.grad(m)(**given)
        np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-8 + 100 * noise, err_msg=f"{m}\n{p.grad(m)}")
    expected, error = _differences(_central, lambda x: p(**{**given, n: x}), a[n])  # the value's own
    np.testing.assert_allclose(p.grad(n)(**given), expected, rtol=1e-5,
                               atol=1e-5 * (1 + np.abs(expected).max(initial=0)) + 10 * error,
                               err_msg=f"{n}\n{p.grad(n)}")
    # torch's double backward is an oracle where it agrees with central differences of torch's
    # own gradient; where it does not (found: a program whose terms cancel to rounding residues,
    # where it gave 8.4e6 and the differences 13846), the differences are the reference.
    arrays = {m: a[m] for m in shapes}
    every = list(arrays)

    def torch_gradient(x):
        try:
            return _torch_grads(loss, {**arrays, n: x}, every)[1][every.index(n)]
        except RuntimeError:  # the value reads none of the inputs: no graph
            return np.zeros_like(x)

    torch_differences, torch_error = _differences(_central_jacobian, torch_gradient, a[n])
    slack = 1e-5 * (1 + np.abs(torch_differences).max(initial=0)) + 10 * torch_error
    rtol = 1e-7
    if not np.allclose(H, torch_differences, rtol=1e-5, atol=slack):
        rtol, H, H_noise = 1e-5, torch_differences, slack
        hv_torch = np.tensordot(v, torch_differences, axes=v.ndim)
        hv_noise = slack * np.abs(v).sum()
    hv = p.hvp(n)
    np.testing.assert_allclose(hv(**given, v=v), hv_torch, rtol=rtol, atol=1e-7 + 100 * hv_noise,
                               err_msg=f"{n}\n{hv}")
    got = p.hessian(n)
    hessian = got(**given)
    np.testing.assert_allclose(hessian, H, rtol=rtol, atol=1e-7 + 100 * H_noise, err_msg=f"{n}\n{got}")
    gradient = p.grad(n)  # the Hessian is symmetric: the differences of the gradient, either way round
    differences, error = _differences(_central_jacobian, lambda x: gradient(**{**given, n: x}), a[n])
    np.testing.assert_allclose(hessian, differences, rtol=1e-5,
                               atol=1e-5 * (1 + np.abs(differences).max(initial=0)) + 10 * error,
                               err_msg=f"{n}\n{got}")


def _differences(central, f, x, h=1e-6):
    """Central differences of ``f`` at step ``h``, and their own error estimated from the
    differences at ``2 h`` (Richardson: the truncation error grows as h², rounding as 1/h), so
    that an ill-conditioned generated program (large third derivatives) is held to what its
    differences can tell."""
    fine, coarse = central(f, x, h), central(f, x, 2 * h)
    return fine, np.abs(fine - coarse).max(initial=0)


PIECES = ["f", "x", "A", "i", "j", "[", "]", ",", "*", "/", "^", "+", "-", "=", " ", "2", "0.5",
          "(", ")", ";", "\n", "tanh", "exp", "log", "sum", "sum[j]", "[i]", "[i,j]", "delta[i,j]",
          "1/2", "^-1", "^2"]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["f = ", "Y[i] = ", "Y[i,j] = "]), st.lists(st.sampled_from(PIECES), max_size=30))
def test_fuzzed_expression_texts(left, pieces):
    """Any text is a program that reads back as itself, or an EinsumSpecError into it."""
    text = left + "".join(pieces)
    try:
        p = einsgrad.program(text)
    except EinsumSpecError as e:
        assert e.spec == text and (e.column is None or 0 <= e.column <= len(text))
        return
    assert einsgrad.program(str(p)) == p
    for name in p.inputs[:2]:
        try:
            p.grad(name)
        except EinsumSpecError:
            pass


@pytest.mark.parametrize("name, text, shapes, f", CLASSIC, ids=[c[0] for c in CLASSIC])
def test_hessian_vector_products_against_torch(name, text, shapes, f):
    p = einsgrad.program(text)
    a = _arrays(**shapes)
    for n in p.inputs:
        v = RNG.standard_normal(a[n].shape)
        ts = {m: torch.tensor(x, requires_grad=True) for m, x in a.items()}
        (g,) = torch.autograd.grad(f(**ts), [ts[n]], create_graph=True)
        (expected,) = torch.autograd.grad((g * torch.tensor(v)).sum(), [ts[n]], allow_unused=True)
        expected = np.zeros_like(v) if expected is None else expected.numpy()
        hv = p.hvp(n)
        np.testing.assert_allclose(hv(**a, v=v), expected, rtol=1e-9, atol=1e-10, err_msg=f"{n}\n{hv}")


@pytest.mark.parametrize("name, text, shapes, f", CLASSIC, ids=[c[0] for c in CLASSIC])
def test_hessians_against_torch(name, text, shapes, f):
    p = einsgrad.program(text)
    a = _arrays(**shapes)
    names = list(p.inputs)
    ts = tuple(torch.tensor(a[n]) for n in names)
    full = torch.autograd.functional.hessian(lambda *xs: f(**dict(zip(names, xs))), ts)
    for n in names[:2]:
        for m in names[:2]:
            H = p.hessian(n, m)
            expected = full[names.index(n)][names.index(m)].numpy()
            np.testing.assert_allclose(H(**a), expected, rtol=1e-9, atol=1e-10, err_msg=f"{n},{m}\n{H}")


def test_jacobian_of_a_layer_against_torch():
    p = einsgrad.program("A[i,j] = tanh(sum[k](X[i,k] * W[j,k]) + b[j])")
    a = _arrays(X=(2, 3), W=(4, 3), b=(4,))
    J = p.jacobian("W")
    assert J.output_indices == ("i", "j", "l", "k")  # W[j,k] by a fresh name where the output has j, as today
    expected = torch.autograd.functional.jacobian(
        lambda w: torch.tanh(torch.tensor(a["X"]) @ w.T + torch.tensor(a["b"])), torch.tensor(a["W"]))
    np.testing.assert_allclose(J(**a), expected.numpy(), rtol=1e-12, atol=1e-14)


def test_a_broadcast_cotangent_is_not_lost_in_a_sum():
    """``S0[j] = t^2 + ...`` read by ``Σ_j S0[j]``: the cotangent of ``t`` counts every ``j``."""
    p = einsgrad.program("S0[j] = (0.5 * s)^2 + A[i,j]; L = S0[j] * q")
    s, A, q = 0.7, RNG.standard_normal((3, 4)), 1.3
    np.testing.assert_allclose(p.grad("s")(s=s, A=A, q=q), 4 * q * 2 * 0.25 * s, rtol=1e-14)


@pytest.mark.parametrize("text", [
    "S0[j] = x[i] + A[i,j]\nL = 0.5 * S0[j]",
    "S0[j] = x[i] + A[i,j]\nt = 0.5 * S0[j]\nL = 3 * t",
    "S0[j] = x[i] + A[i,j]\nS2[i] = abs(sum[j](S0[j] * (0.5)) * x[i])\nL = S2[i] * q[i]",
])
def test_a_broadcast_cotangent_keeps_the_count_of_its_sum(text):
    """A cotangent constant along an index (dS0[j] = 0.5) stays a tensor over it, so that the
    sum over j that reads it counts dim(j): the gradient and the Hessian by finite differences."""
    p = einsgrad.program(text)
    rng = np.random.default_rng(2)
    a = {"x": rng.standard_normal(3), "A": rng.standard_normal((3, 4)), "q": rng.standard_normal(3)}
    given = {m: a[m] for m in p.inputs}
    eps, basis = 1e-6, np.eye(3)

    def fd(f):
        return np.array([(f(a["x"] + eps * e) - f(a["x"] - eps * e)) / (2 * eps) for e in basis])

    grad = p.grad("x")
    np.testing.assert_allclose(grad(**given), fd(lambda x: p(**{**given, "x": x})), rtol=1e-6, atol=1e-6)
    hessian = p.hessian("x")(**given)
    np.testing.assert_allclose(hessian, fd(lambda x: grad(**{**given, "x": x})).T, rtol=1e-5, atol=1e-5)


def test_sigmoid_keeps_its_precision_where_it_is_tiny():
    """``sigmoid(u)`` for very negative ``u`` (and ``softplus' = sigmoid`` with it) to a few
    roundings: ``(1 + tanh(u/2)) / 2`` lost 1e-5 of it at u = -25 and all of it below -40."""
    x = np.array([-700.0, -50.0, -25.6, -1.0, 0.0, 3.0, 40.0])
    expected = [math.exp(u) / (1 + math.exp(u)) if u < 0 else 1 / (1 + math.exp(-u)) for u in x]
    np.testing.assert_allclose(einsgrad.program("Y[i] = sigmoid(x[i])")(x=x), expected, rtol=1e-13)
    np.testing.assert_allclose(einsgrad.program("L = softplus(x[i])").grad("x")(x=x), expected, rtol=1e-13)


FOUND = [  # programs hypothesis found wrong, with their meaning in torch
    ("softplus near zero", "S0[j,k] = 0.0625 * softplus(0.5 - y[j] * (B[j,k] + B[j,k])^2)^-0.5\n"
     "L = S0[j,k] * q[j,k]", dict(y=np.array([0.3, 1.2]), B=np.array([[0.2, 5.0], [-0.1, 0.7]]),
                                  q=np.array([[0.5, -1.0], [2.0, 0.25]])),
     lambda y, B, q: (0.0625 * torch.nn.functional.softplus(0.5 - y[:, None] * (2 * B) ** 2) ** -0.5 * q).sum()),
]


@pytest.mark.parametrize("name, text, a, f", FOUND, ids=[c[0] for c in FOUND])
def test_programs_hypothesis_found(name, text, a, f):
    p = einsgrad.program(text)
    value, grads = _torch_grads(f, a, list(p.inputs))
    np.testing.assert_allclose(p(**a), value, rtol=1e-12)
    for n, expected in zip(p.inputs, grads):
        np.testing.assert_allclose(p.grad(n)(**a), expected, rtol=1e-11, err_msg=n)


def test_a_temporary_that_sizes_a_cotangent_stays():
    """The temporary ``t1 = S0 + 0.5`` sizes its cotangent ``dt1`` (a witness, read by no
    term): it is not written in where it is read, and nothing fails looking for a reader
    (found by the generated test at 500 examples, seed 1)."""
    p = einsgrad.program("S0 = abs(s * s)\nS1 = sum[i](x[i] * (S0 + 0.5))\nL = S1 * q")
    s, x, q = 0.6, RNG.standard_normal(3), 1.7
    np.testing.assert_allclose(p.grad("x")(s=s, x=x, q=q), q * (s * s + 0.5) * np.ones(3), rtol=1e-14)
    np.testing.assert_allclose(p.grad("s")(s=s, x=x, q=q), q * x.sum() * 2 * s, rtol=1e-14)
    np.testing.assert_allclose(p.hessian("s")(s=s, x=x, q=q), q * x.sum() * 2, rtol=1e-14)


def test_a_delta_on_summed_indices_before_another_statement():
    """``x[i] δ[i,k] A[k,j]`` summed to a scalar that a later statement reads: the delta's
    indices are summed within their term, so each is sized there (it raised a KeyError)."""
    x, A = RNG.standard_normal(3), RNG.standard_normal((3, 4))
    p = einsgrad.program("H = x[i] * delta[i,k] * A[k,j]\nL = H * H")
    h = np.einsum("i,ij->", x, A)
    np.testing.assert_allclose(p(x=x, A=A), h ** 2, rtol=1e-12)
    np.testing.assert_allclose(p.grad("x")(x=x, A=A), 2 * h * A.sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(einsgrad.program("H = x[i] * delta[i,k]\nL = H * H")(x=x), x.sum() ** 2)
