"""A sum of monomials written as their common factor times a sum, as a person factors it.

A Hessian's products over one diagonal come out of reverse mode as several terms: ``q[i] *
tanh(x[i])^3`` by ``x`` chains ``6 q t t1² δ - 6 q t³ t1 δ`` (``t1 = 1 - t²``), which a textbook
writes as one, ``6 q t t1 (1 - 2 t²) δ``. :func:`common_factored` pulls out what every term
holds and leaves the rest in parentheses; :mod:`einsgrad.cancellation` calls it on a Hessian's
statements. Pure: no numpy.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from typing import Callable

from .algebra import Delta, Factor, Term
from .expressions import every_index, group
from .monomials import Monomial, merged, written


def common_factored(monomials, output, shortened: Callable) -> list[Monomial]:
    """The monomials as their common factor times the sum of what is left, that sum
    ``shortened`` (``(monomials, output) -> monomials``: the forward's sums written out where
    that is shorter): ``6 q t t1² δ - 6 q t³ t1 δ`` is ``6 q t t1 (1 - 2 t²) δ`` (``t1 = 1 -
    t²``). The same list (the very object) where nothing is factored. The common factor is every atom that all of
    them hold, each to its least power, their deltas, and the coefficients' greatest common
    divisor (negative where all are). Summed indices are named alike first (:func:`aligned`),
    and the common factor must hold each of them in a tensor, so that the sum stays outside
    the parentheses. The same list where they are fewer than two, have other deltas
    (``Diag(p) - p pᵀ`` stays two terms) or share no atom."""
    if len(monomials) < 2:
        return monomials
    monomials_given, monomials = monomials, aligned(monomials, output)
    if monomials is None:
        return monomials_given
    deltas = [frozenset(a for a, _ in m.powers if isinstance(a, Delta)) for m in monomials]
    if len(set(deltas)) > 1:
        return monomials_given
    powers = [dict(m.powers) for m in monomials]
    common = {a: min(p[a] for p in powers) for a in powers[0]
              if not isinstance(a, Delta) and all(a in p for p in powers)}
    summed = (monomials[0].indices() | monomials[0].held) - set(output)
    if not common or not summed <= {i for a in common if isinstance(a, Factor) for i in a.indices}:
        return monomials_given
    numerators = [abs(m.coefficient.numerator) for m in monomials]
    denominators = [m.coefficient.denominator for m in monomials]
    coefficient = Fraction(math.gcd(*numerators), math.lcm(*denominators))
    if all(m.coefficient < 0 for m in monomials):
        coefficient = -coefficient
    factor = Monomial(coefficient, tuple(common.items()), frozenset())
    inverse = Monomial(1 / coefficient, tuple((a, -e) for a, e in common.items()), frozenset())
    left = [Monomial(m.coefficient, tuple((a, e) for a, e in m.powers if not isinstance(a, Delta)), m.held)
            .times(inverse) for m in monomials]
    every = tuple(output) + tuple(sorted(summed))  # inside the parentheses nothing is summed
    left = shortened(merged(left, every), every)
    if not left:
        return monomials_given
    held = frozenset().union(*(m.held for m in monomials))
    inner = left[0] if len(left) == 1 else Monomial(Fraction(1), ((group(written(left, every)), Fraction(1)),),
                                                    frozenset())
    return [factor.times(inner).times(Monomial(Fraction(1), tuple((d, Fraction(1)) for d in sorted(
        deltas[0], key=lambda d: d.indices)), held))]


MAX_ALIGNED = 3
"""The most summed indices of a monomial that :func:`aligned` tries every naming of."""


def aligned(monomials, output) -> list[Monomial] | None:
    """The monomials with their summed indices named as the first one's, each by the naming
    under which it shares the most atoms with the first (``Σ_b X[b,k] a[b]`` and ``Σ_r X[r,k]
    c[r]`` share ``X[b,k]``); None where they sum over different numbers of indices, over
    more than :data:`MAX_ALIGNED`, or where a name would be one a scoped sum binds."""
    kept = set(output)
    first = sorted((monomials[0].indices() | monomials[0].held) - kept)
    if len(first) > MAX_ALIGNED:
        return None
    atoms = {a for a, _ in monomials[0].powers}
    result = [monomials[0]]
    for m in monomials[1:]:
        mine = sorted((m.indices() | m.held) - kept)
        bound = set().union(*(every_index(Term(Fraction(1), (a,))) for a, _ in m.powers)) - set(mine) - kept
        if len(mine) != len(first) or bound & set(first):  # a scoped sum's own name: no capture
            return None
        if not mine:
            result.append(m)
            continue
        namings = (m.renamed(dict(zip(mine, order))) for order in itertools.permutations(first))
        result.append(max(namings, key=lambda n: len(atoms & {a for a, _ in n.powers})))
    return result
