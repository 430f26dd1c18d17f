"""Statements -> steps: each a contraction (a polynomial of the algebra) or one elementwise function.

Every node of an expression (:mod:`einsgrad.expressions`) becomes a step of its own that names
its value over its free indices, so that what is left of each statement is a sum of products of
named tensors, one :class:`Contraction`: ``tanh(sum[k](X[i,k] * W[j,k]) + b[j])`` is::

    t[i,j] = X[i,k] * W[j,k]          (the scoped sum)
    t1[i,j] = t[i,j] + b[j]           (the group inside the call)
    A[i,j] = tanh(t1[i,j])            (an Elementwise step)

A small integer power of one tensor is that tensor repeated in the product (``u^2`` is
``u * u``), which the product rule differentiates as it does any product. Evaluation runs each
contraction as compiled einsums and each elementwise step as a numpy ufunc; the backward pass
(:mod:`einsgrad.backprop`) differentiates step by step. Pure: no numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Union

from .algebra import Delta, Factor, Fresh, Term, numbered
from .expressions import Call, Group, Power, Scoped, Statement, free, group, reads

MAX_REPEATED_POWER = 4
"""``u^n`` for ``2 <= n <=`` this is ``u`` repeated ``n`` times in a product."""

POWER = "pow"
"""The function of an :class:`Elementwise` step that raises to its ``exponent``."""


@dataclass(frozen=True)
class Contraction:
    """``name[indices] = Σ terms``: terms of tensors and deltas; ``witnesses`` give the sizes of
    indices no term holds (a constant cotangent), as a program's do."""

    name: str
    indices: tuple[str, ...]
    terms: tuple[Term, ...]
    witnesses: tuple[Factor, ...] = field(default=(), compare=False)

    def reads(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.name for t in self.terms for f in t.factors if not f.is_delta))


@dataclass(frozen=True)
class Elementwise:
    """``name[indices] = function(argument)``, the argument over the same indices in any order;
    ``exponent`` for :data:`POWER`."""

    name: str
    indices: tuple[str, ...]
    function: str
    argument: Factor
    exponent: Fraction | None = None

    def reads(self) -> tuple[str, ...]:
        return (self.argument.name,)

    def statement(self) -> Statement:
        """The step as a statement, which lowers back to this step."""
        base = group([Term(Fraction(1), (self.argument,))])
        node = Power(base, self.exponent) if self.function == POWER else Call(self.function, base)
        return Statement(self.name, self.indices, (Term(Fraction(1), (node,)),))


Step = Union[Contraction, Elementwise]


def as_statement(step: Step) -> Statement:
    if isinstance(step, Elementwise):
        return step.statement()
    return Statement(step.name, step.indices, step.terms, step.witnesses)


def lower(statements) -> tuple[Step, ...]:
    """The steps of ``statements``, in order; new steps are named ``t, t1, t2, ...`` (fresh)."""
    names = {s.name for s in statements} | {n for s in statements for n in reads(s.terms)}
    lowering = _Lowering(Fresh(names, ("t",), numbered))
    for s in statements:
        only = s.terms[0].factors[0] if len(s.terms) == 1 and len(s.terms[0].factors) == 1 else None
        if (isinstance(only, (Call, Power, Scoped, Group)) and s.terms[0].coefficient == 1
                and set(free(only)) == set(s.indices) and not _repeated(only)):
            lowering.node(only, s.name, s.indices)
        else:
            lowering.steps.append(Contraction(s.name, s.indices,
                                              tuple(lowering.term(t) for t in s.terms), s.witnesses))
    return tuple(lowering.steps)


def _repeated(node) -> bool:
    """Whether a small integer power, which lowers into a product of its base repeated."""
    return (isinstance(node, Power) and node.exponent.denominator == 1
            and 2 <= node.exponent <= MAX_REPEATED_POWER)


class _Lowering:
    def __init__(self, fresh: Fresh):
        self.fresh = fresh
        self.steps: list[Step] = []

    def term(self, term: Term) -> Term:
        """The term with each node replaced by the tensor of its step."""
        factors = []
        for f in term.factors:
            if isinstance(f, (Factor, Delta)):
                factors.append(f)
            elif _repeated(f):
                factors.extend([self.operand(f.base)] * int(f.exponent))
            else:
                factors.append(self.node(f))
        return Term(term.coefficient, tuple(factors))

    def node(self, node, name: str | None = None, indices=None) -> Factor:
        """The step (named ``name``, else fresh, after the steps it reads) that computes
        ``node`` over ``indices`` (by default its free ones in order); its tensor."""
        indices = free(node) if indices is None else tuple(indices)
        if _repeated(node):
            terms = (self.term(Term(Fraction(1), (node,))),)
        elif isinstance(node, (Call, Power)):
            argument = self.operand(node.argument if isinstance(node, Call) else node.base)
        else:
            terms = tuple(self.term(t) for t in (node.body if isinstance(node, Scoped) else node).terms)
        name = name or self.fresh.take()
        if _repeated(node) or not isinstance(node, (Call, Power)):
            self.steps.append(Contraction(name, indices, terms))
        elif isinstance(node, Power):
            self.steps.append(Elementwise(name, indices, POWER, argument, node.exponent))
        else:
            self.steps.append(Elementwise(name, indices, node.function, argument))
        return Factor(name, indices)

    def operand(self, body: Group) -> Factor:
        """A function's argument as one tensor over distinct indices: a tensor as it stands,
        anything else (a sum, a product, a diagonal ``A[i,i]``) a step of its own."""
        if len(body.terms) == 1 and body.terms[0].coefficient == 1 and len(body.terms[0].factors) == 1:
            only = body.terms[0].factors[0]
            if isinstance(only, Factor) and len(set(only.indices)) == len(only.indices):
                return only
            if isinstance(only, (Call, Power, Scoped, Group)):
                return self.node(only)
        return self.node(body)
