"""A term's operands as matrix notation reads them: its deltas contracted, powers of a base joined.

A Hessian chained through a delta-bearing cotangent has terms such as ``t[i] q[i] δ[j,i]
t[j]^-2.5 t[j]``: a diagonal the einsum would take as ``"i,i,i,i->ii"``, which no rule of
:mod:`einsgrad.matrix_forms` reads, since its operands are four. Read as a person reads it,
every operand is over ``i`` (the delta ties ``j`` to it), ``t ∘ t^∘(-2.5) ∘ t`` is
``t^∘(-0.5)``, and the term is ``Diag(q ∘ t^∘(-0.5))``. This module does the first two steps
on the algebra's values; the writer (:mod:`einsgrad.matrix_statements`) merges what is left
over one index into an entrywise product and renders it. Pure: no numpy, no text.
"""

from __future__ import annotations

from fractions import Fraction
from typing import NamedTuple

from .algebra import Delta, Factor, Term, contract_deltas, without_deltas
from .expressions import Group, Node, Power, free, group, renamed


class Operand(NamedTuple):
    """One tensor or node of a term, read over ``labels`` (its free indices, in order, after
    the term's deltas are contracted: two may coincide, a diagonal)."""

    node: Node
    labels: tuple[str, ...]


class TermOperands(NamedTuple):
    """A term's operands and the deltas left, each tying two output indices (or ``δ(p,p)``, a
    summed index no operand holds: the term counts a size)."""

    operands: tuple[Operand, ...]
    deltas: tuple[Delta, ...]


def term_operands(term: Term, output: tuple[str, ...]) -> TermOperands:
    """``term``'s operands over ``output`` with its deltas contracted: a summed index renamed
    to the other side of its delta (``Σ_k δ(i,k) A[k,j] = A[i,j]``) and two output indices a
    delta ties read as one, the first in ``output`` (``q[i] δ[j,i] sin(x[j])`` holds ``q`` and
    ``sin(x)`` over ``i``); then powers of one base over the same labels joined
    (:func:`joined_powers`)."""
    nodes = [f for f in term.factors if not isinstance(f, Delta)]
    proxies = [Factor(f"#{n}", f.indices if isinstance(f, Factor) else free(f)) for n, f in enumerate(nodes)]
    contracted = contract_deltas([*proxies, *(f for f in term.factors if isinstance(f, Delta))], output)
    tensors, _ = without_deltas(Term(Fraction(1), contracted), output)
    operands = tuple(Operand(node, t.indices) for node, t in zip(nodes, tensors))  # contracting keeps order
    return TermOperands(joined_powers(operands), tuple(f for f in contracted if f.is_delta))


def joined_powers(operands: tuple[Operand, ...]) -> tuple[Operand, ...]:
    """Operands that are powers of one base over the same labels as one power, where one of
    them is a reciprocal or a root (``t ∘ t^∘(-2.5) ∘ t`` is ``t^∘(-0.5)``), placed where the
    first was. Positive integer powers alone stay apart, a product the writer reads as it
    stands (``x ∘ x``, ``xᵀ x``); so do powers whose exponents sum to 0 (a constant 1, which
    would lose the labels it holds)."""
    keys = [_base_key(o) for o in operands]
    exponents: dict[tuple, Fraction] = {}
    groups: dict[tuple, list[int]] = {}
    for n, (key, o) in enumerate(zip(keys, operands)):
        exponents[key] = exponents.get(key, Fraction(0)) + _exponent(o.node)
        groups.setdefault(key, []).append(n)
    joined, dropped = {}, set()
    for key, members in groups.items():
        powers = [_exponent(operands[n].node) for n in members]
        if len(members) > 1 and exponents[key] != 0 and any(e < 0 or e.denominator != 1 for e in powers):
            first = operands[members[0]]
            joined[members[0]] = Operand(Power(_base(first.node), exponents[key]), first.labels)
            dropped.update(members[1:])
    return tuple(joined.get(n, o) for n, o in enumerate(operands) if n not in dropped)


def _exponent(node: Node) -> Fraction:
    return node.exponent if isinstance(node, Power) else Fraction(1)


def _base(node: Node) -> Group:
    """What ``node`` is a power of: a power's base, a group itself, else the node alone."""
    if isinstance(node, (Power, Group)):
        return node.base if isinstance(node, Power) else node
    return group([Term(Fraction(1), (node,))])


def _base_key(operand: Operand) -> tuple:
    """Equal for operands that are powers of one base read over the same labels: the base with
    its free indices named by position, and the labels."""
    base = _base(operand.node)
    positions = {i: f"#{n}" for n, i in enumerate(free(base))}
    canonical = tuple(renamed(t, positions) for t in base.terms)
    return canonical, operand.labels
