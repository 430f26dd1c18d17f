"""Index expressions beyond polynomials: elementwise functions, powers, scoped sums, statements.

A statement ``name[O] = Σ_T c_T Π F`` keeps the algebra's form: its terms are
:class:`~einsgrad.algebra.Term` values, and an index of a term not in ``O`` is summed over that
term. A factor is a tensor or a delta (:mod:`einsgrad.algebra`), or one of the nodes here:

- :class:`Group`, a parenthesized sum ``(a + b)`` taken elementwise;
- :class:`Call`, an elementwise function ``tanh(...)`` of a group;
- :class:`Power`, a group to a rational power (``u^2``; ``a / u`` is ``a * u^-1``);
- :class:`Scoped`, a sum over named indices ``sum[k](...)``.

Inside a node nothing is summed implicitly: a node is a tensor over its free indices
(:func:`free`), every term broadcast along those it lacks, and only ``sum[k]`` sums there. A
statement whose factors are all tensors and deltas is a polynomial, exactly today's
:class:`~einsgrad.programs.Program`. Pure: no numpy, no text reading.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, ClassVar, Mapping, Union

from .algebra import Delta, Factor, Term, decimal

DERIVATIVES = {
    "exp": "y",
    "log": "1 / u",
    "tanh": "1 - y^2",
    "sigmoid": "y * (1 - y)",
    "relu": "step(u)",
    "sin": "cos(u)",
    "cos": "-sin(u)",
    "sqrt": "0.5 / y",
    "abs": "sign(u)",
    "softplus": "sigmoid(u)",
    "step": "0",
    "sign": "0",
}
"""``f'`` of each elementwise function ``y = f(u)``, one rule a line, in the program language:
``u`` is the argument, ``y`` the value. ``step`` (the Heaviside function, 0 at 0) and ``sign``
are the derivatives of ``relu`` and ``abs``, and functions of their own."""

FUNCTIONS = frozenset(DERIVATIVES)
"""The elementwise functions a program may call."""

SUM = "sum"
"""The keyword of a scoped sum, ``sum[k](...)``."""


@dataclass(frozen=True)
class Group:
    """``(t_1 + t_2 + ...)``: a sum of terms taken elementwise (nothing summed inside)."""

    terms: tuple[Term, ...]
    is_delta: ClassVar[bool] = False


@dataclass(frozen=True)
class Call:
    """``function(argument)``, elementwise."""

    function: str
    argument: Group
    is_delta: ClassVar[bool] = False


@dataclass(frozen=True)
class Power:
    """``base ^ exponent``, elementwise; ``a / b`` is ``a * b^-1``."""

    base: Group
    exponent: Fraction
    is_delta: ClassVar[bool] = False


@dataclass(frozen=True)
class Scoped:
    """``sum[over](body)``: the body's terms summed over ``over``, elementwise otherwise."""

    over: tuple[str, ...]
    body: Group
    is_delta: ClassVar[bool] = False


Node = Union[Factor, Delta, Group, Call, Power, Scoped]
"""A factor of a term of a statement."""


@dataclass(frozen=True)
class Statement:
    """``name[indices] = Σ terms``; an index of a term not in ``indices`` is summed over it."""

    name: str
    indices: tuple[str, ...]
    terms: tuple[Term, ...]
    witnesses: tuple[Factor, ...] = field(default=(), compare=False, repr=False)
    """Tensors whose axes size the indices no term holds (a derived constant), printing nowhere."""

    def __str__(self) -> str:
        return f"{Factor(self.name, self.indices)} = {sum_text(self.terms)}"

    @property
    def is_polynomial(self) -> bool:
        return all(is_polynomial(t) for t in self.terms)


def is_polynomial(term: Term) -> bool:
    """Whether every factor of ``term`` is a tensor or a delta."""
    return all(isinstance(f, (Factor, Delta)) for f in term.factors)


def group(terms) -> Group:
    return Group(tuple(terms))


def rebuilt(node: Node, on_term: Callable[[Term], Term]) -> Node:
    """``node`` with ``on_term`` applied to each term of the group inside it, its own parts
    (function, exponent, summed indices) kept: the one place that knows how each node is put
    together, for every rewrite that walks into nodes. A tensor or a delta, holding no terms,
    stands as it is."""
    if isinstance(node, Group):
        return group(on_term(t) for t in node.terms)
    if isinstance(node, Call):
        return Call(node.function, rebuilt(node.argument, on_term))
    if isinstance(node, Power):
        return Power(rebuilt(node.base, on_term), node.exponent)
    if isinstance(node, Scoped):
        return Scoped(node.over, rebuilt(node.body, on_term))
    return node


# -- indices ---------------------------------------------------------------------------------


def free(node: Node) -> tuple[str, ...]:
    """The indices ``node`` is a tensor over, in order of first appearance."""
    if isinstance(node, (Factor, Delta)):
        return tuple(dict.fromkeys(node.indices))
    if isinstance(node, Group):
        return tuple(dict.fromkeys(i for t in node.terms for i in term_free(t)))
    if isinstance(node, Call):
        return free(node.argument)
    if isinstance(node, Power):
        return free(node.base)
    return tuple(i for i in free(node.body) if i not in node.over)


def term_free(term: Term) -> tuple[str, ...]:
    """The indices of a term's factors (nodes: their free indices), in order."""
    return tuple(dict.fromkeys(i for f in term.factors for i in free(f)))


def elementwise_in(index: str, node: Node) -> bool:
    """Whether ``index`` is used elementwise in ``node``: no term of a group holds it in two
    factors (a product summed over it, recursively), so that where one writes its sum would
    change no meaning a reader could intend (``(A[b,j] - T[b,j])^2``, ``sqrt(1 + x[i]^2)``)."""
    if isinstance(node, (Factor, Delta)):
        return True
    if isinstance(node, Group):
        for t in node.terms:
            holders = [f for f in t.factors if index in free(f)]
            if len(holders) > 1 or (holders and not elementwise_in(index, holders[0])):
                return False
        return True
    if isinstance(node, Call):
        return elementwise_in(index, node.argument)
    if isinstance(node, Power):
        return elementwise_in(index, node.base)
    return elementwise_in(index, node.body)


def ambiguous_index(term: Term, kept) -> tuple[str, Node] | None:
    """An index of ``term`` (not in ``kept``) whose sum could go inside or outside a node: one
    that no tensor or delta of the term holds directly, and that some node holding it does not
    use elementwise (``tanh(X[i,k] * W[j,k])`` for ``k``). Returns the index and that node,
    or None. Used elementwise everywhere, it is summed over the term, as a tensor's index is
    (``tanh(x[i]) * (u[i] + 1)`` sums ``i`` outside)."""
    direct = {i for f in term.factors if isinstance(f, (Factor, Delta)) for i in f.indices}
    for index in term_free(term):
        if index in kept or index in direct:
            continue
        for node in term.factors:
            if index in free(node) and not elementwise_in(index, node):
                return index, node
    return None


def readings(term: Term, index: str, node: Node) -> tuple[str, str]:
    """The two readings of an ambiguous index: summed inside the node (over each term there
    that holds it, as the rule for a statement's terms reads), and summed outside, over the
    whole term."""
    inside = Term(term.coefficient, tuple(_summed_inside(f, index) if f is node else f
                                          for f in term.factors))
    outside = Term(Fraction(1), (Scoped((index,), group([term])),))
    return term_text(inside), term_text(outside)


def _summed_inside(node: Node, index: str) -> Node:
    return rebuilt(node, lambda t: _term_summed_inside(t, index))


def _term_summed_inside(term: Term, index: str) -> Term:
    """A term of a group with its sum over ``index`` taken inside: around the whole term where
    two factors (or a tensor or a delta) hold it, else inside the one node that does."""
    holders = [f for f in term.factors if index in free(f)]
    if not holders:
        return term
    if len(holders) > 1 or isinstance(holders[0], (Factor, Delta)):
        inner = group([Term(Fraction(1), term.factors)])
        return Term(term.coefficient, (Scoped((index,), inner),))
    return Term(term.coefficient, tuple(_summed_inside(f, index) if f is holders[0] else f
                                        for f in term.factors))


# -- rewriting -------------------------------------------------------------------------------


def substituted(term: Term, tensors: Mapping[str, Factor]) -> Term:
    """``term`` with each scalar tensor named in ``tensors`` replaced by the factor given (the
    ``u`` and ``y`` of a rule of :data:`DERIVATIVES`)."""
    return Term(term.coefficient, tuple(_substituted(f, tensors) for f in term.factors))


def _substituted(node: Node, tensors) -> Node:
    if isinstance(node, Factor) and not node.indices:
        return tensors.get(node.name, node)
    return rebuilt(node, lambda t: substituted(t, tensors))


def inlined(term: Term, definitions: Mapping[str, tuple[tuple[str, ...], Term]]) -> Term:
    """``term`` with each tensor ``D[K]`` defined in ``definitions`` as ``D[I] = c * F`` (no
    index summed) replaced by ``c * F`` with ``I`` renamed to ``K``; factors with a negative
    power moved last, so that the term prints as a quotient."""
    coefficient, factors = term.coefficient, []
    for f in term.factors:
        if isinstance(f, Factor) and f.name in definitions:
            indices, definition = definitions[f.name]
            replacement = renamed(definition, dict(zip(indices, f.indices)))
            coefficient *= replacement.coefficient
            factors.extend(replacement.factors)
        else:
            factors.append(rebuilt(f, lambda t: inlined(t, definitions)))
    negative = [f for f in factors if isinstance(f, Power) and f.exponent < 0]
    return Term(coefficient, tuple(f for f in factors if f not in negative) + tuple(negative))


def reads(terms) -> list[str]:
    """The tensors ``terms`` read, once per occurrence, inside nodes too."""
    found = []
    for t in terms:
        for f in t.factors:
            if isinstance(f, Factor):
                found.append(f.name)
            elif not isinstance(f, Delta):
                found.extend(reads(group_inside(f).terms))
    return found


def group_inside(node: Node) -> Group:
    """The group inside a function, a power or a scoped sum; a group is its own."""
    if isinstance(node, Call):
        return node.argument
    if isinstance(node, Power):
        return node.base
    if isinstance(node, Scoped):
        return node.body
    return node


def renamed(term: Term, mapping: Mapping[str, str]) -> Term:
    """``term`` with its indices renamed at once, inside nodes too (bound ones aside)."""
    return Term(term.coefficient, tuple(_renamed(f, mapping) for f in term.factors))


def _renamed(node: Node, mapping) -> Node:
    if isinstance(node, (Factor, Delta)):
        return node.renamed(mapping)
    if isinstance(node, Scoped):
        mapping = {k: v for k, v in mapping.items() if k not in node.over}
    return rebuilt(node, lambda t: renamed(t, mapping))


def every_index(term: Term) -> set[str]:
    """Every index name in ``term``, the bound ones of scoped sums too (names a fresh one must avoid)."""
    found: set[str] = set()

    def visit(t: Term) -> Term:
        for f in t.factors:
            if isinstance(f, (Factor, Delta)):
                found.update(f.indices)
            else:
                found.update(getattr(f, "over", ()))
                rebuilt(f, visit)
        return t
    visit(term)
    return found


# -- text ------------------------------------------------------------------------------------


def sum_text(terms) -> str:
    """``t_1 + t_2 - t_3``, as the parser reads it back; ``0`` for no terms."""
    parts = []
    for n, t in enumerate(terms):
        body = term_text(Term(abs(t.coefficient), t.factors))
        sign = "-" if t.coefficient < 0 else "+"
        parts.append((sign if sign == "-" else "") + body if n == 0 else f" {sign} {body}")
    return "".join(parts) or "0"


def term_text(term: Term) -> str:
    """``c * F * G / H``: the number first, the factors after it, those with a negative power
    at the end after a ``/`` (elsewhere ``H^-1``), so that the text reads back as the term."""
    factors = list(term.factors)
    over = []
    while factors and isinstance(factors[-1], Power) and factors[-1].exponent < 0:
        over.insert(0, factors.pop())
    body = [node_text(f) for f in factors]
    c = term.coefficient
    if c != 1 or not body:
        body.insert(0, number_text(c))
    text = " * ".join(body)
    for f in over:
        text += " / " + node_text(Power(f.base, -f.exponent))
    return text


def node_text(node: Node) -> str:
    if isinstance(node, (Factor, Delta)):
        return str(node)
    if isinstance(node, Group):
        return f"({sum_text(node.terms)})"
    if isinstance(node, Call):
        return f"{node.function}({sum_text(node.argument.terms)})"
    if isinstance(node, Scoped):
        return f"{SUM}[{','.join(node.over)}]({sum_text(node.body.terms)})"
    base = node.base.terms
    atom = (node_text(base[0].factors[0]) if len(base) == 1 and base[0].coefficient == 1
            and len(base[0].factors) == 1 and not isinstance(base[0].factors[0], Power)
            else f"({sum_text(base)})")
    return atom if node.exponent == 1 else f"{atom}^{_exponent_text(node.exponent)}"


def number_text(value: Fraction) -> str:
    """A number as the parser reads it back: a decimal, or ``p/q`` (:func:`algebra.decimal`)."""
    return decimal(value)


def _exponent_text(value: Fraction) -> str:
    text = decimal(value)
    return text if "/" not in text else f"({text})"
