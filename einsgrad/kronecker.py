"""Kronecker forms: the Hessian by a matrix as a matrix, through ``vec`` and ``⊗``.

A Hessian by a matrix ``W`` has four indices, ``H[a,b,c,d] = ∂g_ab/∂W_cd`` (``g`` the
gradient), and no form as one matrix expression. Stacking columns (``vec``, column-major, as in
the Matrix Cookbook) makes it the matrix ``∂vec(g)/∂vec(W)ᵀ``, whose entry ``((b,a), (d,c))``
is ``H[a,b,c,d]`` (the column index the slow one). A term of ``H`` that splits into a factor
over ``(b,d)`` and one over ``(a,c)`` is then ``P ⊗ Q``; over ``(b,c)`` and ``(a,d)`` it is
``(P ⊗ Q) K``, with ``K`` the commutation matrix (``K vec(V) = vec(Vᵀ)``); over ``(a,b)`` and
``(c,d)`` it is ``vec(P) vec(Q)ᵀ``. ``P`` and ``Q`` are written by
:func:`~einsgrad.matrix_statements.statement_form`, so ``tr(Xᵀ A X)`` by ``X`` reads
``I ⊗ (A + Aᵀ)`` and ``‖X W − Y‖²`` by ``W`` reads ``2 (I ⊗ (Xᵀ X))``. Where a Hessian by a
matrix has no matrix form, the explanations print this one (:func:`vec_line`). Pure: no numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from fractions import Fraction
from typing import Mapping, Sequence

from .algebra import Delta, Factor, Term
from .expressions import Statement, free
from .matrix_statements import Rendering, StatementForm, statement_form
from .render import Piece, equals, juxt, prose, spaced

CONVENTION = ("the Hessian as the matrix ∂vec(gradient)/∂vec({name})ᵀ, vec stacking a matrix's "
              "columns, as in the Matrix Cookbook")
COMMUTATION = "K the commutation matrix, K vec(V) = vec(Vᵀ) for V shaped as {name}"


class _Pairing(Enum):
    """Which two of the Hessian's indices each side of a term holds, and how it is written."""

    KRONECKER = "P over (b,d), Q over (a,c): P ⊗ Q"
    COMMUTED = "P over (b,c), Q over (a,d): (P ⊗ Q) K"
    OUTER = "P over (a,b), Q over (c,d): vec(P) vec(Q)ᵀ"


def _sides(indices: tuple[str, ...]):
    a, b, c, d = indices
    return ((_Pairing.KRONECKER, (b, d), (a, c)), (_Pairing.COMMUTED, (b, c), (a, d)),
            (_Pairing.OUTER, (a, b), (c, d)))


def _factor_indices(factor) -> tuple[str, ...]:
    """A tensor's or a delta's indices, a node's free ones (``tanh(H[b,j])``)."""
    if isinstance(factor, Delta):
        return (factor.p, factor.q)
    if isinstance(factor, Factor):
        return factor.indices
    return free(factor)


def _components(term: Term, kept: set[str]) -> list[tuple[list, set[str]]]:
    """The term's factors in groups joined by the summed indices they share, each with the
    kept indices it holds."""
    groups: list[tuple[list, set[str], set[str]]] = []
    for factor in term.factors:
        own = set(_factor_indices(factor))
        summed = own - kept
        joined = [g for g in groups if g[2] & summed]
        factors, frees, sums = [factor], own & kept, set(summed)
        for g in joined:
            groups.remove(g)
            factors = g[0] + factors
            frees |= g[1]
            sums |= g[2]
        groups.append((factors, frees, sums))
    return [(factors, frees) for factors, frees, _ in groups]


@dataclass(frozen=True)
class _Split:
    """A term as ``s (P ⊗ Q)`` (or the pairing's other product): ``q`` holds the coefficient,
    ``s`` the groups of factors over no kept index (``tr(A)``, one scalar each)."""

    pairing: _Pairing
    p_indices: tuple[str, str]
    q_indices: tuple[str, str]
    p: Term
    q: Term
    s: tuple[Term, ...]


def _split(term: Term, indices: tuple[str, ...]) -> _Split | None:
    """``term`` as a factor over one pair of indices times one over the other pair, or None."""
    parts = _components(term, set(indices))
    if set().union(*(f for _, f in parts)) != set(indices):
        return None  # constant along an index: no Kronecker form of this reading
    for pairing, left, right in _sides(indices):
        if all(f <= set(left) or f <= set(right) for _, f in parts):
            p = [x for factors, f in parts if f and f <= set(left) for x in factors]
            q = [x for factors, f in parts if f and f <= set(right) for x in factors]
            scalars = tuple(Term(Fraction(1), tuple(factors)) for factors, f in parts if not f)
            return _Split(pairing, left, right, Term(Fraction(1), tuple(p)), Term(term.coefficient, tuple(q)), scalars)
    return None


def vec_form(statements: Sequence[Statement], name: str, lhs: Piece, named: frozenset[str] = frozenset(),
             names: Mapping[str, Piece] | None = None, nameable: frozenset[str] = frozenset()) -> StatementForm | None:
    """The Hessian ``statements[-1]`` (four indices: the gradient's two, then ``name``'s entry)
    as ``lhs = Σ c (P ⊗ Q) ...``, or None where a term does not split into two matrices."""
    result = statements[-1]
    indices = tuple(result.indices)
    if len(indices) != 4 or len(set(indices)) != 4:
        return None
    splits = []
    for term in result.terms:
        if term.coefficient == 0:
            continue
        split = _split(term, indices)
        if split is None:
            return None
        splits.append(split)
    if not splits:
        return None
    groups: dict[tuple, list[_Split]] = {}
    where: dict[str, Piece] = {}
    context = tuple(statements[:-1])

    def written(idx, terms) -> Piece | None:
        form = statement_form((*context, Statement(_SIDE, idx, tuple(terms))), _SIDE_PIECE, named, names, nameable)
        if form is None:
            return None
        for w in form.where:
            where.setdefault(w.text, w)
        return _body(form.equation)

    for split in splits:
        p = written(split.p_indices, [split.p])
        factors = [written((), [t]) for t in split.s]
        if p is None or None in factors:
            return None
        scalar = juxt([_wrapped(f) for f in factors]) if factors else None
        groups.setdefault((split.pairing, p.text, scalar and scalar.text), []).append((split, p, scalar))
    pieces, commuted = [], []
    for (pairing, _, _), members in groups.items():
        first, p, scalar = members[0]
        common = first.q.coefficient if all(m.q.coefficient == first.q.coefficient for m, _, _ in members) else Fraction(1)
        q = written(first.q_indices, [Term(m.q.coefficient / common, m.q.factors) for m, _, _ in members])
        if q is None:
            return None
        product = _written(pairing, p, q)
        if scalar is not None:
            product = juxt([scalar, _wrapped(product) if pairing is not _Pairing.OUTER else product])
        shown = _Pairing.OUTER if scalar is not None else pairing if pairing is _Pairing.OUTER else _Pairing.KRONECKER
        (commuted if pairing is _Pairing.COMMUTED else pieces).append((common, shown, product))
    if len(commuted) == 1:  # c (P ⊗ Q) K
        c, _, product = commuted[0]
        pieces.append((c, _Pairing.OUTER, _COMMUTATION if product.text == "I" else juxt([_wrapped(product), _COMMUTATION])))
    elif commuted:  # c (P₁ ⊗ Q₁ + P₂ ⊗ Q₂) K
        c = commuted[0][0] if len({c for c, _, _ in commuted}) == 1 else Fraction(1)
        inner = _signed([(d / c, shown, product) for d, shown, product in commuted])
        pieces.append((c, _Pairing.OUTER, juxt([_wrapped(inner), _COMMUTATION])))
    return StatementForm(equals(lhs, _signed(pieces)), tuple(where.values()))


_SIDE = "#side"  # the name a side is written under (no tensor's: not an identifier)
_SIDE_PIECE = Piece("#", "#")  # its left side; only the body after it is kept


def _body(equation: Piece) -> Piece:
    head = f"{_SIDE_PIECE.text} = "
    assert equation.text.startswith(head) and equation.latex.startswith(head)
    return Piece(equation.text[len(head):], equation.latex[len(head):])


def _wrapped(m: Piece) -> Piece:
    return m if " " not in m.text else Piece(f"({m.text})", rf"\left({m.latex}\right)")


_COMMUTATION = Piece("K", "K")


def _written(pairing: _Pairing, p: Piece, q: Piece) -> Piece:
    """``vec(P) vec(Q)ᵀ``, or ``P ⊗ Q`` (the commutation matrix is written after the sum)."""
    if pairing == _Pairing.OUTER:
        return Piece(f"vec({p.text}) vec({q.text})ᵀ",
                     rf"\operatorname{{vec}}\left({p.latex}\right) \operatorname{{vec}}\left({q.latex}\right)^\top")
    if p.text == q.text == "I":
        return p  # I ⊗ I is the identity of vec's size
    return Piece(f"{_wrapped(p).text} ⊗ {_wrapped(q).text}", rf"{_wrapped(p).latex} \otimes {_wrapped(q).latex}")


def _signed(pieces: list[tuple[Fraction, _Pairing, Piece]]) -> Piece:
    """``c₁ (P₁ ⊗ Q₁) ± ...``: a number in front of a Kronecker product wraps it."""
    text, latex = [], []
    for n, (c, pairing, m) in enumerate(pieces):
        wrap = abs(c) != 1 and pairing is _Pairing.KRONECKER and " " in m.text
        whole = Rendering(abs(c), _wrapped(m) if wrap else m, False).whole
        lead = ("-" if c < 0 else "") if n == 0 else (" - " if c < 0 else " + ")
        text += [lead, whole.text]
        latex += [lead, whole.latex]
    return Piece("".join(text), "".join(latex))


def vec_line(form: StatementForm, name: str) -> Piece:
    """``In vec form (the convention): ∂²f/∂X² = ...``, where a Hessian by a matrix has no
    matrix form of its own."""
    notes = CONVENTION.format(name=name)
    if " K" in form.equation.text:
        notes += "; " + COMMUTATION.format(name=name)
    return spaced(prose(f"   In vec form ({notes}):"), form.piece)
