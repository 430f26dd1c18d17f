"""The index algebra (einsgrad.algebra) against numbers: a contraction or a merge must not
change the value of a term, which numpy evaluates with each delta as an identity matrix."""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import pytest

import einsgrad
from einsgrad.algebra import (Delta, Factor, Fresh, Product, Term, contract_deltas, fresh_indices,
                              fresh_name, simplify)

SIZE = 3
TENSORS = {"A": 2, "x": 1, "B": 2}


def value(factors, output, arrays, summed=()) -> np.ndarray:
    """``Σ_{summed} Π factors`` by numpy, a delta being the identity, every index of size SIZE;
    ``summed`` may name indices that no factor holds (each is a factor SIZE)."""
    letters = {i: chr(97 + n) for n, i in enumerate(dict.fromkeys(
        [*output, *summed, *(i for f in factors for i in f.indices)]))}
    ones = [Factor("1", (o,)) for o in (*output, *summed)]  # held by no factor: a broadcast
    factors = [*factors, *ones] or [Factor("1")]
    operands = [np.eye(SIZE) if f.is_delta else arrays.get(f.name, np.ones((SIZE,) * len(f.indices)))
                for f in factors]
    spec = ",".join("".join(letters[i] for i in f.indices) for f in factors)
    return np.einsum(spec + "->" + "".join(letters[o] for o in output), *operands)


def random_term(rng: random.Random):
    pool = ["i", "j", "p", "q", "r"]
    output = tuple(rng.sample(["i", "j"], rng.randint(0, 2)))
    factors = []
    for _ in range(rng.randint(1, 5)):
        if rng.random() < 0.5:
            factors.append(Delta(rng.choice(pool), rng.choice(pool)))
        else:
            name = rng.choice(sorted(TENSORS))
            factors.append(Factor(name, tuple(rng.choice(pool) for _ in range(TENSORS[name]))))
    held = {i for f in factors for i in f.indices}
    return tuple(factors), tuple(o for o in output if o in held) if factors else ()


@pytest.mark.parametrize("seed", range(300))
def test_contraction_keeps_the_value(seed):
    rng = random.Random(seed)
    factors, output = random_term(rng)
    arrays = {n: np.random.default_rng(seed).standard_normal((SIZE,) * r) for n, r in TENSORS.items()}
    contracted = contract_deltas(factors, output)
    np.testing.assert_allclose(value(contracted, output, arrays), value(factors, output, arrays))
    (term,) = simplify(output, [Term(Fraction(1), factors)])
    np.testing.assert_allclose(value(term.factors, output, arrays), value(factors, output, arrays))


@pytest.mark.parametrize("seed", range(300))
def test_a_product_with_its_sums_explicit_keeps_its_value(seed):
    """The contraction explanations write (the sums explicit) against numpy, as above."""
    rng = random.Random(seed)
    factors, output = random_term(rng)
    arrays = {n: np.random.default_rng(seed).standard_normal((SIZE,) * r) for n, r in TENSORS.items()}
    over = tuple(dict.fromkeys(i for f in factors for i in f.indices if i not in output))
    contracted = Product(over, factors).contracted()
    assert not set(contracted.over) & set(output)
    np.testing.assert_allclose(value(contracted.factors, output, arrays, contracted.over),
                               value(factors, output, arrays))


def test_a_summed_diagonal_held_by_no_tensor_is_the_dimension():
    """``Σ_p δ(p,p) = dim(p)`` and ``Σ_{p,q} δ(p,q) = dim(p)``, not 1: the delta stays."""
    for factors in ([Delta("p", "p")], [Delta("p", "q")],
                    [Delta("p", "q"), Delta("q", "p")]):
        contracted = contract_deltas(factors, ())
        assert value(contracted, (), {}) == SIZE == value(factors, (), {})
        assert len(contracted) == 1


def test_a_diagonal_on_a_free_or_held_index_is_one():
    assert contract_deltas([Delta("i", "i")], ("i",)) == ()
    assert contract_deltas([Delta("p", "p"), Factor("x", ("p",))], ()) == (Factor("x", ("p",)),)


def test_fresh_names():
    assert fresh_name("g", {"g", "g1"}) == "g2"
    assert fresh_indices(["i", "i", None], {"j"}) == ("i", "k", "l")
    fresh = Fresh({"i"})
    assert [fresh.take() for _ in range(26)][-2:] == ["h", "i1"]


def test_an_operand_named_delta_is_a_tensor():
    """Deltas are a type of their own, so an einsum operand may be called ``delta``."""
    steps = str(einsgrad.explain("ij,jk->ik", names="delta,W", wrt=0)).splitlines()
    assert next(s for s in steps if s.startswith("4.")).endswith("= Σ_k G_pk W_qk")
    assert next(s for s in steps if s.startswith("5.")).endswith('the backward einsum "ik,jk->ij"')
