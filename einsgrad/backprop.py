"""Reverse mode through a program's steps: each statement's gradient, by hand's rules.

For ``L`` the last step, the cotangent ``dS = ∂L/∂S`` of every step ``S`` on a path to the
tensor differentiated is one statement, computed once from the steps that read ``S``:

- a contraction ``T[O] = Σ c Π F`` adds, for each occurrence of ``S`` in it, the product rule's
  summand chained with ``dT`` (:func:`einsgrad.derivation.differentiate`: the occurrence
  replaced by Kronecker deltas, the deltas contracted, like terms merged);
- an elementwise step ``T = f(S)`` adds ``dT * f'(S)``, with ``f'`` the one-line rule of
  :data:`einsgrad.expressions.DERIVATIVES` (``tanh' = 1 - y^2``), ``S^e`` adding
  ``dT * e * S^(e-1)``.

The result is a program of statements: the forward steps the backward reads, then each
cotangent, then the gradient. Pure: no numpy.
"""

from __future__ import annotations

from collections import Counter
from fractions import Fraction
from functools import lru_cache

from .algebra import Factor, Term, fresh_name, simplify
from .derivation import differentiate
from .expressions import (DERIVATIVES, Group, Power, Statement, group, inlined, is_polynomial, reads,
                          renamed, substituted, term_free)
from .program_parser import parse_expression
from .program_steps import POWER, Contraction, as_statement


@lru_cache(maxsize=None)
def rule(function: str) -> tuple[Term, ...]:
    """``f'`` of ``y = f(u)`` as terms over the scalars ``u`` and ``y``."""
    return parse_expression(DERIVATIVES[function])


def backpropagate(steps, wrt: str, out: str, xs: tuple[str, ...], cotangent: str | None
                  ) -> tuple[Statement, ...]:
    """The statements of ``out[xs] = ∂L/∂wrt``, ``L`` the last step chained with the input
    ``cotangent`` (None: the last step is the scalar loss itself)."""
    names = {s.name for s in steps} | {n for s in steps for n in s.reads()} | {out}
    if cotangent:
        names.add(cotangent)
    relevant = {wrt}
    for s in steps:
        if relevant.intersection(s.reads()):
            relevant.add(s.name)
    indices = {s.name: s.indices for s in steps}
    indices[wrt] = xs
    contributions: dict[str, list[Term]] = {}
    backward = []
    last = steps[-1]
    for step in reversed(steps if last.name in relevant else ()):
        if step.name not in relevant:
            continue
        if step is last:
            dS = Factor(cotangent, step.indices) if cotangent else Fraction(1)
        else:
            terms = contributions.pop(step.name, [])
            merged = _cotangent(None, step.indices, terms, Factor(step.name, step.indices))
            dS = _alias(merged) or _constant(merged)
            if dS == 0:
                continue
            if dS is None:
                name = fresh_name("d" + step.name, names)
                names.add(name)
                backward.append(Statement(name, merged.indices, merged.terms, merged.witnesses))
                dS = Factor(name, step.indices)
        for name, terms in _pullback(step, dS, relevant, indices, names):
            contributions.setdefault(name, []).extend(terms)
    backward.append(_cotangent(out, xs, contributions.get(wrt, []), Factor(wrt, xs)))
    backward = _inlined(backward)
    return _needed(steps, backward) + tuple(backward)


def _pullback(step, dS: Factor | Fraction, relevant, indices, names):
    """``(name, terms)`` for each tensor ``step`` reads on a path to the tensor differentiated:
    its share of that tensor's cotangent, over ``indices[name]``. ``dS`` is the step's
    cotangent, a tensor or a number (the loss itself: 1)."""
    constant = dS if isinstance(dS, Fraction) else None
    scale = constant if constant is not None else Fraction(1)
    if isinstance(step, Contraction):
        for name in step.reads():
            if name in relevant:
                d = differentiate(step.terms, step.indices, name,
                                  cotangent=None if constant is not None else dS.name,
                                  result_indices=indices[name], names=names)
                yield name, [Term(scale * t.coefficient, t.factors) for t in d.terms]
        return
    u = step.argument
    if u.name not in relevant:
        return
    y = Factor(step.name, step.indices)
    if step.function == POWER:
        e = step.exponent
        local = ((Term(e, ()),) if e == 1 else (Term(e, (u,)),) if e == 2 else
                 (Term(e, (Power(group([Term(Fraction(1), (u,))]), e - 1),)),))
    else:
        local = tuple(substituted(t, {"u": u, "y": y}) for t in rule(step.function) if t.coefficient)
    if not local:
        return
    head = () if constant is not None else (dS,)
    if len(local) == 1:
        chained = (Term(scale * local[0].coefficient, head + local[0].factors),)
    else:
        chained = (Term(scale, head + (Group(local),)),)
    rename = dict(zip(u.indices, indices[u.name]))
    yield u.name, [renamed(t, rename) for t in chained]


def _cotangent(name, indices, terms, witness) -> Statement:
    """``name[indices] = Σ terms``, the polynomial terms merged as like terms."""
    polynomial = [t for t in terms if is_polynomial(t)]
    others = tuple(t for t in terms if not is_polynomial(t))
    return Statement(name, tuple(indices), simplify(tuple(indices), polynomial) + others, (witness,))


def _alias(statement: Statement) -> Factor | None:
    """The tensor a cotangent is, when it is one already computed, as indexed (``dA = dt``)."""
    terms = statement.terms
    if (len(terms) == 1 and terms[0].coefficient == 1 and len(terms[0].factors) == 1
            and isinstance(terms[0].factors[0], Factor)
            and terms[0].factors[0].indices == statement.indices):
        return terms[0].factors[0]
    return None


def _constant(statement: Statement) -> Fraction | None:
    """The number a cotangent is, when it is one (``dt = 0.5``; no terms: 0)."""
    if all(not t.factors for t in statement.terms):
        return sum((t.coefficient for t in statement.terms), Fraction(0))
    return None


def _inlined(backward: list[Statement]) -> list[Statement]:
    """The cotangents that are one factor over their own indices (nothing summed) written
    where they are read: a tensor renamed or broadcast (``dt1[j] = dt``) everywhere, a node
    (``1 / t``) where it is read once, so that no value is computed twice."""
    uses = Counter(name for s in backward for name in reads(s.terms))
    replaced: dict[str, tuple[tuple[str, ...], Term]] = {}
    kept = []
    for n, s in enumerate(backward):
        terms = tuple(inlined(t, replaced) for t in s.terms)
        only = terms[0] if len(terms) == 1 and len(terms[0].factors) == 1 else None
        if (n < len(backward) - 1 and only is not None and set(term_free(only)) <= set(s.indices)
                and (isinstance(only.factors[0], Factor) or uses[s.name] == 1)):
            replaced[s.name] = (s.indices, only)
            continue
        kept.append(Statement(s.name, s.indices, terms, s.witnesses))
    return kept


def _needed(steps, backward) -> tuple[Statement, ...]:
    """The forward steps that the backward statements read, as statements, in order."""
    needed = {n for s in backward for n in reads(s.terms)}
    needed |= {w.name for s in backward for w in s.witnesses}
    kept = []
    for step in reversed(steps):
        if step.name in needed:
            kept.append(step)
            needed.update(step.reads())
    return tuple(as_statement(s) for s in reversed(kept))
