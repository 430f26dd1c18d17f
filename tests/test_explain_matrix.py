"""``explain(spec, style="matrix")`` and the Kronecker forms of Hessians, read back and checked.

Every formula the explanation prints is read by a small reader written here, which knows only
the notation (juxtaposition, ``ᵀ``, ``∘``, ``:``, ``⊗``, ``tr``, ``diag``, ``Diag``, ``vec``,
``1``, ``I``, ``K``) and evaluates it with numpy; nothing of einsgrad's renderer is used. The
values are held to oracles that do not use einsgrad either: ``np.einsum`` of the forward with
one operand replaced by a direction (a share of ``dY``, exact since the forward is linear in
each operand), the gradient entry by entry from basis directions, and for Hessians the
finite differences of a numpy gradient written by hand.
"""

from __future__ import annotations

import itertools
import os
import re
import string
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import einsgrad

# -- reading the notation back -------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(\d+(?:\.\d+)?(?:/\d+)?|[A-Za-z][A-Za-z0-9_]*|ᵀ|∘|⊗|:|[-+()])")
_KEYWORDS = {"tr", "diag", "Diag", "vec"}


SQUARE = "square"  # the expected shape inside a trace


class NeedShape(Exception):
    """A ones vector or an identity that only the expected shape can size."""


@dataclass(frozen=True)
class Deferred:
    """``1`` (a column, or a row when transposed) or ``I``: sized by a neighbour or the shape
    the expression must have."""

    kind: str
    transposed: bool = False


def _tokens(text: str) -> list[str]:
    out, n = [], 0
    while n < len(text):
        if text[n:].strip() == "":
            break
        m = _TOKEN.match(text, n)
        assert m, f"cannot read {text[n:]!r} in {text!r}"
        out.append(m.group(1))
        n = m.end()
    return out


class _Parser:
    """Text -> a tree of tuples. Precedence, loosest first: ``+ -``, ``:``, ``⊗``,
    juxtaposition, ``∘``, ``ᵀ``."""

    def __init__(self, text: str):
        self.tokens, self.n, self.text = _tokens(text), 0, text

    def peek(self):
        return self.tokens[self.n] if self.n < len(self.tokens) else None

    def take(self, expected=None):
        token = self.tokens[self.n]
        assert expected is None or token == expected, (token, expected, self.text)
        self.n += 1
        return token

    def whole(self):
        tree = self.sum()
        assert self.peek() is None, f"left over {self.tokens[self.n:]} in {self.text!r}"
        return tree

    def sum(self):
        terms, sign = [], 1
        if self.peek() == "-":
            self.take()
            sign = -1
        terms.append((sign, self.frob()))
        while self.peek() in ("+", "-"):
            terms.append((1 if self.take() == "+" else -1, self.frob()))
        return ("sum", terms)

    def frob(self):
        left = self.kron()
        if self.peek() == ":":
            self.take()
            return ("frob", left, self.kron())
        return left

    def kron(self):
        parts = [self.product()]
        while self.peek() == "⊗":
            self.take()
            parts.append(self.product())
        return parts[0] if len(parts) == 1 else ("kron", parts)

    def product(self):
        factors = [self.hadamard()]
        while self.peek() not in (None, "+", "-", ")", ":", "⊗"):
            factors.append(self.hadamard())
        return factors[0] if len(factors) == 1 else ("prod", factors)

    def hadamard(self):
        parts = [self.postfix()]
        while self.peek() == "∘":
            self.take()
            parts.append(self.postfix())
        return parts[0] if len(parts) == 1 else ("had", parts)

    def postfix(self):
        node = self.atom()
        while self.peek() == "ᵀ":
            self.take()
            node = ("T", node)
        return node

    def atom(self):
        token = self.take()
        if token == "(":
            inner = self.sum()
            self.take(")")
            return inner
        if token in _KEYWORDS:
            self.take("(")
            inner = self.sum()
            self.take(")")
            return ("call", token, inner)
        if token == "1":
            return ("ones",)
        if token[0].isdigit():
            top, _, bottom = token.partition("/")
            return ("num", float(top) / float(bottom or 1))
        if token == "I":
            return ("eye",)
        if token == "K":
            return ("commutation",)
        return ("name", token)


def _as_matrix(value) -> np.ndarray:
    value = np.asarray(value, dtype=float)
    return value.reshape(1, 1) if value.ndim == 0 else value.reshape(-1, 1) if value.ndim == 1 else value


class Reader:
    """Evaluates printed formulas: vectors are columns, scalars 1 x 1; ``env`` maps names
    (``X``, ``dX``, ``G``) to arrays; ``wrt_shape`` sizes the commutation matrix ``K``
    (``K vec(V) = vec(Vᵀ)`` for ``V`` of that shape)."""

    def __init__(self, env: dict, wrt_shape=None):
        self.env = {k: _as_matrix(v) for k, v in env.items()}
        self.wrt_shape = wrt_shape

    def value(self, text: str, expect=None) -> np.ndarray:
        result = self.eval(_Parser(text).whole(), expect)
        assert not isinstance(result, Deferred), f"{text!r} is unsized"
        return result

    def eval(self, node, expect=None):
        kind = node[0]
        if kind == "num":
            return np.array([[node[1]]])
        if kind == "ones":
            return Deferred("ones")
        if kind == "eye":
            return Deferred("eye")
        if kind == "commutation":
            m, n = self.wrt_shape
            k = np.zeros((m * n, m * n))
            for i in range(m):
                for j in range(n):
                    k[i * n + j, j * m + i] = 1  # vec(Vᵀ)[i*n+j] = V[i,j] = vec(V)[j*m+i]
            return k
        if kind == "name":
            assert node[1] in self.env, f"unknown name {node[1]!r}"
            return self.env[node[1]]
        if kind == "T":
            inner = self.eval(node[1], None if expect is None else expect[::-1])
            if isinstance(inner, Deferred):
                return Deferred(inner.kind, not inner.transposed) if inner.kind == "ones" else inner
            return inner.T
        if kind == "sum":
            total = None
            for sign, term in node[1]:
                v = self._sized(self.eval(term, expect), expect)
                total = sign * v if total is None else total + sign * v
            return total
        if kind == "frob":
            left, right = node[1], node[2]
            try:
                a = self._sized(self.eval(left), None)
                b = self._sized(self.eval(right, a.shape), a.shape)
            except NeedShape:
                b = self._sized(self.eval(right), None)
                a = self._sized(self.eval(left, b.shape), b.shape)
            assert a.shape == b.shape or a.shape == (1, 1) or b.shape == (1, 1), (a.shape, b.shape)
            return np.array([[np.sum(a * b)]])
        if kind == "had":
            values = [self.eval(p, expect) for p in node[1]]
            concrete = [v for v in values if not isinstance(v, Deferred)]
            shape = concrete[0].shape if concrete else expect
            out = np.ones(shape)
            for v in values:
                out = out * (np.ones(shape) if isinstance(v, Deferred) else v)
            return out
        if kind == "call":
            try:
                inner = self._sized(self.eval(node[2]), None)
            except NeedShape:  # tr(1 1ᵀ X): a trace's argument is square; vec(I): of X's shape
                shape = tuple(self.wrt_shape) if node[1] == "vec" else SQUARE
                inner = self._sized(self.eval(node[2], shape), shape)
            if node[1] == "tr":
                assert inner.shape[0] == inner.shape[1]
                return np.array([[np.trace(inner)]])
            if node[1] == "diag":
                assert inner.shape[0] == inner.shape[1], f"diag of {inner.shape}"
                return np.diag(inner)[:, None]
            if node[1] == "Diag":
                assert inner.shape[1] == 1, f"Diag of {inner.shape}"
                return np.diag(inner[:, 0])
            return inner.reshape(-1, 1, order="F")  # vec: the columns stacked
        if kind == "prod":
            return self._product([self._factor(f, expect) for f in node[1]], expect)
        if kind == "kron":  # a side that cannot size itself is square: n x n on the left, m x m on the right
            m, n = self.wrt_shape
            return self._kron([self._factor(p, (n, n) if k == 0 else (m, m)) for k, p in enumerate(node[1])], expect)
        raise AssertionError(node)

    def _factor(self, node, expect):
        """A factor of a product; one that cannot size itself (``c (I ⊗ Q)``) is given the
        product's shape, which is its own where the other factors are scalars."""
        try:
            return self.eval(node)
        except NeedShape:
            return self.eval(node, expect)

    def _sized(self, v, expect):
        if not isinstance(v, Deferred):
            return v
        if expect is None:
            raise NeedShape
        return self._product([v], expect)

    def _product(self, values, expect):
        scale = 1.0
        rest = []
        for v in values:
            if not isinstance(v, Deferred) and v.shape == (1, 1):
                scale = scale * v[0, 0]
            else:
                rest.append(v)
        if expect is SQUARE:
            ends = [v for v in (rest[-1], rest[0]) if not isinstance(v, Deferred)]
            expect = None if not ends else (ends[0].shape[1],) * 2 if ends[0] is rest[-1] else (ends[0].shape[0],) * 2
        for _ in range(len(rest) + 1):
            for p, v in enumerate(rest):
                if not isinstance(v, Deferred):
                    continue
                left = rest[p - 1] if p > 0 and not isinstance(rest[p - 1], Deferred) else None
                right = rest[p + 1] if p + 1 < len(rest) and not isinstance(rest[p + 1], Deferred) else None
                if v.kind == "eye":
                    size = (left.shape[1] if left is not None else right.shape[0] if right is not None
                            else expect[0] if expect is not None and len(rest) == 1 else None)
                    if size is not None:
                        rest[p] = np.eye(size)
                elif not v.transposed:  # a column: rows from the left, or the result's rows
                    size = (left.shape[1] if left is not None else
                            expect[0] if p == 0 and expect is not None else None)
                    if size is not None:
                        rest[p] = np.ones((size, 1))
                else:  # a row: columns from the right, or the result's columns
                    size = (right.shape[0] if right is not None else
                            expect[1] if p == len(rest) - 1 and expect is not None else None)
                    if size is not None:
                        rest[p] = np.ones((1, size))
        if any(isinstance(v, Deferred) for v in rest):
            raise NeedShape
        if not rest:
            return np.array([[scale]])
        out = rest[0]
        for v in rest[1:]:
            assert out.shape[1] == v.shape[0], f"cannot multiply {out.shape} by {v.shape}"
            out = out @ v
        return scale * out

    def _kron(self, values, expect):
        m, n = self.wrt_shape
        values = [self._sized(v, (n, n) if k == 0 else (m, m)) for k, v in enumerate(values)]
        out = values[0]
        for v in values[1:]:
            out = np.kron(out, v)
        return out


def test_the_reader_reads_the_notation():
    rng = np.random.default_rng(0)
    X, W, G = rng.standard_normal((2, 3)), rng.standard_normal((4, 3)), rng.standard_normal((2, 4))
    g = rng.standard_normal(2)
    r = Reader({"X": X, "W": W, "G": G, "g": g})
    assert np.allclose(r.value("X Wᵀ"), X @ W.T)
    assert np.allclose(r.value("G : (X Wᵀ)"), np.sum(G * (X @ W.T)))
    assert np.allclose(r.value("(Gᵀ X) : W"), np.sum((G.T @ X) * W))
    assert np.allclose(r.value("G 1"), G.sum(1)[:, None])
    assert np.allclose(r.value("(g 1ᵀ) : X"), np.sum(g[:, None] * X))
    assert np.allclose(r.value("g 1ᵀ", (2, 5)), np.outer(g, np.ones(5)))
    assert np.allclose(Reader({"X": X}, (3, 3)).value("2 (I ⊗ Xᵀ X)"), 2 * np.kron(np.eye(3), X.T @ X))
    assert np.allclose(r.value("tr(X Wᵀ Gᵀ)"), np.trace(X @ W.T @ G.T))
    assert np.allclose(r.value("vec(X) vec(X)ᵀ"), np.outer(X.ravel("F"), X.ravel("F")))
    K = Reader({}, (2, 3)).value("K")
    assert np.allclose(K @ X.ravel("F"), X.T.ravel("F"))
    with pytest.raises(AssertionError, match="cannot multiply"):
        r.value("X W")


# -- the oracles ---------------------------------------------------------------------------------

SIZES = {"i": 2, "j": 3, "k": 4, "b": 2, "l": 5}


def _spec_parts(spec: str):
    inputs, output = spec.split("->")
    return inputs.split(",") if inputs else [""], output


def _operands(spec: str, seed: int):
    rng = np.random.default_rng(seed)
    inputs, output = _spec_parts(spec)
    ops = [rng.standard_normal(tuple(SIZES[c] for c in t)) for t in inputs]
    G = rng.standard_normal(tuple(SIZES[c] for c in output))
    return ops, G


def _einsum(spec: str, *ops) -> np.ndarray:
    """np.einsum, and a label repeated in the output (``"i->ii"``) puts values on a diagonal."""
    inputs, output = _spec_parts(spec)
    unique = "".join(dict.fromkeys(output))
    value = np.einsum(",".join(inputs) + "->" + unique, *ops)
    if unique == output:
        return value
    out = np.zeros(tuple(SIZES[c] for c in output))
    for index in np.ndindex(*out.shape):
        at = dict(zip(output, index))
        if all(at[c] == i for c, i in zip(output, index)):
            out[index] = value[tuple(at[c] for c in unique)]
    return out


def _share(spec: str, ops, k: int, direction) -> np.ndarray:
    """Operand ``k``'s share of ``dY``: the forward with ``dX_k`` in its place (exact)."""
    return _einsum(spec, *[direction if m == k else x for m, x in enumerate(ops)])


def _reference_gradient(spec: str, ops, G, k: int) -> np.ndarray:
    """``∂L/∂X_k`` entry by entry: ``<G, share(e)>`` for each basis direction ``e``."""
    grad = np.zeros(ops[k].shape)
    for index in np.ndindex(*ops[k].shape):
        e = np.zeros(ops[k].shape)
        e[index] = 1.0
        grad[index] = np.sum(G * _share(spec, ops, k, e))
    return grad


# -- reading an explanation ----------------------------------------------------------------------

def _sections(text: str) -> dict[int, list[str]]:
    """Each operand's lines, by operand position."""
    out, current = {}, None
    for line in text.splitlines():
        m = re.match(r"Gradient with respect to \w+ \(operand (\d+)\):", line)
        if m:
            current = out.setdefault(int(m.group(1)), [])
        elif current is not None and line:
            current.append(line)
    return out


def _batch_slices(spec: str, line: str):
    """The labels of ``for each b`` (``for each i, j``) on a line, or None."""
    m = re.search(r"[Ff]or each ((?:\w, )*\w)(?:,| \(|:)", line)
    return tuple(m.group(1).split(", ")) if m else None


def _sliced_spec(spec: str, labels) -> str:
    inputs, output = _spec_parts(spec)
    cut = lambda term: "".join(c for c in term if c not in labels)  # noqa: E731
    return ",".join(map(cut, inputs)) + "->" + cut(output)


def check_matrix_explanation(spec: str, names, seed: int = 0) -> int:
    """Reads every formula of ``explain(spec, names, style="matrix")`` back and holds it to
    the oracles; returns how many formulas were checked."""
    explanation = einsgrad.explain(spec, names, style="matrix")
    text = str(explanation)
    ops, G = _operands(spec, seed)
    rng = np.random.default_rng(seed + 1)
    dirs = [rng.standard_normal(x.shape) for x in ops]
    checked = 0
    lines = text.splitlines()
    for line in lines:
        m = re.match(r"\s+(?:For each (?:\w, )+the|The) (?:product rule, one share per operand|differential): "
                     r"dY = (.*), so dL = (.*)\.$", line)
        if not m:
            continue
        dy_text, dl_text = m.groups()
        label = _batch_slices(spec, line)
        for sub, sub_ops, sub_g, sub_dirs in _slices(spec, ops, G, dirs, label):
            env = {**dict(zip(names, sub_ops)), "G": sub_g, **{f"d{n}": d for n, d in zip(names, sub_dirs)}}
            shares = [_share(sub, sub_ops, k, sub_dirs[k]) for k in range(len(ops))]
            env["dY"] = sum(shares)
            reader = Reader(env)
            out_shape = _as_matrix(shares[0]).shape
            assert np.allclose(reader.value(dy_text, out_shape), _as_matrix(sum(shares))), line
            parts = dl_text.split(" = ")
            expected = np.sum(sub_g * sum(shares))
            for part in parts:
                assert np.allclose(reader.value(part, (1, 1)), expected), (part, line)
                checked += 1
    sections = _sections(text)
    assert sorted(sections) == list(range(len(names))), text
    for k, section in sections.items():
        name = names[k]
        before = checked
        expected_grad = _reference_gradient(spec, ops, G, k)
        if section[0].startswith("No matrix form"):
            checked += _check_index_form(section[0], spec, ops, G, names, k, expected_grad)
            continue
        for line in section:
            m = re.match(r"1\. (?:For each (?:\w, )+its|Its) share of dL, moved into M : d\w+: (.*)$", line)
            if m:
                label = _batch_slices(spec, line)
                for sub, sub_ops, sub_g, sub_dirs in _slices(spec, ops, G, dirs, label):
                    env = {**dict(zip(names, sub_ops)), "G": sub_g, **{f"d{n}": d for n, d in zip(names, sub_dirs)}}
                    expected = np.sum(sub_g * _share(sub, sub_ops, k, sub_dirs[k]))
                    for part in m.group(1).split(" = "):
                        assert np.allclose(Reader(env).value(part, (1, 1)), expected), (part, line)
                        checked += 1
            m = re.match(r"2\. Read off the gradient: (?:for each ((?:\w, )*\w)(?: \(slices as column vectors\))?: )?"
                         r"∂L/∂(\w+) = (.*), the backward einsum", line)
            if m:
                assert m.group(2) == name
                label = None if m.group(1) is None else tuple(m.group(1).split(", "))
                for sub, sub_ops, sub_g, sub_dirs, index in _slices(spec, ops, G, dirs, label, indexed=True):
                    env = {**dict(zip(names, sub_ops)), "G": sub_g}
                    term = _spec_parts(spec)[0][k]
                    want = expected_grad if index is None else expected_grad[
                        tuple(index[c] if c in index else slice(None) for c in term)]
                    got = Reader(env).value(m.group(3), _as_matrix(want).shape)
                    assert np.allclose(got, _as_matrix(want)), (line, got, want)
                    checked += 1
        assert checked > before, f"nothing of operand {k}'s section was read: {section}"
    return checked


def _slices(spec, ops, G, dirs, labels, indexed=False):
    """(spec, operands, cotangent, directions[, the slice's index]) for each slice of the batch
    ``labels`` (each term is indexed where it holds them), or the whole arrays when None; the
    index is each label's value."""
    if labels is None:
        yield (spec, ops, G, dirs, None) if indexed else (spec, ops, G, dirs)
        return
    inputs, output = _spec_parts(spec)
    for values in itertools.product(*(range(SIZES[c]) for c in labels)):
        at = dict(zip(labels, values))
        cut = lambda term, a: a[tuple(at[c] if c in at else slice(None) for c in term)]  # noqa: E731
        sub_ops = [cut(t, x) for t, x in zip(inputs, ops)]
        sub_dirs = [cut(t, d) for t, d in zip(inputs, dirs)]
        item = (_sliced_spec(spec, labels), sub_ops, cut(output, G), sub_dirs)
        yield (*item, at) if indexed else item


_INDEXED = re.compile(r"(δ|[A-Za-z]\w*?)_([a-zβγ′]+)")


def _check_index_form(line: str, spec, ops, G, names, k, expected_grad) -> int:
    """``No matrix form (...); in index form: ∂L/∂X_ijk = Σ_ab A_.. B_.., the backward einsum``:
    the index form evaluated by np.einsum is the gradient."""
    m = re.match(r"No matrix form \(.+\); in index form: ∂L/∂([A-Za-z]\w*?)(?:_(\S+))? = (.*), the backward einsum", line)
    assert m, line
    assert m.group(1) == names[k]
    out = _primes(m.group(2) or "")
    body = m.group(3)
    if body.startswith("Σ_"):
        body = body.split(" ", 1)[1]
    env = {**dict(zip(names, ops)), "G": G}
    operands, terms = [], []
    for factor in body.split(" "):
        if factor in env:  # a scalar, written without indices
            operands.append(env[factor])
            terms.append([])
            continue
        f = _INDEXED.fullmatch(factor)
        assert f, (factor, line)
        name, idx = f.group(1), _primes(f.group(2))
        if name == "δ":
            operands.append(np.eye(SIZES[idx[0].rstrip("′")]))
        else:
            operands.append(env[name])
        terms.append(idx)
    for c in out:  # an index only the gradient has: constant along it
        if not any(c in t for t in terms):
            operands.append(np.ones(SIZES[c.rstrip("′")]))
            terms.append([c])
    labels = sorted({c for t in terms + [out] for c in t})
    letters = dict(zip(labels, string.ascii_letters))
    einsum = ",".join("".join(letters[c] for c in t) for t in terms) + "->" + "".join(letters[c] for c in out)
    assert np.allclose(np.einsum(einsum, *operands), expected_grad), line
    return 1


def _primes(index: str) -> list[str]:
    """``ii′j`` -> ``['i', 'i′', 'j']``."""
    return re.findall(r"[a-z]′*", index)


# -- single specs in matrix style ----------------------------------------------------------------

CURATED = [
    pytest.param("ik,jk->ij", "X,W", id="linear layer X Wᵀ"),
    pytest.param("ij,jk->ik", "X,W", id="matmul"),
    pytest.param("bij,bjk->bik", "X,W", id="batched matmul"),
    pytest.param("ii->", "X", id="trace"),
    pytest.param("ij,jk,ki->", "A,X,B", id="tr(A X B)"),
    pytest.param("i,j->ij", "x,y", id="outer product"),
    pytest.param("ij,ij->ij", "X,W", id="Hadamard product"),
    pytest.param("ij->i", "X", id="row sums"),
    pytest.param("ij->j", "X", id="column sums"),
    pytest.param("ij->", "X", id="sum of all"),
    pytest.param("i,i->", "x,y", id="inner product"),
    pytest.param("i,ij,j->", "x,A,y", id="bilinear form"),
    pytest.param("ij,j->i", "A,x", id="matrix-vector"),
    pytest.param("ji->ij", "X", id="transpose"),
    pytest.param("i->ii", "d", id="Diag"),
    pytest.param("ii->i", "X", id="diag"),
    pytest.param("ij,i->ij", "X,d", id="row scaling"),
    pytest.param("ij,->ij", "X,a", id="scalar times matrix"),
    pytest.param("ij,ij->", "X,W", id="Frobenius product"),
    pytest.param("ijk,k->ij", "T,w", id="no matrix form: three indices"),
    pytest.param("bij,bjk->ik", "X,W", id="no matrix form: a summed batch"),
    pytest.param("ii,jj->", "A,B", id="a product of traces, tr(A) tr(B)"),
]


@pytest.mark.parametrize("spec,names", CURATED)
def test_every_printed_form_is_the_gradient(spec, names):
    assert check_matrix_explanation(spec, names.split(",")) > 0


def test_the_linear_layer_shows_why_g_is_transposed():
    text = str(einsgrad.explain("ik,jk->ij", names="X,W", style="matrix"))
    assert "Y = X Wᵀ" in text
    assert "dY = dX Wᵀ + X dWᵀ" in text
    assert "dL = G : dY = G : (dX Wᵀ) + G : (X dWᵀ)" in text
    assert "G : (X dWᵀ) = (Xᵀ G) : dWᵀ = (Gᵀ X) : dW" in text
    assert "by M : (N P) = (Nᵀ M) : P, then M : Nᵀ = Mᵀ : N" in text
    assert "∂L/∂X = G W" in text and "∂L/∂W = Gᵀ X" in text


def test_the_trace_is_taken_cyclically():
    text = str(einsgrad.explain("ij,jk,ki->", names="A,X,B", style="matrix", wrt=1))
    assert "G tr(A dX B) = G tr(B A dX) = (G Aᵀ Bᵀ) : dX" in text
    assert "tr(N P) = tr(P N)" in text
    assert "∂L/∂X = G Aᵀ Bᵀ" in text


@pytest.mark.parametrize("spec,names,form", [
    ("ii->", "X", "∂L/∂X = G I"),
    ("i,j->ij", "x,y", "∂L/∂y = Gᵀ x"),
    ("ij,ij->ij", "X,W", "∂L/∂X = G ∘ W"),
    ("ij->i", "X", "∂L/∂X = G 1ᵀ"),
    ("bij,bjk->bik", "X,W", "for each b: ∂L/∂W = Xᵀ G"),
])
def test_textbook_forms(spec, names, form):
    assert form in str(einsgrad.explain(spec, names, style="matrix"))


def test_a_spec_with_no_matrix_form_says_so_in_one_line():
    text = str(einsgrad.explain("ijk,k->ij", "T,w", style="matrix", wrt=0))
    section = _sections(text)[0]
    assert section == ["No matrix form (T has 3 indices, more than a matrix's two); in index form: "
                       "∂L/∂T_ijk = G_ij w_k, the backward einsum \"ij,k->ijk\""]


def test_operand_names_that_are_the_rules_placeholders_are_not_reused():
    text = str(einsgrad.explain("ik,jk->ij", "M,N", style="matrix", wrt=1))
    rule = next(line for line in text.splitlines() if line.strip().startswith("by "))
    assert not re.search(r"\b[MN]\b", rule), rule


def test_matrix_style_renders_latex():
    latex = einsgrad.explain("ik,jk->ij", "X,W", style="matrix").latex()
    assert r"\top" in latex and "ᵀ" not in latex


def test_a_bad_style_is_refused():
    with pytest.raises(einsgrad.EinsumSpecError, match="style must be one of 'index', 'differential', 'matrix'"):
        einsgrad.explain("ij->i", style="matrixx")



def generated_examples(default: int) -> int:
    """Examples of a generated-form test: ``default`` in CI; EINSGRAD_GENERATED_FORMS (300) for
    a long hunt."""
    return int(os.environ.get("EINSGRAD_GENERATED_FORMS", default))

@st.composite
def rank2_specs(draw):
    """Specs of one to three operands, each of at most two labels from ``ijk`` (a label may
    repeat, ``"ii"``), the output at most two distinct labels the inputs hold."""
    n = draw(st.integers(1, 3))
    terms = ["".join(draw(st.lists(st.sampled_from("ijk"), max_size=2))) for _ in range(n)]
    present = sorted(set("".join(terms)))
    output = "".join(draw(st.lists(st.sampled_from(present), max_size=2, unique=True))) if present else ""
    return ",".join(terms) + "->" + output


@settings(max_examples=generated_examples(60), deadline=None)
@given(rank2_specs(), st.integers(0, 3))
def test_generated_rank2_specs_print_true_forms(spec, seed):
    names = ["X", "W", "V"][:len(_spec_parts(spec)[0])]
    check_matrix_explanation(spec, names, seed)


def test_the_command_line_prints_the_matrix_style(capsys):
    from einsgrad.cli import main

    assert main(["explain", "ik,jk->ij", "--names", "X,W", "--style", "matrix"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == str(einsgrad.explain("ik,jk->ij", names="X,W", style="matrix"))
    assert "G : (X dWᵀ) = (Xᵀ G) : dWᵀ = (Gᵀ X) : dW" in out


def test_the_command_line_refuses_a_bad_style(capsys):
    from einsgrad.cli import main

    assert main(["explain", "ik,jk->ij", "--style", "matrixx"]) == 2
    assert "invalid choice: 'matrixx'" in capsys.readouterr().err


# -- Kronecker forms of Hessians by a matrix ------------------------------------------------------

def _vec(M: np.ndarray) -> np.ndarray:
    return M.reshape(-1, order="F")


def vec_hessian(gradient, X: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """``∂vec(g)/∂vec(X)ᵀ`` by central differences of a gradient written by hand in numpy."""
    columns = []
    for n in range(X.size):
        e = np.zeros(X.size)
        e[n] = h
        E = e.reshape(X.shape, order="F")
        columns.append(_vec(gradient(X + E) - gradient(X - E)) / (2 * h))
    return np.stack(columns, axis=1)


def _arrays(seed=3):
    rng = np.random.default_rng(seed)
    return {"A": rng.standard_normal((3, 3)), "B": rng.standard_normal((3, 3)), "X": rng.standard_normal((3, 3)),
            "Xr": rng.standard_normal((5, 3)), "W": rng.standard_normal((3, 2)), "Y": rng.standard_normal((5, 2)),
            "T": rng.standard_normal((4, 5)), "U": rng.standard_normal((4, 2)), "V": rng.standard_normal((5, 2))}


# (id, how to build the program, the tensor, its gradient by hand, the printed form)
KRONECKER = [
    ("tr(Xᵀ A X)", lambda: einsgrad.program("f = X[i,j] * A[i,k] * X[k,j]"), "X",
     lambda a: lambda X: (a["A"] + a["A"].T) @ X, "∂²f/∂X² = I ⊗ (A + Aᵀ)"),
    ("least squares by W", lambda: einsgrad.matrix("L = norm(X @ W - Y)^2"), "W",
     lambda a: lambda W: 2 * a["X"].T @ (a["X"] @ W - a["Y"]), "∂²L/∂W² = 2 (I ⊗ (Xᵀ X))"),
    ("matrix factorization by U", lambda: einsgrad.program("L = (T[i,j] - sum[a](U[i,a] * V[j,a]))^2"), "U",
     lambda a: lambda U: 2 * (U @ a["V"].T - a["T"]) @ a["V"], "∂²L/∂U² = 2 ((Vᵀ V) ⊗ I)"),
    ("tr(X X B), commuted", lambda: einsgrad.program("f = X[i,j] * X[j,k] * B[k,i]"), "X",
     lambda a: lambda X: a["B"].T @ X.T + X.T @ a["B"].T, None),
    ("tr(A X B X), commuted", lambda: einsgrad.program("f = A[i,j] * X[j,k] * B[k,l] * X[l,i]"), "X",
     lambda a: lambda X: a["A"].T @ X.T @ a["B"].T + a["B"].T @ X.T @ a["A"].T, None),
    ("a square of the trace", lambda: einsgrad.program("f = X[i,i] * X[j,j]"), "X",
     lambda a: lambda X: 2 * np.trace(X) * np.eye(3), "∂²f/∂X² = 2 vec(I) vec(I)ᵀ"),
]


def _env(prog) -> dict:
    """The arrays by the names the program reads (``X`` of the least squares is 5 x 3)."""
    a = _arrays()
    env = {k: v for k, v in a.items() if k in prog.inputs}
    if "W" in prog.inputs:
        env["X"] = a["Xr"]
    return env


@pytest.mark.parametrize("case, build, name, gradient, printed", KRONECKER, ids=[c[0] for c in KRONECKER])
def test_kronecker_forms_are_the_hessians(case, build, name, gradient, printed):
    prog = build()
    a = _env(prog)
    explanation = prog.explain(name, style="hessian")
    (h,) = explanation.hessians
    assert h.matrix_form is None and h.vec_form is not None, h
    if printed is not None:
        assert h.vec_form == printed
    text = str(explanation)
    assert "vec stacking a matrix's columns, as in the Matrix Cookbook" in text
    assert "No matrix form" not in text.split("Hessian by")[-1]
    X = a[name]
    by_hand = gradient(a)
    np.testing.assert_allclose(prog.grad(name)(**a), by_hand(X), rtol=1e-10, atol=1e-10)  # the right function
    expected = vec_hessian(by_hand, X)
    got = Reader(a, X.shape).value(h.vec_form.partition(" = ")[2], expected.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_a_commuted_kronecker_form_names_the_commutation_matrix():
    text = str(einsgrad.program("f = X[i,j] * X[j,k] * B[k,i]").explain("X", style="hessian"))
    assert "K the commutation matrix, K vec(V) = vec(Vᵀ)" in text
    assert ") K" in text.splitlines()[-1]


def test_a_hessian_with_no_kronecker_form_still_says_so():
    text = str(einsgrad.matrix("L = 0.5 * norm(tanh(X @ W.T + b) - T)^2", b=1).explain("W", style="hessian"))
    assert text.splitlines()[-1].strip().startswith("No matrix form")


def test_kronecker_forms_render_latex():
    latex = einsgrad.program("f = X[i,j] * A[i,k] * X[k,j]").explain("X", style="hessian").latex()
    assert r"I \otimes" in latex and "⊗" not in latex


@st.composite
def quadratic_programs(draw):
    """``f = X[..] * X[..] * A[..] (* B[..])``: X twice, one or two constant matrices, every
    index read twice (a scalar); all of size 3, so any arrangement is a valid program."""
    constants = draw(st.sampled_from([("A",), ("A", "B")]))
    factors = ["X", "X", *constants]
    slots = 2 * len(factors)
    labels = [c for c in "ijklmn"[:slots // 2] for _ in range(2)]
    order = draw(st.permutations(labels))
    terms = [f"{name}[{order[2 * n]},{order[2 * n + 1]}]" for n, name in enumerate(factors)]
    return "f = " + " * ".join(draw(st.permutations(terms)))


def _polarized_hessian(f, shape) -> np.ndarray:
    """The Hessian of a quadratic form ``f(X)`` (no linear part) by vec(X), exactly:
    ``H_pq = f(E_p + E_q) - f(E_p) - f(E_q)``."""
    size = int(np.prod(shape))
    basis = [np.eye(size)[n].reshape(shape, order="F") for n in range(size)]
    return np.array([[f(basis[p] + basis[q]) - f(basis[p]) - f(basis[q]) for q in range(size)]
                     for p in range(size)])


@settings(max_examples=generated_examples(40), deadline=None)
@given(quadratic_programs())
def test_generated_quadratic_forms_print_true_kronecker_forms(text):
    prog = einsgrad.program(text)
    rng = np.random.default_rng(len(text))
    a = {"A": rng.standard_normal((3, 3)), "B": rng.standard_normal((3, 3))}
    (h,) = prog.explain("X", style="hessian").hessians
    if h.vec_form is None:
        return
    spec_terms = re.findall(r"(\w)\[(\w),(\w)\]", text)
    spec = ",".join(i + j for _, i, j in spec_terms) + "->"
    f = lambda X: np.einsum(spec, *[X if n == "X" else a[n] for n, _, _ in spec_terms])  # noqa: E731
    expected = _polarized_hessian(f, (3, 3))
    got = Reader(a, (3, 3)).value(h.vec_form.partition(" = ")[2], expected.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9, err_msg=f"{text}: {h.vec_form}")


def test_the_hessian_of_a_sum_of_squares_is_twice_the_identity():
    (h,) = einsgrad.program("f = X[i,j] * X[i,j]").explain("X", style="hessian").hessians
    assert h.vec_form == "∂²f/∂X² = 2 I"
    assert np.allclose(Reader({}, (2, 3)).value("2 I", (6, 6)), _polarized_hessian(lambda X: np.sum(X * X), (2, 3)))


def _hardening():
    import test_hardening_explain as hardening

    return hardening


@pytest.mark.parametrize("spec", [p.values[0] for p in _hardening().HARD_SPECS])
def test_hard_specs_explain_in_matrix_style(spec):
    """The hardening suite's hard specs (many labels, operands, repeats) in matrix style: each
    explains, or is refused for its length with a way out."""
    try:
        result = einsgrad.explain(spec, style="matrix")
    except einsgrad.EinsumSpecError as e:
        assert "give wrt= fewer operands" in str(e)
        result = einsgrad.explain(spec, style="matrix", wrt=0)
    assert str(result) and result.latex().isascii()


@pytest.mark.parametrize("spec", _hardening().CURATED)
def test_matrix_style_latex_is_mathtext(spec):
    mathtext = pytest.importorskip("matplotlib.mathtext")
    parser = mathtext.MathTextParser("path")
    latex = einsgrad.explain(spec, style="matrix").latex()
    formulas = re.findall(r"\$([^$]+)\$", latex)
    assert formulas and r"\text{" not in latex
    for formula in formulas:
        parser.parse(f"${formula}$")


def test_the_hessian_of_tr_x_x_is_twice_the_commutation_matrix():
    (h,) = einsgrad.program("f = X[i,j] * X[j,i]").explain("X", style="hessian").hessians
    assert h.vec_form == "∂²f/∂X² = 2 K"
    expected = _polarized_hessian(lambda X: np.trace(X @ X), (3, 3))
    assert np.allclose(Reader({}, (3, 3)).value("2 K", expected.shape), expected)


def test_a_cubic_trace_has_a_commuted_kronecker_hessian():
    (h,) = einsgrad.program("f = X[i,j] * X[j,k] * X[k,i]").explain("X", style="hessian").hessians
    assert h.vec_form == "∂²f/∂X² = 3 (I ⊗ Xᵀ + X ⊗ I) K"
    X = np.random.default_rng(1).standard_normal((3, 3))
    expected = vec_hessian(lambda X: 3 * (X @ X).T, X)  # ∂ tr(X³)/∂X = 3 (X²)ᵀ
    got = Reader({"X": X}, X.shape).value(h.vec_form.partition(" = ")[2], expected.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)

