"""Matrix forms of program gradients and Hessians, checked against textbook formulas.

Each printed matrix form is read back by a small parser written here (independent of the
renderer: it knows only the notation, ``Xᵀ``, juxtaposition, ``∘``, ``⊘``, ``/``, ``Diag``,
``tr``, ``1`` and ``I``) and evaluated with numpy; the value must equal the textbook formula,
written by hand in numpy, and so must the program's own gradient. The classic table is the
issue's: tanh, sigmoid and relu layers with squared error, logistic regression, softmax
cross-entropy, log-sum-exp, least squares, matrix factorization, xᵀAx and tr(AXB).
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

import einsgrad

# -- reading the notation back -----------------------------------------------------------------

_TOKEN = re.compile(r"\s*(‖|\d+(?:\.\d+)?(?:/\d+)?|[A-Za-z_][A-Za-z_0-9]*|ᵀ|⁻¹|²|∘|⊘|[-+/()^])")
_FUNCTIONS = {
    "tanh": np.tanh, "exp": np.exp, "log": np.log, "sin": np.sin, "cos": np.cos, "sqrt": np.sqrt,
    "abs": np.abs, "sigmoid": lambda u: 1 / (1 + np.exp(-u)), "relu": lambda u: np.maximum(u, 0),
    "step": lambda u: (u > 0).astype(float), "sign": np.sign, "softplus": lambda u: np.logaddexp(0, u),
}


class _Ones:
    """The ones vector ``1`` of a product, its size taken from its neighbour."""

    def __init__(self, transposed=False):
        self.transposed = transposed


class _Identity:
    pass


def _tokens(text):
    out, n = [], 0
    while n < len(text):
        m = _TOKEN.match(text, n)
        assert m, f"cannot read {text[n:]!r}"
        out.append(m.group(1))
        n = m.end()
    return out


TRACE = "trace"
"""The shape wanted of a product inside ``tr(...)``: its first factor follows its last."""


class _Reader:
    """Parses a form into evaluators, each a function of the shape wanted of its value (rows,
    columns; None where the text around it does not say, :data:`TRACE` inside a trace), so
    that a ones vector at the end of a product is sized by what the product must be (``s 1 1ᵀ``
    is a matrix of the gradient's shape). Values are 2-d arrays: a vector is a column, a
    scalar 1 x 1."""

    def __init__(self, text, env, size, definitions=None):
        self.tokens, self.n, self.env, self.size = _tokens(text), 0, env, size
        self.norms = 0  # how many ‖...‖ are open: a ‖ closes one only inside one
        self.definitions = {} if definitions is None else definitions

    def peek(self):
        return self.tokens[self.n] if self.n < len(self.tokens) else None

    def take(self, expected=None):
        token = self.tokens[self.n]
        assert expected is None or token == expected, (token, expected, self.tokens)
        self.n += 1
        return token

    def sum(self):
        sign = -1.0 if self.peek() == "-" else 1.0
        if sign < 0:
            self.take()
        parts = [(sign, self.quotient())]
        while self.peek() in ("+", "-"):
            parts.append((1.0 if self.take() == "+" else -1.0, self.quotient()))

        def value(want):
            total = parts[0][0] * parts[0][1](want)
            for s, part in parts[1:]:
                total = total + s * part(want)
            return total
        return value

    def quotient(self):
        top, divisors = self.product(), []
        while self.peek() == "/":
            self.take()
            divisors.append(self.atom_postfix())

        def value(want):
            v = top(want)
            for d in divisors:
                v = v / _plain(d(None), self.size)
            return v
        return value

    def product(self):
        factors = [self.hadamard()]
        while self.peek() not in (None, "+", "-", ")", "/", ",") and not (self.peek() == "‖" and self.norms):
            factors.append(self.hadamard())
        if len(factors) == 1:
            return lambda want: _plain(factors[0](None if want == TRACE else want), self.size)
        return lambda want: self.chain(self.factors(factors, want == TRACE), want)

    def factors(self, factors, traced=False):
        """Each factor's value, wanted to have as many rows as the matrix before it has columns,
        and as many columns as the one after it has rows: a ones vector that leads or ends a
        sum in parentheses is sized by its neighbour, ``A (1 bᵀ + 1 cᵀ)``, ``(b 1ᵀ + c 1ᵀ) D``;
        in a trace the first factor follows the last, ``tr((s 1 bᵀ + 1 cᵀ) D)``."""
        values = [f(None) for f in factors]
        for n, f in enumerate(factors):
            before = values[n - 1] if (n or traced) and isinstance(values[n - 1], np.ndarray) else None
            after = values[(n + 1) % len(values)] if n + 1 < len(values) or traced else None
            after = after if isinstance(after, np.ndarray) else None
            if before is not None or after is not None:
                values[n] = f((None if before is None else before.shape[1], None if after is None else after.shape[0]))
        return values

    def chain(self, factors, want):
        """The product of ``factors``, scalars (1 x 1) in front; a ones vector takes its size
        from its neighbour in the product (cyclically in a trace), or at an end from the
        shape wanted; one no neighbour sizes is left out, for numpy's broadcasting to size
        (``1 cᵀ`` in a sum)."""
        identity = any(isinstance(f, _Identity) for f in factors)
        items = [f for f in factors if not isinstance(f, _Identity)]
        scalars = [f for f in items if not isinstance(f, _Ones) and f.shape == (1, 1)]
        chain = [f for f in items if isinstance(f, _Ones) or f.shape != (1, 1)]
        traced, shape = want == TRACE, want if want != TRACE else None
        sized = []
        for n, f in enumerate(chain):
            if isinstance(f, _Ones):
                last, first = n == len(chain) - 1, n == 0
                if f.transposed:  # 1ᵀ M sums M's rows
                    nxt = chain[0] if last and traced else None if last else chain[n + 1]
                    m = nxt.shape[0] if isinstance(nxt, np.ndarray) else shape[1] if last and shape else None
                    f = None if m is None else np.ones((1, m))
                else:  # M 1 sums M's columns; 1 vᵀ broadcasts vᵀ along the rows
                    before = chain[-1] if first and traced else None if first else chain[n - 1]
                    m = before.shape[1] if isinstance(before, np.ndarray) else shape[0] if first and shape else None
                    f = None if m is None else np.ones((m, 1))
            if f is not None:
                sized.append(f)
        value = np.ones((1, 1))
        for v in scalars:
            value = value * v
        if sized:
            product = sized[0]
            for v in sized[1:]:
                product = product @ v
            value = value * product
        if identity:
            value = value * np.eye(self.size)
        return value

    def hadamard(self):
        parts = [("∘", self.atom_postfix())]
        while self.peek() in ("∘", "⊘"):
            parts.append((self.take(), self.atom_postfix()))
        if len(parts) == 1:
            return parts[0][1]

        def value(want):
            want = None if want == TRACE else want
            v = _plain(parts[0][1](want), self.size)
            for op, part in parts[1:]:
                other = _plain(part(want), self.size)
                v = v * other if op == "∘" else v / other
            return v
        return value

    def atom_postfix(self):
        base, ops = self.atom(), []
        while self.peek() in ("ᵀ", "⁻¹", "^"):
            op = self.take()
            if op == "^":  # a power: 2, or in parentheses (-1), (0.5), (1/3); ^∘ entrywise
                if self.peek() == "∘":
                    self.take()
                wrapped = self.peek() == "("
                if wrapped:
                    self.take("(")
                sign = -1.0 if self.peek() == "-" else 1.0
                if sign < 0:
                    self.take("-")
                top, _, bottom = self.take().partition("/")
                if wrapped:
                    self.take(")")
                ops.append(sign * float(top) / float(bottom or 1))
            else:
                ops.append(op)
        if not ops:
            return base

        def value(want):
            flips = sum(op == "ᵀ" for op in ops) % 2
            v = base(want[::-1] if flips and isinstance(want, tuple) else None if want == TRACE else want)
            for op in ops:
                if isinstance(op, float):
                    v = _plain(v, self.size) ** op
                elif isinstance(v, _Ones):
                    v = _Ones(not v.transposed)
                elif op == "ᵀ":
                    v = _plain(v, self.size).T
                else:
                    v = np.linalg.inv(_plain(v, self.size))
            return v
        return value

    def atom(self):
        token = self.take()
        if token == "(":
            inner = self.sum()
            self.take(")")
            return inner
        if token == "‖":
            self.norms += 1
            inner = self.sum()
            self.take("‖")
            self.norms -= 1
            self.take("²")
            return lambda want: np.array([[np.sum(inner(None) ** 2)]])
        if token == "1" and self.peek() not in ("∘", "⊘"):
            return lambda want: _Ones()
        if token[0].isdigit():
            top, _, bottom = token.partition("/")
            return lambda want: np.array([[float(top) / float(bottom or 1)]])
        if token == "I":
            return lambda want: _Identity()
        if token in ("tr", "diag", "Diag") or token in _FUNCTIONS:
            self.take("(")
            inner = self.sum()
            self.take(")")
            if token == "tr":
                return lambda want: np.array([[np.trace(inner(TRACE))]])
            if token == "diag":  # the diagonal of a square matrix; of a vector it is Diag
                def diagonal(want):
                    v = inner(None)
                    assert v.shape[0] == v.shape[1], f"diag of a {v.shape} value"
                    return np.diag(v)[:, None]
                return diagonal
            if token == "Diag":  # a column vector as a diagonal matrix
                def scaling(want):
                    v = inner((want[0], 1) if isinstance(want, tuple) and want[0] is not None else None)
                    assert v.shape[1] == 1, f"Diag of a {v.shape} value"
                    return np.diag(v[:, 0])
                return scaling
            return lambda want: _FUNCTIONS[token](_plain(inner(None if want == TRACE else want), self.size))
        if token in self.definitions:  # a name defined after the form: read when first used
            reader = _Reader(self.definitions.pop(token), self.env, self.size, self.definitions)
            self.env[token] = np.asarray(_plain(reader.sum()(None), self.size), dtype=float)
        value = self.env[token]
        value = value if value.ndim == 2 else value.reshape(-1, 1) if value.ndim == 1 else value.reshape(1, 1)
        return lambda want: value


def _plain(value, size):
    """A value outside a product: a lone ones vector is the number 1, ``I`` the identity."""
    return 1.0 if isinstance(value, _Ones) else np.eye(size) if isinstance(value, _Identity) else value


def evaluate(form: str, arrays: dict, shape) -> np.ndarray:
    """The value of a printed ``lhs = body, with A = ..., H = ...`` for ``arrays``, as ``shape``."""
    body, _, where = form.partition(", with ")
    definitions = dict(d.partition(" = ")[::2] for d in re.split(r", (?=\w+ = )", where)) if where else {}
    size = shape[0] if shape else 1
    want = (1, 1) if not shape else (shape[0], 1) if len(shape) == 1 else tuple(shape)
    reader = _Reader(body.partition(" = ")[2], dict(arrays), size, definitions)
    read = reader.sum()
    assert reader.peek() is None, f"left over {reader.tokens[reader.n:]} in {form!r}"
    value = read(want)
    value = np.asarray(value, dtype=float)
    if value.size == np.prod(shape):
        return value.reshape(shape)
    return np.broadcast_to(value.reshape(()) if value.size == 1 else value, shape)


def test_the_reader_reads_the_notation():
    a = {"A": np.array([[1.0, 2], [3, 4]]), "x": np.array([1.0, -1]), "d": np.array([2.0, 3])}
    np.testing.assert_allclose(evaluate("g = (A + Aᵀ) x", a, (2,)), (a["A"] + a["A"].T) @ a["x"])
    np.testing.assert_allclose(evaluate("g = A Diag(d)", a, (2, 2)), a["A"] * a["d"])
    np.testing.assert_allclose(evaluate("g = (A ∘ A)ᵀ 1", a, (2,)), (a["A"] ** 2).sum(axis=0))
    np.testing.assert_allclose(evaluate("g = 1ᵀ x", a, ()), a["x"].sum())
    np.testing.assert_allclose(evaluate("g = tr(A) I - 2 A", a, (2, 2)), 5 * np.eye(2) - 2 * a["A"])
    np.testing.assert_allclose(evaluate("g = x / (1ᵀ exp(x)) + 1 dᵀ", a, (2, 2)),
                               a["x"][:, None] / np.exp(a["x"]).sum() + a["d"][None, :])
    # ones vectors sized by the product around them: the shape wanted, a trace's other end
    np.testing.assert_allclose(evaluate("g = 3 1 1ᵀ", a, (2, 3)), np.full((2, 3), 3.0))
    np.testing.assert_allclose(evaluate("g = 1 1ᵀ A + x 1ᵀ", a, (2, 2)),
                               a["A"].sum(axis=0)[None, :] + a["x"][:, None])
    np.testing.assert_allclose(evaluate("g = tr(1 1ᵀ Aᵀ) d", a, (2,)), a["A"].sum() * a["d"])
    np.testing.assert_allclose(evaluate("g = Diag(2 1) A", a, (2, 2)), 2 * a["A"])
    # a norm after another factor is a factor of the product (it was read as the product's end)
    np.testing.assert_allclose(evaluate("g = 4 x ‖A‖²", a, (2,)), 4 * a["x"] * (a["A"] ** 2).sum())
    np.testing.assert_allclose(evaluate("g = ‖A‖² x ‖x‖²", a, (2,)), (a["A"] ** 2).sum() * a["x"] * 2)


def test_the_reader_sizes_a_ones_vector_in_a_traced_sum_by_the_trace():
    """``tr((s 1 dᵀ + 1 dᵀ) Cᵀ)``: the ones vectors are as long as ``Cᵀ`` is wide, since the
    trace's first factor follows its last (read as row vectors before, the trace kept C's first
    row alone: a generated program's Hessian by s read 0.9% off)."""
    C = np.arange(6.0).reshape(3, 2) - 2
    a = {"C": C, "d": np.array([2.0, -3]), "s": np.array(1.5)}
    expected = np.trace((1.5 + 1) * np.outer(np.ones(3), a["d"]) @ C.T)
    np.testing.assert_allclose(evaluate("g = tr((s 1 dᵀ + 1 dᵀ) Cᵀ)", a, ()), expected)
    np.testing.assert_allclose(evaluate("g = tr(Cᵀ (1 dᵀ + s 1 dᵀ))", a, ()), expected)


# -- the classic table --------------------------------------------------------------------------


def sigmoid(u):
    return 1 / (1 + np.exp(-u))


def softmax_rows(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


LAYER = "H[b,j] = X[b,k] * W[j,k] + c[j]\nA[b,j] = {f}(H[b,j])\nL = 0.5 * (A[b,j] - T[b,j])^2"


def _layer(f, derivative):
    def textbook(a):
        H = a["X"] @ a["W"].T + a["c"]
        A = f(H)
        return ((A - a["T"]) * derivative(H, A)).T @ a["X"]
    return textbook


def _arrays(rng):
    return {"X": rng.standard_normal((6, 4)), "W": rng.standard_normal((3, 4)), "c": rng.standard_normal(3),
            "T": rng.standard_normal((6, 3)), "w": rng.standard_normal(4), "y": rng.random(6),
            "Y": softmax_rows(rng.standard_normal((6, 3))), "z": rng.standard_normal(5),
            "U": rng.standard_normal((6, 2)), "V": rng.standard_normal((3, 2)), "M": rng.standard_normal((6, 3)),
            "S": rng.standard_normal((4, 4)), "x": rng.standard_normal(4), "B": rng.standard_normal((4, 6)),
            "C": rng.standard_normal((6, 4)), "P": rng.standard_normal((3, 4)), "R": rng.standard_normal((4, 5)),
            "Q": rng.standard_normal((5, 3)), "d": rng.standard_normal(3), "q": rng.standard_normal(4),
            "s": np.array(rng.standard_normal())}


CLASSIC = [
    # (case, program, tensor, textbook gradient)
    ("tanh layer", LAYER.format(f="tanh"), "W", _layer(np.tanh, lambda H, A: 1 - A ** 2)),
    ("sigmoid layer", LAYER.format(f="sigmoid"), "W", _layer(sigmoid, lambda H, A: A * (1 - A))),
    ("relu layer", LAYER.format(f="relu"), "W", _layer(lambda u: np.maximum(u, 0), lambda H, A: (H > 0) * 1.0)),
    ("a column sum of a square", "S2[j] = X[i,j] * X[i,j]\nL = S2[j] * w[j]", "w",  # was A∘Aᵀ 1
     lambda a: (a["X"] ** 2).sum(axis=0)),
    ("tanh layer bias", LAYER.format(f="tanh"), "c",
     lambda a: ((np.tanh(a["X"] @ a["W"].T + a["c"]) - a["T"]) * (1 - np.tanh(a["X"] @ a["W"].T + a["c"]) ** 2)).sum(0)),
    ("logistic regression", "z[i] = X[i,k] * w[k]\nL = softplus(z[i]) - y[i] * z[i]", "w",
     lambda a: a["X"].T @ (sigmoid(a["X"] @ a["w"]) - a["y"])),
    ("tanh layer, nothing named", "L = 0.5 * (tanh(sum[k](X[b,k] * W[j,k]) + c[j]) - T[b,j])^2", "W",
     _layer(np.tanh, lambda H, A: 1 - A ** 2)),
    ("logistic regression, log loss",
     "z[i] = X[i,k] * w[k]\np[i] = sigmoid(z[i])\nL = -sum[i](y[i] * log(p[i]) + (1 - y[i]) * log(1 - p[i]))", "w",
     lambda a: a["X"].T @ (sigmoid(a["X"] @ a["w"]) - a["y"])),
    ("softmax cross-entropy", "Z[b,j] = X[b,k] * W[j,k]\nL = log(sum[j](exp(Z[b,j]))) - Y[b,j] * Z[b,j]", "W",
     lambda a: (softmax_rows(a["X"] @ a["W"].T) - a["Y"]).T @ a["X"]),
    ("log-sum-exp", "L = log(sum[j](exp(z[j])))", "z", lambda a: softmax_rows(a["z"])),
    ("least squares", "L = (sum[k](X[i,k] * w[k]) - y[i])^2", "w",
     lambda a: 2 * a["X"].T @ (a["X"] @ a["w"] - a["y"])),
    ("matrix factorization by U", "L = (M[i,j] - sum[a](U[i,a] * V[j,a]))^2", "U",
     lambda a: 2 * (a["U"] @ a["V"].T - a["M"]) @ a["V"]),
    ("matrix factorization by V", "L = (M[i,j] - sum[a](U[i,a] * V[j,a]))^2", "V",
     lambda a: 2 * (a["U"] @ a["V"].T - a["M"]).T @ a["U"]),
    ("quadratic form", "f = x[i] * S[i,j] * x[j]", "x", lambda a: (a["S"] + a["S"].T) @ a["x"]),
    ("tr(AXB)", "f = P[i,j] * R[j,k] * Q[k,i]", "R", lambda a: a["P"].T @ a["Q"].T),
]


@pytest.mark.parametrize("case, text, name, textbook", CLASSIC, ids=[c[0] for c in CLASSIC])
def test_classic_matrix_forms_are_the_textbook_gradients(case, text, name, textbook):
    prog = einsgrad.program(text)
    arrays = {k: v for k, v in _arrays(np.random.default_rng(7)).items() if k in prog.inputs}
    form = prog.explain(name).gradients[0].matrix_form
    assert form is not None, case
    expected = textbook(arrays)
    np.testing.assert_allclose(evaluate(form, arrays, expected.shape), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(prog.grad(name)(**arrays), expected, rtol=1e-9, atol=1e-12)


HESSIANS = [
    ("least squares", "L = (sum[k](X[i,k] * w[k]) - y[i])^2", "w", lambda a: 2 * a["X"].T @ a["X"]),
    ("quadratic form", "f = x[i] * S[i,j] * x[j]", "x", lambda a: a["S"] + a["S"].T),
    ("logistic regression", "z[i] = X[i,k] * w[k]\nL = softplus(z[i]) - y[i] * z[i]", "w",
     lambda a: a["X"].T @ np.diag(sigmoid(a["X"] @ a["w"]) * (1 - sigmoid(a["X"] @ a["w"]))) @ a["X"]),
    ("log-sum-exp", "L = log(sum[j](exp(z[j])))", "z",
     lambda a: np.diag(softmax_rows(a["z"])) - np.outer(softmax_rows(a["z"]), softmax_rows(a["z"]))),
    # diagonal Hessians of elementwise functions and powers: a delta "i->ii" is Diag(v), never
    # diag(v), which is the diagonal of a matrix (read so, the first was a full matrix)
    ("a power of exp", "S0[i] = exp(x[i])^-0.5\nL = S0[i] * q[i]", "x",
     lambda a: np.diag(0.25 * a["q"] * np.exp(-0.5 * a["x"]))),
    ("a cube of tanh", "L = q[i] * tanh(x[i])^3", "x",
     lambda a: np.diag(6 * a["q"] * np.tanh(a["x"]) * (1 - np.tanh(a["x"]) ** 2) * (1 - 2 * np.tanh(a["x"]) ** 2))),
    ("a quotient", "L = q[i] / (1 + x[i] * x[i])", "x",
     lambda a: np.diag(-2 * a["q"] / (1 + a["x"] ** 2) ** 2 + 8 * a["q"] * a["x"] ** 2 / (1 + a["x"] ** 2) ** 3)),
    ("a diagonal plus the identity", "L = q[i] * sin(x[i]) + x[i] * x[i]", "x",
     lambda a: np.diag(-a["q"] * np.sin(a["x"])) + 2 * np.eye(4)),
    ("a scalar on the diagonal", "S0[j] = y[j] * y[j]\nL = s * sum[j](S0[j] * (s * s))", "y",  # was Diag(s s s 1)
     lambda a: 2 * a["s"] ** 3 * np.eye(6)),
    ("a sum of scalars on the diagonal", "S0[j] = y[j] * y[j]\nL = sum[j](S0[j]) * s + sum[j](S0[j] * exp(s))",
     "y", lambda a: 2 * (a["s"] + np.exp(a["s"])) * np.eye(6)),  # was Diag(s 1 + exp(s) 1)
    ("an identity in a chain", "S0[i] = abs(exp(x[i] * 0.5)^-0.5)\nL = S0[i] * q[i]", "x",  # was 0.5 Iᵀ (...)
     lambda a: np.diag(a["q"] * np.exp(-0.25 * a["x"]) / 16)),
    ("a diagonal between matrices", "z[i] = X[i,k] * w[k]\nL = y[i] * exp(z[i])", "w",
     lambda a: a["X"].T @ np.diag(a["y"] * np.exp(a["X"] @ a["w"])) @ a["X"]),
    # ∂²L/∂c_j∂c_i = δ_ij Σ_b (1 - A²)((1 - A²) - 2 (A - T) A), the column sums of one product
    ("a tanh layer by its bias", LAYER.format(f="tanh"), "c",
     lambda a: np.diag(((1 - np.tanh(a["X"] @ a["W"].T + a["c"]) ** 2) * (
         1 - np.tanh(a["X"] @ a["W"].T + a["c"]) ** 2
         - 2 * (np.tanh(a["X"] @ a["W"].T + a["c"]) - a["T"]) * np.tanh(a["X"] @ a["W"].T + a["c"]))).sum(0))),
]


@pytest.mark.parametrize("case, text, name, textbook", HESSIANS, ids=[c[0] for c in HESSIANS])
def test_hessian_matrix_forms_are_the_textbook_hessians(case, text, name, textbook):
    prog = einsgrad.program(text)
    arrays = {k: v for k, v in _arrays(np.random.default_rng(8)).items() if k in prog.inputs}
    explanation = prog.explain(name, style="hessian")
    (h,) = explanation.hessians
    expected = textbook(arrays)
    assert h.matrix_form is not None, f"{case}: no matrix form printed"
    np.testing.assert_allclose(evaluate(h.matrix_form, arrays, expected.shape), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(prog.hessian(name)(**arrays), expected, rtol=1e-9, atol=1e-12)


HESSIAN_FORMS = {
    # each worked out by hand from the program, simplified as a textbook writes it (issue 13):
    # one factored form per Hessian, the forward's names (and log-sum-exp's softmax) read back
    "least squares": "∂²L/∂w² = 2 Xᵀ X",
    "quadratic form": "∂²f/∂x² = S + Sᵀ",
    "logistic regression": "∂²L/∂w² = Xᵀ Diag(sigmoid(z) ∘ (1 - sigmoid(z))) X, with z = X w",
    "log-sum-exp": "∂²L/∂z² = Diag(g) - g gᵀ, with g = exp(z) / (1ᵀ exp(z))",  # g = softmax(z)
    # S0'' = (exp(x)^-0.5)'' = 0.25 S0: the named S0, its power joined (was t^-1.5 t)
    "a power of exp": "∂²L/∂x² = 0.25 Diag(S0 ∘ q), with S0 = exp(x)^∘(-0.5)",
    # (t³)'' = 3 (2 t t'² + t² t'') with t' = 1 - t², t'' = -2 t t': 6 t (1 - t²) (1 - 2 t²), one Diag
    "a cube of tanh": "∂²L/∂x² = 6 Diag(q ∘ tanh(x) ∘ (1 - tanh(x) ∘ tanh(x)) ∘ (1 - 2 tanh(x) ∘ tanh(x)))",
    # (1 / (1 + x²))'' = (8 x² - 2 (1 + x²)) / (1 + x²)³ = 2 (3 x² - 1) / (1 + x²)³, one Diag
    "a quotient": "∂²L/∂x² = 2 Diag(q ∘ (3 x∘x - 1) ⊘ (1 + x∘x)^∘3)",
    "a diagonal plus the identity": "∂²L/∂x² = 2 I - Diag(q ∘ sin(x))",
    "a scalar on the diagonal": "∂²L/∂y² = 2 s^3 I",  # L = s³ Σ y², the powers of s joined
    "a sum of scalars on the diagonal": "∂²L/∂y² = 2 (exp(s) + s) I",
    # S0 = |t2|, t2 = exp(x/2)^-0.5 = exp(-x/4): S0'' = S0 / 16 (sign(t2) t2 = |t2| = S0, the named S0 read)
    "an identity in a chain": "∂²L/∂x² = 0.0625 Diag(q ∘ S0), with S0 = abs(exp(0.5 x)^∘(-0.5))",
    "a diagonal between matrices": "∂²L/∂w² = Xᵀ Diag(y ∘ exp(z)) X, with z = X w",  # one Diag, was Diag(y) Diag(exp(z))
    # the two products over b one (it had no matrix form)
    "a tanh layer by its bias": "∂²L/∂c² = Diag(((1 - A∘A) ∘ (1 - A∘A - 2 (A - T) ∘ A))ᵀ 1), with A = tanh(H), "
                                "H = X Wᵀ + 1 cᵀ",
}


@pytest.mark.parametrize("case, text, name", [c[:3] for c in HESSIANS], ids=[c[0] for c in HESSIANS])
def test_hessian_matrix_forms_are_factored_as_a_textbook_writes_them(case, text, name):
    """Each Hessian of the table prints one factored form, as written by hand above (the
    test before this one evaluates it against the textbook formula)."""
    assert einsgrad.program(text).explain(name, style="hessian").hessians[0].matrix_form == HESSIAN_FORMS[case]


def test_every_hessian_of_the_table_has_its_text():
    assert set(HESSIAN_FORMS) == {c[0] for c in HESSIANS}


# -- exact text -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text, name, form", [
    ("f = x[i] * A[i,j] * x[j]", "x", "∂f/∂x = (A + Aᵀ) x"),
    ("L = (sum[k](X[i,k] * w[k]) - y[i])^2", "w", "∂L/∂w = 2 Xᵀ (X w - y)"),
    ("f = A[i,j] * X[j,k] * B[k,i]", "X", "∂f/∂X = Aᵀ Bᵀ"),
    ("Y[i,j] = M[i,j] * d[j]", "M", "∂L/∂M = G Diag(d)"),
    ("f = X[i,i] * B[j,j]", "X", "∂f/∂X = tr(B) I"),
    (LAYER.format(f="tanh"), "W", "∂L/∂W = ((A - T) ∘ (1 - A∘A))ᵀ X, with A = tanh(H), H = X Wᵀ + 1 cᵀ"),
    ("Y[a,e] = A[a,b] * B[b,c] * C[c,d] * D[d,e]", "B", "∂L/∂B = Aᵀ G Dᵀ Cᵀ"),
    ("Y[a,f] = A[a,b] * B[b,c] * C[c,d] * D[d,e] * E[e,f]", "C", "∂L/∂C = Bᵀ Aᵀ G Eᵀ Dᵀ"),
    ("L = (M[i,j] - sum[a](U[i,a] * V[j,a]))^2", "U", "∂L/∂U = 2 (U Vᵀ - M) V"),
    ("L = log(sum[j](exp(z[b,j]))) - y[b,j] * z[b,j]", "z", "∂L/∂z = Diag(exp(z) 1)⁻¹ exp(z) - y"),
    ("z[i] = X[i,k] * w[k]\nL = softplus(z[i]) - y[i] * z[i]", "w", "∂L/∂w = Xᵀ (sigmoid(z) - y), with z = X w"),
    ("L = 0.5 * (tanh(sum[k](X[b,k] * W[j,k]) + c[j]) - T[b,j])^2", "W",  # read twice: named once
     "∂L/∂W = ((t2 - T) ∘ (1 - t2∘t2))ᵀ X, with t2 = tanh(X Wᵀ + 1 cᵀ)"),
    ("Y[i,j] = I[i,k] * W[k,j]", "W", "∂L/∂W = Iᵀ G"),  # a tensor named I is no identity: it stays
], ids=["xAx", "least squares", "tr(AXB)", "scaling", "tr(X) tr(B)", "tanh layer", "chain of four",
        "chain of five", "factorization", "softmax", "logistic", "unnamed layer", "a tensor named I"])
def test_textbook_forms_exactly(text, name, form):
    assert einsgrad.program(text).explain(name).gradients[0].matrix_form == form


def test_chains_evaluate_as_the_gradient():
    """The chains of four and five (found label by label) read back as the vjp."""
    rng = np.random.default_rng(2)
    for text, name in [("Y[a,e] = A[a,b] * B[b,c] * C[c,d] * D[d,e]", "B"),
                       ("Y[a,f] = A[a,b] * B[b,c] * C[c,d] * D[d,e] * E[e,f]", "C")]:
        prog = einsgrad.program(text)
        order = dict.fromkeys(i for f in prog.terms[0].factors for i in f.indices)
        sizes = dict(zip(order, (2, 3, 4, 5, 6, 7)))
        arrays = {f.name: rng.standard_normal([sizes[i] for i in f.indices]) for f in prog.terms[0].factors}
        arrays["dY"] = rng.standard_normal([sizes[i] for i in prog.output_indices])
        expected = prog.grad(name)(**arrays)
        form = prog.explain(name).gradients[0].matrix_form
        np.testing.assert_allclose(evaluate(form, {**arrays, "G": arrays["dY"]}, expected.shape), expected,
                                   rtol=1e-10)


def test_a_sum_of_a_constant_has_no_matrix_form():
    """``Σ_i c`` is ``n c``: as ``c 1ᵀ 1`` nothing in the formula says what n is, so the
    gradient has no matrix form (it printed ``∂L/∂s = 0.25 q 1ᵀ 1``)."""
    prog = einsgrad.program("S0[i] = 0.5 * s + exp(x[i])\nS1 = sum[i](S0[i] * 0.5)\nL = S1 * q")
    assert prog.explain("s").gradients[0].matrix_form is None
    assert prog.explain("x").gradients[0].matrix_form == "∂L/∂x = 0.5 q exp(x)"
    np.testing.assert_allclose(prog.grad("s")(x=np.zeros(3), s=1.0, q=2.0), 0.25 * 2.0 * 3)


def test_a_count_inside_a_sum_has_no_matrix_form():
    """A cotangent that is a sum of broadcasts, ``(a 1 + b 1)``, is ``(a + b) 1``: summed again
    (``1ᵀ (a 1 + b 1)``) it counts the ones, which the formula does not size (it printed
    ``∂L/∂x = 1 1ᵀ (q exp(s) 1 + q s 1)``, read as ``q exp(s) + q s`` per entry, not twice that)."""
    prog = einsgrad.program("S0[k] = x[i] + B[j,k]\nS1 = sum[k](S0[k] * s) + sum[k](S0[k] * exp(s))\nL = S1 * q")
    assert prog.explain("x").gradients[0].matrix_form is None
    form = prog.explain("B").gradients[0].matrix_form
    assert form == "∂L/∂B = (q exp(s) + q s) 1 1ᵀ"
    a = {"x": np.arange(3.0), "B": np.ones((4, 2)), "s": np.array(0.3), "q": np.array(2.0)}
    np.testing.assert_allclose(evaluate(form, a, (4, 2)), prog.grad("B")(**a))
    np.testing.assert_allclose(prog.grad("x")(**a), 2 * 2 * (np.exp(0.3) + 0.3) * np.ones(3))


def test_a_scaled_sum_is_parenthesized():
    """A sum scaled as a term of another sum keeps its parentheses: the chain rule through
    ``S0 = 2 x`` scales the whole cotangent (it printed ``2 q ∘ (1 - tanh(S0) ∘ tanh(S0)) -
    0.5 q ∘ sin(S0)``, the 2 on the first term alone)."""
    prog = einsgrad.program("S0[i] = 2 * x[i]\nS1[i] = tanh(S0[i]) + 0.5 * cos(S0[i])\nL = q[i] * S1[i]")
    form = prog.explain("x").gradients[0].matrix_form
    assert form == "∂L/∂x = 2 (q ∘ (1 - tanh(S0) ∘ tanh(S0)) - 0.5 q ∘ sin(S0)), with S0 = 2 x"
    a = {"x": np.array([0.3, -0.2, 0.5]), "q": np.array([1.0, 2.0, -1.0])}
    textbook = 2 * a["q"] * (1 - np.tanh(2 * a["x"]) ** 2) - a["q"] * np.sin(2 * a["x"])
    np.testing.assert_allclose(evaluate(form, a, (3,)), textbook)
    np.testing.assert_allclose(prog.grad("x")(**a), textbook)


def test_terms_written_alike_are_merged():
    """``1ᵀ A 1 + 1ᵀ A 1`` is ``2 1ᵀ A 1`` (factored, it printed ``1ᵀ A (1 + 1)``, a sum of
    ones vectors)."""
    prog = einsgrad.program("S0 = A[i,j] + A[i,j]\nL = S0 * q")
    assert prog.explain("q").gradients[0].matrix_form == "∂L/∂q = S0, with S0 = 2 1ᵀ A 1"


def test_no_matrix_form_says_so_with_the_index_form():
    prog = einsgrad.program(LAYER.format(f="tanh"))
    e = prog.explain("W", style="hessian")
    assert e.hessians[0].matrix_form is None
    line = str(e).splitlines()[-1]
    assert line == ("   No matrix form (an index has no place in a product of matrices); in index form: "
                    f'"{str(prog.hessian("W")).splitlines()[-1]}"')


# -- style="matrix" -------------------------------------------------------------------------------


def test_differentials_show_why_the_cotangent_is_transposed():
    text = str(einsgrad.program("Y[i,j] = X[i,k] * W[j,k]").explain("W", style="matrix"))
    assert ('   "Y[i,j] = X[i,k] * W[j,k]": dY = X dWᵀ, so G : (X dWᵀ) = (Xᵀ G) : dWᵀ = (Gᵀ X) : dW'
            in text.splitlines())
    assert "       by M : (N P) = (Nᵀ M) : P, then M : Nᵀ = Mᵀ : N" in text.splitlines()
    assert text.splitlines()[-1] == "3. Summing the shares: ∂L/∂W = Gᵀ X"


def test_differentials_take_the_trace_cyclically():
    lines = str(einsgrad.program("f = A[i,j] * X[j,k] * B[k,i]").explain("X", style="matrix")).splitlines()
    assert '   "f = A[i,j] * X[j,k] * B[k,i]": df = tr(A dX B), so tr(A dX B) = tr(B A dX) = (Aᵀ Bᵀ) : dX' in lines
    assert "       by tr(N P) = tr(P N), then tr(Mᵀ N) = M : N" in lines


def test_differentials_of_the_tanh_layer():
    e = einsgrad.program(LAYER.format(f="tanh")).explain("W", style="matrix")
    lines = str(e).splitlines()
    assert e.style == "matrix" and e.gradients[0].matrix_form.startswith("∂L/∂W = ((A - T) ∘ (1 - A∘A))ᵀ X")
    assert lines[3] == "1. The steps in matrix notation: H = X Wᵀ + 1 cᵀ; A = tanh(H); t = A - T; L = 0.5 tr(t tᵀ)"
    assert ('   "A[b,j] = tanh(H[b,j])": dA = (1 - A∘A) ∘ dH, so G_A : ((1 - A∘A) ∘ dH) = (G_A ∘ (1 - A∘A)) : dH'
            in lines)
    assert "   G_H = t ∘ (1 - A∘A)" in lines


def _shares(text: str) -> list[str]:
    """The ``M`` of each share's last ``M : dX`` in a style="matrix" text."""
    found = []
    for line in text.splitlines():
        if line.startswith(("   \"", "      ")) and " : d" in line and not line.lstrip().startswith("by"):
            last = line.rsplit(" = ", 1)[1]
            found.append(last.rsplit(" : ", 1)[0])
    return found


@pytest.mark.parametrize("text, name, shape", [
    ("Y[i,j] = X[i,k] * W[j,k]", "W", (3, 4)), ("f = x[i] * S[i,j] * x[j]", "x", (4,)),
    ("f = P[i,j] * R[j,k] * Q[k,i]", "R", (4, 5)), ("Y[i,j] = X[i,k] * S[j,k] + X[i,j] * x[j]", "X", (6, 4)),
    ("Y[i,j] = M[i,j] * d[j]", "d", (3,)),
])
def test_differential_shares_sum_to_the_gradient(text, name, shape):
    """For one contraction the moved shares are the gradient, term by term."""
    prog = einsgrad.program(text)
    rng = np.random.default_rng(5)
    arrays = {k: v for k, v in _arrays(rng).items() if k in prog.inputs}
    if prog.cotangent:
        arrays[prog.cotangent] = rng.standard_normal(np.shape(prog(**arrays)))
    shares = _shares(str(prog.explain(name, style="matrix")))
    assert shares
    env = {**arrays, "G": arrays.get(prog.cotangent)}
    total = sum(evaluate("s = " + m, env, shape) for m in shares)
    np.testing.assert_allclose(total, prog.grad(name)(**arrays), rtol=1e-10)


@pytest.mark.parametrize("style", ["index", "hessian", "matrix"])
def test_every_style_renders_ascii_latex(style):
    for case, text, name, _ in CLASSIC:
        prog = einsgrad.program(text)
        if style == "hessian" and prog.output_indices:
            continue
        latex = prog.explain(name, style=style).latex()
        assert latex.isascii() and latex.count("{") == latex.count("}"), case


# -- generated programs ---------------------------------------------------------------------------


def _generated():
    pytest.importorskip("torch")  # the generator's values are torch's
    from test_program_statements import generated_programs
    return generated_programs()


@pytest.fixture(scope="module")
def generated():
    return _generated()


def test_every_printed_form_of_generated_programs_is_the_gradient(generated):
    """Programs with functions, powers, quotients, scoped sums and several statements: each
    matrix form printed (gradients, and the Hessian by one tensor) reads back as the value."""
    from hypothesis import HealthCheck, given, settings, strategies as st

    @settings(max_examples=GENERATED_FORMS, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(generated, st.integers(0, 2 ** 16))
    def check(case, seed):
        text, shapes, _ = case
        p = einsgrad.program(text)
        rng = np.random.default_rng(seed)
        a = {n: np.asarray(rng.standard_normal(shapes[n]) * 0.7) for n in p.inputs}
        with np.errstate(all="ignore"):
            for n in p.inputs:
                form = p.explain(n).gradients[0].matrix_form
                expected = np.asarray(p.grad(n)(**a), dtype=float)
                if form is not None and np.all(np.isfinite(expected)) and np.abs(expected).max(initial=0) < 1e6:
                    noise = _rounding_noise(p.grad(n), a, expected, rng)
                    np.testing.assert_allclose(evaluate(form, a, expected.shape), expected, rtol=1e-8,
                                               atol=1e-8 + 100 * noise, err_msg=f"{text}\n{n}: {form}")
            n = p.inputs[seed % len(p.inputs)]
            (h,) = p.explain(n, style="hessian").hessians
            expected = np.asarray(p.hessian(n)(**a), dtype=float)
            if h.matrix_form is not None and np.all(np.isfinite(expected)) and np.abs(expected).max(initial=0) < 1e6:
                noise = _rounding_noise(p.hessian(n), a, expected, rng)
                np.testing.assert_allclose(evaluate(h.matrix_form, a, expected.shape), expected, rtol=1e-8,
                                           atol=1e-8 + 100 * noise, err_msg=f"{text}\n{n}: {h.matrix_form}")
    check()


def test_a_hessian_with_a_traced_sum_of_broadcasts_reads_as_its_value():
    """The hunt's three-statement program, reduced: ∂²L/∂s² holds ``tr((s 1 rᵀ + s 1 rᵀ) Aᵀ)``,
    which the reader misread; the value is the one worked by hand, (2 + 6 s) (Aᵀ 1)ᵀ r with
    r = ((qᵀ ∘ step(s Diag(S0ᵀ 1) B)) ∘ B) 1 (relu'' = 0), and the program's own Hessian."""
    p = einsgrad.program("S0[i,j] = s * (A[i,j] + s * A[i,j])\n"
                         "S2[k,j] = relu(sum[i](S0[i,j] * B[j,k]) * s)\nL = S2[k,j] * q[k,j]")
    rng = np.random.default_rng(2)
    a = {n: rng.standard_normal(shape) * 0.7 for n, shape in
         {"A": (3, 4), "s": (), "B": (4, 2), "q": (2, 4)}.items()}
    s, A, B, q = a["s"], a["A"], a["B"], a["q"]
    kept = (s * np.einsum("ij,jk->jk", (s + s * s) * A, B) > 0).astype(float)
    r = np.einsum("kj,jk,jk->j", q, kept, B)
    expected = (2 + 6 * s) * np.einsum("ij,j->", A, r)
    (h,) = p.explain("s", style="hessian").hessians
    assert "tr((" in h.matrix_form
    np.testing.assert_allclose(p.hessian("s")(**a), expected, rtol=1e-12)
    np.testing.assert_allclose(evaluate(h.matrix_form, a, ()), expected, rtol=1e-12)


def _rounding_noise(program, arrays: dict, expected: np.ndarray, rng) -> float:
    """How far ``program``'s value moves when its inputs move by a relative 1e-12: a
    well-conditioned value by about 1e-12 of itself, one like ``cos(S1^5)`` with a large ``S1``
    by far more, and the printed form, evaluated in another order, may differ from it as much."""
    moved = {k: v * (1 + 1e-12 * rng.standard_normal(np.shape(v))) for k, v in arrays.items()}
    return float(np.abs(np.asarray(program(**moved), dtype=float) - expected).max(initial=0))


GENERATED_FORMS = int(os.environ.get("EINSGRAD_GENERATED_FORMS", "40"))
"""Examples of the generated-program test: 40 in CI; set the variable (300) for a long hunt."""
