"""The fast path (einsgrad.derive) against the index algebra (einsgrad.spec_terms): for every
generated spec and every operand, the backward and the Jacobian that ``derive`` writes down equal
the algebra's derivation (product rule, deltas, contraction) converted back to a spec, up to the
names of the labels and the order of the operands after the cotangent. Specs are compared by a
canonical form computed here, independently of both: labels renamed by first appearance, the
least spelling over the orders of the operands that may move. Specs with ``...`` are covered as
written (``...`` one batch index) and bound (``...`` and size-1 broadcasts as plain labels)."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import ELL, FLOAT64, LETTERS, einsum_cases, extended_cases

import einsgrad
from einsgrad import derive
from einsgrad.algebra import Delta, Term
from einsgrad.errors import EinsumSpecError
from einsgrad.shapes import bind
from einsgrad.spec import normalize_sizes, parse
from einsgrad.spec_terms import jacobian_term, spec_of_term, term_of_spec, vjp_term

generated = st.one_of(einsum_cases(), extended_cases())


def canonical(spec, fixed: int) -> tuple:
    """``spec`` up to renaming, the operands after the first ``fixed`` in any order: the least
    first-appearance spelling over their orders (``...`` keeps its name)."""
    def spelled(inputs):
        names: dict[str, str] = {}

        def name(label: str) -> str:
            return label if label == ELL else names.setdefault(label, LETTERS[len(names)])

        terms = tuple(tuple(name(label) for label in term) for term in inputs)
        return terms, tuple(name(label) for label in spec.output)

    head, tail = spec.inputs[:fixed], spec.inputs[fixed:]
    return min(spelled(head + order) for order in itertools.permutations(tail))


def parsed(case, bound: bool):
    spec = parse(case.spec, case.sizes)
    return bind(spec, case.shapes, dict(normalize_sizes(spec, case.sizes))).spec if bound else spec


@given(generated, st.booleans(), st.booleans())
def test_a_spec_survives_the_round_trip(case, bound, shared):
    spec = parsed(case, bound)
    names = ["A"] * len(spec.inputs) if shared else None
    back = spec_of_term(*term_of_spec(spec, names))
    assert canonical(back, len(back.inputs)) == canonical(spec, len(spec.inputs))


@given(generated, st.booleans(), st.booleans())
def test_the_backward_is_the_algebras(case, bound, shared):
    """``derive.backward`` = the algebra's vjp (cotangent first), for every operand; operands
    sharing one name are still differentiated one position at a time."""
    spec = parsed(case, bound)
    output, term = term_of_spec(spec, ["A"] * len(spec.inputs) if shared else None)
    for k in range(len(spec.inputs)):
        algebra = spec_of_term(*vjp_term(output, term, k))
        assert canonical(algebra, 1) == canonical(derive.backward(spec, k), 1), (str(spec), k)


@given(generated, st.booleans())
def test_the_jacobian_is_the_algebras(case, bound):
    """``derive.jacobian`` = the algebra's Jacobian; where ``derive`` refuses (``...`` in the
    output and the operand), the algebra's Jacobian ties the two batch indices by a delta that
    the notation cannot write."""
    spec = parsed(case, bound)
    output, term = term_of_spec(spec)
    for k in range(len(spec.inputs)):
        jacobian = jacobian_term(output, term, k)
        try:
            fast = derive.jacobian(spec, k)
        except EinsumSpecError:
            assert ELL in spec.output and ELL in spec.inputs[k]
            with pytest.raises(AssertionError, match="batch index"):
                spec_of_term(*jacobian)
            continue
        assert canonical(spec_of_term(*jacobian), 0) == canonical(fast, 0), (str(spec), k)


@given(st.one_of(einsum_cases(dtypes=(FLOAT64,), max_operands=3), extended_cases(dtypes=(FLOAT64,))))
def test_the_algebras_backward_computes_the_vjp(case):
    """The algebra's vjp of the bound spec (``...`` and size-1 broadcasts as plain labels, so
    that it runs on the forward's arrays), compiled as a spec, against ``einsgrad.vjp``."""
    spec = parse(case.spec, case.sizes)
    bound = bind(spec, case.shapes, dict(normalize_sizes(spec, case.sizes)))
    operands = case.operands()
    forward = einsgrad.compile(case.spec, sizes=case.sizes or None)
    g = case.cotangent(forward(*operands).shape)
    output, term = term_of_spec(bound.spec)
    for k in range(len(spec.inputs)):
        backward = spec_of_term(*vjp_term(output, term, k))
        inputs = {label for t in backward.inputs for label in t}
        lone = {label: bound.size_of[label] for label in backward.output if label not in inputs}
        others = operands[:k] + operands[k + 1:]
        got = einsgrad.compile(str(backward), sizes=lone or None)(g, *others)
        np.testing.assert_allclose(got, forward.vjp(g, *operands, wrt=k), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("text, sizes, wrt, terms", [
    pytest.param("ik,jk->ij", None, 1, ["G[i,j]", "X0[i,k]"], id="dW = G^T X"),
    pytest.param("ii->i", None, 0, ["G[i]", "delta[i,j]"], id="a delta survives"),
    pytest.param("i->ii", None, 0, ["G[i,i]"], id="the cotangent's diagonal"),
    pytest.param("j->ij", {"i": 2}, 0, ["G[i,j]"], id="the bias sums G"),
    pytest.param("...i->i", None, 0, ["G[i]"], id="a broadcast batch"),
])
def test_the_vjp_by_hand(text, sizes, wrt, terms):
    """A few vjps derived by hand: the factors the algebra leaves (x named by L_wrt)."""
    result = vjp_term(*term_of_spec(parse(text, sizes)), wrt)
    assert [str(f) for f in result.term.factors] == terms


def test_a_repeated_output_label_is_a_delta():
    output, term = term_of_spec(parse("ij->iji"))
    assert output == ("i", "j", "k") and [str(f) for f in term.factors] == ["X0[i,j]", "delta[i,k]"]


def test_what_the_notation_cannot_write_is_refused():
    output, term = term_of_spec(parse("ij->ij"))
    with pytest.raises(AssertionError, match="no coefficient"):
        spec_of_term(output, Term(Fraction(2), term.factors))
    with pytest.raises(AssertionError, match="a sum over a dimension"):
        spec_of_term((), Term(Fraction(1), (Delta("p", "p"),)))
