"""Matrix notation in: ``einsgrad.matrix("L = 0.5 * norm(tanh(X @ W.T + b) - T)^2", b=1)``.

The text (:mod:`einsgrad.matrix_parser`) is typed (:mod:`einsgrad.matrix_types`), then written
as the index program it means, one statement per statement, and read by
:func:`einsgrad.program`: the result is that :class:`~einsgrad.programs.Program`, so
``print(m)`` shows the index program that runs. Indices are given top down: a statement's
output gets ``i, j``, each contraction a fresh index; ``A @ B`` at ``[i,j]`` is ``A[i,k] *
B[k,j]``, ``.T`` swaps the indices its operand gets, ``tr(M)`` gives ``M`` the indices ``[i,i]``.
A product's contracted index is summed over the product's term where the program's rule
(an index not on the left is summed over its term) reads it so, and inside a function, a power
or a parenthesis by a scoped ``sum[k](...)``: ``tanh(X @ W.T + b)`` is
``tanh(sum[k](X[i,k] * W[j,k]) + b[j])``.
"""

from __future__ import annotations

from fractions import Fraction
from typing import NamedTuple

from .algebra import CANONICAL_LETTERS, Delta, Factor, Fresh, Term, fresh_name
from .errors import EinsumSpecError
from .expressions import (Call, Power, Scoped, Statement, ambiguous_index, group, group_inside, rebuilt,
                          renamed, term_free)
from .matrix_parser import (Applied, Literal, Negated, Node, Operation, Raised, Symbol, Transposed,
                            parse_matrix)
from .matrix_types import Checker, MatrixType, declared_types
from .program_parser import coefficient_problem
from .programs import Program, program

__all__ = ["matrix", "index_program"]


class Summand(NamedTuple):
    """A term of an expression being written, with the indices still to be summed over it."""

    term: Term
    pending: frozenset[str] = frozenset()


def matrix(text: str, **ranks_or_shapes) -> Program:
    """The index program that matrix text means, as a :class:`~einsgrad.programs.Program`.

    Reads ``@`` (the matrix product), ``.T`` and ``'`` (transpose), ``* /`` (elementwise, as
    numpy), ``+ -``, ``^`` and ``**`` with a number, parentheses, the elementwise functions
    ``exp log tanh sigmoid relu sin cos sqrt abs softplus``, and ``sum`` (of every entry),
    ``tr``, ``norm`` (Frobenius for a matrix, 2-norm for a vector) and ``diag`` (numpy's). Several
    statements (``A = ...`` one a line, or ``;``) read earlier ones; the last is the output and
    may be a bare expression (named ``f``). A name's rank is its keyword's (``x=1``, or an example
    shape ``X=(256, 512)`` or ``X=array.shape``), else matrixcalculus.org's convention:
    ``a``-``g`` scalars, ``h``-``z`` vectors, capitals matrices (see
    :mod:`einsgrad.matrix_types` for vectors, ``@`` and broadcasting).

    >>> print(matrix("f = x.T @ A @ x"))
    f = x[i] * A[i,j] * x[j]
    >>> print(matrix("L = norm(X @ w - y)^2").grad("w"))
    t[i] = X[i,j] * w[j]
    dw[j] = 2 * (t[i] - y[i]) * X[i,j]
    """
    index_text = index_program(text, **ranks_or_shapes)
    try:
        return program(index_text)
    except EinsumSpecError as error:  # a coefficient that like terms merge out of range, say
        raise EinsumSpecError(f"the index program it means, {index_text!r}, is refused: {error.reason}",
                              text, 0) from None


def index_program(text: str, **ranks_or_shapes) -> str:
    """The text of the index program that ``text`` means (see :func:`matrix`).

    >>> index_program("Y = X @ W.T + b", b=1)
    'Y[i,j] = X[i,k] * W[j,k] + b[j]'
    """
    statements = parse_matrix(text)
    checker = Checker(text, declared_types(ranks_or_shapes))
    types = [checker.statement(s) for s in statements]
    _check_declared_names(ranks_or_shapes, checker, text)
    taken = {*checker.inputs, *checker.defined}
    written = []
    for assignment, found in zip(statements, types):
        name = assignment.name if assignment.name is not None else fresh_name("f", taken)
        written.append(str(_Writer(text, checker, taken).statement(name, assignment.expression, found)))
    return "\n".join(written)


def _check_declared_names(declared, checker: Checker, text: str) -> None:
    unused = [n for n in declared if n not in checker.inputs and n not in checker.defined]
    if unused:
        raise EinsumSpecError(f"{', '.join(f'{n}=' for n in unused)} declared, but the text has no "
                              f"{' or '.join(map(repr, unused))}", text)


class _Writer:
    """One statement's index expression, top down: each node with the indices its parent gives."""

    def __init__(self, text: str, checker: Checker, taken):
        self.text = text
        self.checker = checker
        self.taken = set(taken)
        self.fresh = Fresh(taken, CANONICAL_LETTERS)

    def statement(self, name: str, node: Node, found: MatrixType) -> Statement:
        output = tuple(self.fresh.take() for _ in range(found.rank))
        kept = set(output)
        terms = []
        for s in self.write(node, output):
            needs_scope = s.pending and ambiguous_index(s.term, kept) is not None
            terms.append(_scoped(s) if needs_scope else s.term)
        return Statement(name, output, _in_reading_order(terms, output, self.taken))

    def rank(self, node: Node) -> int:
        return self.checker.of(node).rank

    def write(self, node: Node, idx: tuple[str, ...]) -> list[Summand]:
        """``node`` as summands over ``idx`` (one index per axis; repeated for a diagonal)."""
        if isinstance(node, Literal):
            return [Summand(Term(node.value, ()))]
        if isinstance(node, Symbol):
            return [Summand(Term(Fraction(1), (Factor(node.name, idx),)))]
        if isinstance(node, Negated):
            return [Summand(Term(-s.term.coefficient, s.term.factors), s.pending) for s in self.write(node.operand, idx)]
        if isinstance(node, Transposed):
            return self.write(node.operand, idx[::-1])
        if isinstance(node, Raised):
            return self.raised(node, idx)
        if isinstance(node, Applied):
            return self.applied(node, idx)
        if node.op == "@":
            return self.matmul(node, idx)
        left = self.write(node.left, idx[len(idx) - self.rank(node.left):])
        right = self.write(node.right, idx[len(idx) - self.rank(node.right):])
        if node.op == "+":
            return left + right
        if node.op == "-":
            return left + [Summand(Term(-s.term.coefficient, s.term.factors), s.pending) for s in right]
        if node.op == "*":
            return [self.product(left, right, node.column)]
        return [self.quotient(left, right, node.column)]

    def matmul(self, node: Operation, idx) -> list[Summand]:
        a, b = self.checker.of(node.left), self.checker.of(node.right)
        if a.rank == 1 and b.rank == 1 and not a.row and b.row:  # x yᵀ: nothing summed
            return [self.product(self.write(node.left, idx[:1]), self.write(node.right, idx[1:]), node.column)]
        k = self.fresh.take()
        left_idx = (*idx[:a.rank - 1], k)
        right_idx = (k, *idx[a.rank - 1:])
        product = self.product(self.write(node.left, left_idx), self.write(node.right, right_idx), node.column)
        return [_contracted(Summand(product.term, product.pending | {k}))]

    def raised(self, node: Raised, idx) -> list[Summand]:
        if isinstance(node.base, Applied) and node.base.function == "norm" and node.exponent == 2 \
                and self.rank(node.base.argument):
            return self.squares(node.base.argument)  # ‖e‖² as Σ e², not through a square root
        base = self.write(node.base, idx)
        if node.exponent == 1:
            return base
        constant = _constant(base)
        if constant is not None:
            if node.exponent.denominator != 1 or (constant == 0 and node.exponent < 0):
                raise EinsumSpecError("this power of a number is not a rational number", self.text, node.column)
            return [Summand(Term(self.checked(constant ** int(node.exponent), node.column), ()))]
        return [Summand(Term(Fraction(1), (Power(group(_closed(base)), node.exponent),)))]

    def applied(self, node: Applied, idx) -> list[Summand]:
        f, argument = node.function, node.argument
        rank = self.rank(argument)
        if f == "sum":
            over = self.take(rank)
            return _summed(self.write(argument, over), over)
        if f == "tr":
            i = self.fresh.take()
            return _summed(self.write(argument, (i, i)), (i,))
        if f == "diag" and rank == 1:
            vector = self.write(argument, idx[:1])
            if idx[0] == idx[1]:
                return vector
            return [self.product(vector, [Summand(Term(Fraction(1), (Delta(*idx),)))], node.column)]
        if f == "diag":
            return self.write(argument, (idx[0], idx[0]))
        if f == "norm":
            if rank == 0:
                return _called("abs", self.write(argument, ()))
            return _called("sqrt", self.squares(argument))
        return _called(f, self.write(argument, idx))

    def squares(self, node: Node) -> list[Summand]:
        """``Σ e²`` over every entry of ``node``."""
        over = self.take(self.rank(node))
        square = Term(Fraction(1), (Power(group(_closed(self.write(node, over))), Fraction(2)),))
        return _summed([Summand(square)], over)

    def take(self, count: int) -> tuple[str, ...]:
        return tuple(self.fresh.take() for _ in range(count))

    def product(self, left: list[Summand], right: list[Summand], column: int) -> Summand:
        a, b = _one(left), _one(right)
        coefficient = self.checked(a.term.coefficient * b.term.coefficient, column)
        return _contracted(Summand(Term(coefficient, a.term.factors + b.term.factors), a.pending | b.pending))

    def quotient(self, left: list[Summand], right: list[Summand], column: int) -> Summand:
        constant = _constant(right)
        if constant == 0:
            raise EinsumSpecError("division by zero", self.text, column)
        if constant is not None:
            a = _one(left)
            return Summand(Term(self.checked(a.term.coefficient / constant, column), a.term.factors), a.pending)
        inverse = Summand(Term(Fraction(1), (Power(group(_closed(right)), Fraction(-1)),)))
        return self.product(left, [inverse], column)

    def checked(self, coefficient: Fraction, column: int) -> Fraction:
        problem = coefficient_problem(coefficient)
        if problem:
            raise EinsumSpecError(f"the product of this term's numbers {problem}", self.text, column)
        return coefficient


def _in_reading_order(terms, output, taken) -> tuple[Term, ...]:
    """``terms`` with the indices they sum renamed in the order they are read, after the
    output's, those a term sums before those a ``sum[...]`` binds (``(tanh(sum[k](X[i,k] *
    W[j,k]) + b[j]) - T[i,j])^2``, not in the order they were made). Every index of a statement
    is distinct, so one renaming at once captures nothing."""
    order: dict[str, None] = {}
    bound: set[str] = set()
    for t in terms:
        _reading(t, order, bound)
    fresh = Fresh(set(taken) | set(output), CANONICAL_LETTERS)
    ordered = [i for i in order if i not in bound] + [i for i in order if i in bound]
    mapping = {i: fresh.take() for i in ordered if i not in output}
    return tuple(_relabelled(t, mapping) for t in terms)


def _reading(term: Term, order: dict, bound: set) -> None:
    for f in term.factors:
        if isinstance(f, (Factor, Delta)):
            order.update(dict.fromkeys(f.indices))
            continue
        if isinstance(f, Scoped):
            bound.update(f.over)
        for t in group_inside(f).terms:
            _reading(t, order, bound)


def _relabelled(term: Term, mapping: dict) -> Term:
    """``term`` with ``mapping`` applied to every index, those a scoped sum binds too."""
    return Term(term.coefficient, tuple(_relabelled_node(f, mapping) for f in term.factors))


def _relabelled_node(node, mapping: dict):
    if isinstance(node, (Factor, Delta)):
        return node.renamed(mapping)
    if isinstance(node, Scoped):  # its indices in the order the new names were given
        given = list(mapping.values())
        over = tuple(sorted((mapping[i] for i in node.over), key=given.index))
        return Scoped(over, rebuilt(node.body, lambda t: _relabelled(t, mapping)))
    return rebuilt(node, lambda t: _relabelled(t, mapping))


def _constant(summands: list[Summand]) -> Fraction | None:
    """The number ``summands`` are, if they are one."""
    if len(summands) == 1 and not summands[0].term.factors:
        return summands[0].term.coefficient
    return None


def _scoped(s: Summand) -> Term:
    """A summand with its pending sums written as ``sum[...](...)``."""
    if not s.pending:
        return s.term
    over = tuple(i for i in term_free(s.term) if i in s.pending)
    assert len(over) == len(s.pending), "a summed index is held by its term"
    body = group([Term(Fraction(1), s.term.factors)])
    return Term(s.term.coefficient, (Scoped(over, body),))


def _closed(summands: list[Summand]) -> list[Term]:
    """Terms to go inside a node, where nothing is summed implicitly."""
    return [_scoped(s) for s in summands]


def _one(summands: list[Summand]) -> Summand:
    """Summands as one factor's worth: a term as it is, a sum parenthesized."""
    if len(summands) == 1:
        return summands[0]
    return Summand(Term(Fraction(1), (group(_closed(summands)),)))


def _summed(summands: list[Summand], over: tuple[str, ...]) -> list[Summand]:
    """``Σ_over`` of summands: term by term where each holds every index, else of the sum."""
    if all(set(over) <= set(term_free(s.term)) for s in summands):
        return [_contracted(Summand(s.term, s.pending | set(over))) for s in summands]
    whole = _one(summands)
    assert set(over) <= set(term_free(whole.term)), "a sum's indices are held by its summands"
    return [_contracted(Summand(whole.term, whole.pending | set(over)))]


def _contracted(s: Summand) -> Summand:
    """``s`` with each delta of its product that ties a summed index contracted: the index
    renamed to the other one (fresh names, so nothing is captured), the delta dropped. A
    delta of two kept indices stays (``diag(x)`` is ``x[i] * delta[i,j]``)."""
    term, pending = s.term, set(s.pending)
    while True:
        delta = next((f for f in term.factors if isinstance(f, Delta)
                      and (f.p in pending or f.q in pending or f.p == f.q)), None)
        if delta is None:
            return Summand(term, frozenset(pending))
        gone, kept = (delta.q, delta.p) if delta.q in pending else (delta.p, delta.q)
        rest = tuple(f for f in term.factors if f is not delta)
        term = renamed(Term(term.coefficient, rest), {gone: kept})
        if gone != kept:
            pending.discard(gone)


def _called(function: str, summands: list[Summand]) -> list[Summand]:
    return [Summand(Term(Fraction(1), (Call(function, group(_closed(summands))),)))]
