"""A statement's value is written into the einsum's own result where that is safe.

The first product of a contraction step is its output when it is an array the einsum made
(it owns its memory), of the output's shape and dtype, and no other term reads it; otherwise
it is copied, so that no input, and no view of one, is ever written into (an elementwise step
later works in place on a value no other step reads). The values are checked against numpy
written by hand; the inputs against their copies.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import einsgrad
from einsgrad.program_evaluation import smallest_first


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


CASES = [
    # (program, shapes, numpy by hand)
    ("dz[i,p] = X[i,p] * t[i] * s[i]", dict(X=(5, 3), t=(5,), s=(5,)),
     lambda X, t, s: X * (t * s)[:, None]),
    ("Y[i,j] = 2 * X[i,j] * d[j] - X[i,j]", dict(X=(4, 3), d=(3,)), lambda X, d: 2 * X * d - X),
    ("Y[i,j] = X[i,j] * d[j] + X[i,j]", dict(X=(4, 3), d=(3,)), lambda X, d: X * d + X),
    ("Y[j,i] = X[i,j] * d[j]", dict(X=(4, 3), d=(3,)), lambda X, d: (X * d).T),
    ("A[i] = X[i,i]; B[i] = tanh(A[i])", dict(X=(4, 4)), lambda X: np.tanh(np.diagonal(X))),
    ("A[i,j] = X[i,j]; B[i,j] = exp(A[i,j])", dict(X=(3, 2)), lambda X: np.exp(X)),
    ("A[j,i] = X[i,j]; B[j,i] = sin(A[j,i])", dict(X=(3, 2)), lambda X: np.sin(X.T)),
    ("A[i,j] = X[i,j] * w[j]; B[i,j] = tanh(A[i,j])", dict(X=(3, 2), w=(2,)), lambda X, w: np.tanh(X * w)),
    ("A[i,j] = X[i,j] * w[j] + X[i,j] * w[j]; B[i,j] = cos(A[i,j])", dict(X=(3, 2), w=(2,)),
     lambda X, w: np.cos(2 * X * w)),
    ("Y[i,p] = a * b * c * t[i] * X[i,p]", dict(a=(), b=(), c=(), t=(4,), X=(4, 3)),
     lambda a, b, c, t, X: a * b * c * t[:, None] * X),
    ("Y[i,j] = X[i,j] * delta[i,j] * w[j]", dict(X=(3, 3), w=(3,)), lambda X, w: np.diag(np.diagonal(X) * w)),
    ("z[i] = X[i,k] * w[k]\nL = softplus(z[i]) - y[i] * z[i]", dict(X=(6, 3), w=(3,), y=(6,)),
     lambda X, w, y: np.sum(np.logaddexp(0, X @ w) - y * (X @ w))),
]


@pytest.mark.parametrize("text, shapes, by_hand", CASES, ids=[c[0] for c in CASES])
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2 ** 16))
def test_values_and_inputs_untouched(text, shapes, by_hand, seed):
    rng = np.random.default_rng(seed)
    arrays = {n: rng.standard_normal(s) for n, s in shapes.items()}
    copies = {n: a.copy() for n, a in arrays.items()}
    p = einsgrad.program(text)
    first, second = p(**arrays), p(**arrays)
    np.testing.assert_allclose(first, by_hand(**copies), rtol=1e-12, atol=1e-12)
    for n, a in arrays.items():
        np.testing.assert_array_equal(a, copies[n], err_msg=f"input {n} was written into")
        assert not np.shares_memory(np.asarray(first), a), f"the result is input {n}'s memory"
    assert first is not second and not np.shares_memory(np.asarray(first), np.asarray(second))


def test_the_logistic_hessian_against_the_formula():
    """The benchmark's case at a small size: ``Xᵀ Diag(s (1 - s)) X``, its steps' values
    each a new array (the einsum's own, not copied, where it may be)."""
    rng = np.random.default_rng(3)
    X, w, y = rng.standard_normal((40, 5)), rng.standard_normal(5), (rng.random(40) > 0.5) * 1.0
    H = einsgrad.program("z[i] = X[i,k] * w[k]\nL = softplus(z[i]) - y[i] * z[i]").hessian("w")
    s = _sigmoid(X @ w)
    expected = X.T @ (X * (s * (1 - s))[:, None])
    np.testing.assert_allclose(H(X=X, w=w, y=y), expected, rtol=1e-12)
    np.testing.assert_allclose(H(X=X, w=w, y=y), expected, rtol=1e-12)  # a second call: no state kept


def test_integer_inputs_with_a_fraction_are_not_written_as_integers():
    """A product of integers scaled by 0.5 is float64: the integer product is no buffer for it."""
    X = np.arange(6).reshape(2, 3)
    np.testing.assert_array_equal(einsgrad.program("Y[i,j] = 0.5 * X[i,j] * X[i,j]")(X=X), 0.5 * X * X)
    np.testing.assert_array_equal(einsgrad.program("Y[i,j] = X[i,j] * X[i,j]")(X=X), X * X)


# -- the order of an elementwise product ---------------------------------------------------------


def _fewest_multiplications(operands, sizes) -> int:
    """The least number of multiplications that any order of pairwise products of ``operands``
    (index sets, nothing summed) takes: each product costs the size of its result. By brute
    force over every order, independent of the planner."""
    from functools import lru_cache

    def volume(indices):
        return int(np.prod([sizes[i] for i in indices])) if indices else 1

    @lru_cache(maxsize=None)
    def best(state):
        if len(state) == 1:
            return 0
        found = None
        for a in range(len(state)):
            for b in range(a + 1, len(state)):
                merged = state[a] | state[b]
                rest = tuple(sorted([s for n, s in enumerate(state) if n not in (a, b)] + [merged], key=sorted))
                cost = volume(merged) + best(rest)
                found = cost if found is None else min(found, cost)
        return found
    return best(tuple(sorted((frozenset(o) for o in operands), key=sorted)))


@settings(max_examples=40, deadline=None)
@given(operands=st.lists(st.lists(st.sampled_from("ipq"), min_size=0, max_size=3, unique=True).map("".join),
                         min_size=2, max_size=5),
       sizes=st.tuples(st.integers(1, 300), st.integers(1, 40), st.integers(1, 40)))
def test_an_elementwise_product_multiplies_the_smallest_factors_first(operands, sizes):
    """A product term with nothing summed (``X[i,p] * t[i] * (1 - t)[i]``) runs as one einsum
    in the order :func:`smallest_first` gives, whose pairwise products take the fewest
    multiplications there are (vectors first, then one broadcast against the matrix), as brute
    force over every order finds."""
    output = "".join(i for i in "ipq" if any(i in o for o in operands))
    if not output:
        return
    size = dict(zip("ipq", sizes))
    spec = ",".join(operands) + "->" + output
    shapes = [tuple(size[i] for i in o) for o in operands]
    einsum = einsgrad.Einsum(spec, optimize=smallest_first) if len(operands) > 2 else einsgrad.Einsum(spec)
    assert einsum.costs(*shapes).forward == _fewest_multiplications(operands, size), spec


def test_scalars_and_vectors_before_the_matrix():
    """``a * b * c * t[i] * X[i,p]`` at 2000 x 300: ``a b``, then ``c``, then ``t``, then one pass
    over X: 1 + 1 + 2000 + 600000 multiplications (opt_einsum's own order took 1,200,002: X
    times t first, then the scalars' product against the whole matrix)."""
    shapes = [(), (), (), (2000,), (2000, 300)]
    assert einsgrad.Einsum(",,,i,ip->ip", optimize=smallest_first).costs(*shapes).forward == 602002
    # [a, b, c, t, X] -> a b: [c, t, X, ab] -> c ab: [t, X, abc] -> t abc: [X, tabc] -> the last
    assert smallest_first(["", "", "", "i", "ip"], "ip", {"i": 2000, "p": 300}) == [(0, 1), (0, 3), (0, 2), (0, 1)]
