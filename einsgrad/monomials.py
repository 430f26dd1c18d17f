"""Monomials: products of atoms with rational powers, the values :mod:`einsgrad.cancellation`
computes with, and how they are written back as terms.

An atom is a tensor, a sum that does not expand (the base of a power), a function's value, a
scoped sum or a Kronecker delta (a Hessian's); ``E[b,j]^-1 * E[b,j]`` is the monomial ``1``.
Like monomials (equal up to the order of their atoms and the names of summed indices) merge.
Pure: no numpy.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from fractions import Fraction
from typing import Mapping, Union

from .algebra import Delta, Factor, Term, like_key
from .expressions import (Call, Group, Power, Scoped, every_index, free, group, node_text, renamed,
                          term_free)

Atom = Union[Factor, Delta, Group, Call, Scoped]
"""What a monomial is a product of powers of (a delta only as :func:`contracted` leaves it)."""


@dataclass(frozen=True)
class Monomial:
    """``coefficient * Π atom^exponent``; ``held``: every index its factors held before any
    cancelled, so that a sum left over an index that nothing holds any more (it would lose its
    count) is seen."""

    coefficient: Fraction
    powers: tuple[tuple[Atom, Fraction], ...]
    held: frozenset[str]

    def times(self, other: "Monomial") -> "Monomial":
        powers = dict(self.powers)
        for atom, e in other.powers:
            powers[atom] = powers.get(atom, Fraction(0)) + e
        return Monomial(self.coefficient * other.coefficient,
                        tuple((a, e) for a, e in powers.items() if e != 0), self.held | other.held)

    def renamed(self, mapping: Mapping[str, str]) -> "Monomial":
        return Monomial(self.coefficient, tuple((_renamed_atom(a, mapping), e) for a, e in self.powers),
                        frozenset(mapping.get(i, i) for i in self.held))

    def indices(self) -> set[str]:
        return {i for a, _ in self.powers for i in free(a)}


def _renamed_atom(atom: Atom, mapping) -> Atom:
    return renamed(Term(Fraction(1), (atom,)), mapping).factors[0]


def raised(node: Atom, exponent: Fraction = Fraction(1)) -> Monomial:
    """``node^exponent``, one atom."""
    return Monomial(Fraction(1), ((node, exponent),), frozenset(free(node)))


def over(m: Monomial, indices) -> Monomial:
    """``m`` as the value of a tensor over ``indices``, which it holds even where it is
    constant along some (a broadcast ``dS0[j] = q``): a sum over one still counts it."""
    return Monomial(m.coefficient, m.powers, m.held | frozenset(indices))


def lost(monomials, output) -> bool:
    """Whether a monomial is left with a sum over an index that none of its atoms holds."""
    return any((m.held - m.indices()) - set(output) for m in monomials)


def contracted(m: Monomial, output=None) -> Monomial | None:
    """``m`` with its deltas contracted: ``Σ_s δ(s,j) f(s) = f(j)`` for a summed index ``s``,
    and two indices of ``output`` a delta ties read as one (the first in ``output``) in every
    other atom, the delta kept once: ``δ(j,i) t[j]^-1.5 t[i]`` is ``δ(i,j) t[i]^-0.5``, whose
    powers then join. ``output`` None: every index is free (inside a group), the first by name
    stands for its class. None where a delta has a power that is no positive integer."""
    deltas = [(a, e) for a, e in m.powers if isinstance(a, Delta)]
    if not deltas:
        return m
    if any(e <= 0 or e.denominator != 1 for _, e in deltas):
        return None
    position = {o: n for n, o in enumerate(output)} if output is not None else None

    def rank(i):
        if position is None:
            return 0, 0, i
        return (0, position[i], i) if i in position else (1, 0, i)
    parent: dict[str, str] = {}

    def root(i):
        while parent.setdefault(i, i) != i:
            i = parent[i]
        return i
    for a, _ in deltas:
        p, q = root(a.p), root(a.q)
        if p != q:
            parent[max(p, q, key=rank)] = min(p, q, key=rank)
    mapping = {i: root(i) for i in parent if root(i) != i}
    kept = tuple(Delta(root(i), i) for i in sorted(parent, key=rank)
                 if root(i) != i and (position is None or i in position))
    held = frozenset(i if position is not None and i in position else mapping.get(i, i) for i in m.held)
    result = Monomial(m.coefficient, (), held)
    for a, e in m.powers:
        if not isinstance(a, Delta):
            result = result.times(Monomial(Fraction(1), ((_renamed_atom(a, mapping), e),), frozenset()))
    return result.times(Monomial(Fraction(1), tuple((d, Fraction(1)) for d in kept),
                                 frozenset(i for d in kept for i in d.indices)))


def opposite(a: Monomial, b: Monomial) -> bool:
    """Whether some atom has powers of opposite signs in ``a`` and ``b`` (they cancel)."""
    powers = dict(a.powers)
    return any(powers.get(atom, 0) * e < 0 for atom, e in b.powers)


def _key(m: Monomial, output) -> tuple:
    """Equal for monomials equal up to the order of atoms and the names of summed indices."""
    pseudo = []
    for atom, e in m.powers:
        indices = free(atom)
        if isinstance(atom, (Factor, Delta)):
            name, indices = atom.name, atom.indices
        else:
            name = node_text(_renamed_atom(atom, {i: f"#{n}" for n, i in enumerate(indices)}))
        pseudo.append(Factor(f"{name}^{e}", indices))
    return like_key(tuple(pseudo), tuple(output))


def merged(monomials, output=None) -> list[Monomial]:
    """Like terms merged (the first one's spelling kept), zeros dropped; ``output``: the
    indices not summed (None: within a group, where none is)."""
    merged: dict[tuple, Monomial] = {}
    for m in monomials:
        k = _key(m, tuple(sorted(m.indices() | m.held)) if output is None else output)
        if k in merged:
            old = merged[k]
            merged[k] = Monomial(old.coefficient + m.coefficient, old.powers, old.held | m.held)
        else:
            merged[k] = m
    return [m for m in merged.values() if m.coefficient != 0]


def written(monomials, output) -> tuple[Term, ...]:
    """The monomials as terms that print as a person writes them: the positive ones first, in
    each the factors over more of the output first and the divisors last, summed indices named
    by letters after the output's, a sum that only some factors hold written around them."""
    ordered = [m for m in monomials if m.coefficient > 0] + [m for m in monomials if m.coefficient < 0]
    return tuple(_scoped(_named(_term(m, output), output), output) for m in ordered)


def _term(m: Monomial, output) -> Term:
    kept = set(output)

    def place(n):  # divisors last, deltas before them, then the factors over more of the output first
        a, e = m.powers[n]
        return e < 0, isinstance(a, Delta), -len(kept & set(free(a))), n
    order = sorted(range(len(m.powers)), key=place)
    factors = []
    for n in order:
        atom, e = m.powers[n]
        if e == 1:
            factors.append(atom)
        else:
            factors.append(Power(atom if isinstance(atom, Group) else group([Term(Fraction(1), (atom,))]), e))
    return Term(m.coefficient, tuple(factors))


def _scoped(term: Term, output) -> Term:
    """``term`` with each sum that only some of its factors hold written around those
    factors: ``P[b,j] * y[b,k]`` is ``P[b,j] * sum[k](y[b,k])``, the factor ``Σy`` a person
    writes. A sum over all the factors stays implicit, as in a contraction."""
    summed = [i for i in term_free(term) if i not in output]
    factors = list(term.factors)
    while summed:
        index = summed[0]
        holders, over = set(), {index}
        while True:  # the factors joined to those by the sums they share
            grown = {n for n, f in enumerate(factors) if over & set(free(f))}
            if grown == holders:
                break
            holders = grown
            over = {i for n in holders for i in free(factors[n]) if i in summed}
        summed = [i for i in summed if i not in over]
        if len(holders) == len(factors):
            continue
        inner = [factors[n] for n in sorted(holders)]
        node = Scoped(tuple(i for i in term_free(Term(Fraction(1), tuple(inner))) if i in over),
                      group([Term(Fraction(1), tuple(inner))]))
        first = min(holders)
        factors = [node if n == first else f for n, f in enumerate(factors) if n == first or n not in holders]
    return Term(term.coefficient, tuple(factors))


def _named(term: Term, output) -> Term:
    """``term`` with its summed indices named apart (``#n``) given letters: those after the
    last letter of the output, then the others, skipping every index the term holds."""
    apart = [i for i in term_free(term) if i.startswith("#") and i not in output]
    if not apart:
        return term
    taken = every_index(term) | set(output)
    letters = [i for i in output if len(i) == 1 and i in string.ascii_lowercase]
    start = string.ascii_lowercase.index(max(letters)) + 1 if letters else string.ascii_lowercase.index("i")
    pool = (c for c in string.ascii_lowercase[start:] + string.ascii_lowercase[:start] if c not in taken)
    mapping = {}
    for i in apart:
        mapping[i] = next(pool, None) or i.replace("#", "s")
    return renamed(term, mapping)
