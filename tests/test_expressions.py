"""The expression tree's one rebuild (einsgrad.expressions.rebuilt) and the rewrites built on it,
checked against trees written out here by hand."""

from __future__ import annotations

from fractions import Fraction

from einsgrad.algebra import Delta, Factor, Term
from einsgrad.expressions import Call, Power, Scoped, group, rebuilt, renamed, substituted

ONE = Fraction(1)


def _t(*factors, c=ONE) -> Term:
    return Term(Fraction(c), factors)


def _doubled(term: Term) -> Term:
    return Term(2 * term.coefficient, term.factors)


def test_rebuilt_applies_the_function_to_each_term_and_keeps_the_nodes_parts():
    x, y = Factor("x", ("i",)), Factor("y", ("j",))
    inner = group([_t(x), _t(y, c=-1)])
    doubled = group([_t(x, c=2), _t(y, c=-2)])
    assert rebuilt(inner, _doubled) == doubled
    assert rebuilt(Call("tanh", inner), _doubled) == Call("tanh", doubled)
    assert rebuilt(Power(inner, Fraction(-1, 2)), _doubled) == Power(doubled, Fraction(-1, 2))
    assert rebuilt(Scoped(("j",), inner), _doubled) == Scoped(("j",), doubled)


def test_rebuilt_leaves_a_tensor_or_a_delta_as_it_stands():
    x, d = Factor("x", ("i",)), Delta("i", "j")
    assert rebuilt(x, _doubled) is x
    assert rebuilt(d, _doubled) is d


def test_renamed_renames_free_indices_at_depth_and_leaves_a_sums_bound_ones():
    # tanh(sum[k](W[i,k] * x[k]) + b[i]) with i -> a, k -> z: k is bound by the sum.
    term = _t(Call("tanh", group([
        _t(Scoped(("k",), group([_t(Factor("W", ("i", "k")), Factor("x", ("k",)))]))),
        _t(Factor("b", ("i",)))])))
    expected = _t(Call("tanh", group([
        _t(Scoped(("k",), group([_t(Factor("W", ("a", "k")), Factor("x", ("k",)))]))),
        _t(Factor("b", ("a",)))])))
    assert renamed(term, {"i": "a", "k": "z"}) == expected


def test_substituted_replaces_scalar_tensors_inside_nodes_only():
    # u * (1 - u[i] * u)^2 with the scalar u -> h[j]: the indexed u[i] is another tensor.
    term = _t(Factor("u"), Power(group([_t(), _t(Factor("u", ("i",)), Factor("u"), c=-1)]), Fraction(2)))
    expected = _t(Factor("h", ("j",)),
                  Power(group([_t(), _t(Factor("u", ("i",)), Factor("h", ("j",)), c=-1)]), Fraction(2)))
    assert substituted(term, {"u": Factor("h", ("j",))}) == expected
