"""Statements in matrix notation: a derived program's result as a textbook writes it.

The result statement of a gradient (or Hessian) program is rendered term by term: each term's
operands (tensors, and the nodes of :mod:`einsgrad.expressions` as the tensors they are over
their free indices) go through the rule table of :mod:`einsgrad.matrix_forms`, and every
statement it reads is written where it is read, except the forward statements the user named,
which stay names and are defined after it. For the tanh layer and ``W``::

    ∂L/∂W = ((A - T) ∘ (1 - A∘A))ᵀ X, with A = tanh(H), H = X Wᵀ + 1 cᵀ

Products are kept as chains, so that a transposed product reads as a textbook's (``(P Q)ᵀ =
Qᵀ Pᵀ``) and a sum of chains with a common first or last factor is factored (``A x + Aᵀ x =
(A + Aᵀ) x``, ``2 Xᵀ X w - 2 Xᵀ y = 2 Xᵀ (X w - y)``, by :mod:`einsgrad.matrix_renderings`).
Nothing is derived here. Pure: no numpy.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Mapping, NamedTuple, Sequence

from .algebra import Factor, Term, decimal
from .expressions import Call, Group, Power, Scoped, Statement, free, term_free
from .form_search import matrix_form
from .matrix_forms import ONES, Form, form_body, hadamard
from .matrix_operands import term_operands
from .matrix_renderings import Link, Rendering, as_operand, atomic_text, negated, summed
from .render import Piece, applied, equals, juxt, spaced, tensor_name, transpose_of
from .spec_terms import TermEinsum, einsum_of

MAX_WRITTEN_IN = 2000
"""The longest text a statement written where it is read may have; a longer one has no
matrix form here (a Hessian's cotangents may nest deeply)."""


@dataclass(frozen=True)
class StatementForm:
    """A statement in matrix notation: ``equation`` and the named definitions it reads."""

    equation: Piece
    where: tuple[Piece, ...] = ()

    @property
    def piece(self) -> Piece:
        if not self.where:
            return self.equation
        joined = Piece(", ".join(w.text for w in self.where), r",\ ".join(w.latex for w in self.where))
        return spaced(Piece(self.equation.text + ",", self.equation.latex + ","), Piece("with", r"\text{with}"), joined)


def statement_form(statements: Sequence[Statement], lhs: Piece, named: frozenset[str] = frozenset(),
                   names: Mapping[str, Piece] | None = None,
                   nameable: frozenset[str] = frozenset()) -> StatementForm | None:
    """The last of ``statements`` as ``lhs = ...``, or None where a term has no matrix form.

    The earlier statements are written where they are read, but those in ``named`` (the
    forward's intermediates the user named), which stay names and are defined after the
    equation, in the order they are first read; so does one of ``nameable`` (the forward's
    temporaries) that would be written twice or more and is no plain call (``tanh(X Wᵀ + b)``
    read twice is named once). ``names`` renders some inputs otherwise (the cotangent
    ``dY`` as ``G``)."""
    definitions = {s.name: s for s in statements[:-1]}
    writer = Writer(definitions, named, dict(names or {}))
    body = writer.statement(statements[-1], top=True)
    if body is None:
        return None
    while True:  # the longest repeated one first: what it holds is then written once
        repeated = [n for n, count in writer.multiplicities(statements[-1].name).items()
                    if count > 1 and n in nameable and n not in named and writer.done.get(n) is not None
                    and " " in writer.done[n].whole.text]
        if not repeated:
            break
        named = named | {max(repeated, key=lambda n: len(writer.done[n].whole.text))}
        writer = Writer(definitions, named, dict(names or {}))
        body = writer.statement(statements[-1], top=True)
    where, n = [], 0
    while n < len(writer.used):
        name = writer.used[n]
        definition = writer.statement(writer.definitions[name], top=True)
        if definition is None:
            return None
        where.append(equals(tensor_name(name), definition.whole))
        n += 1
    return StatementForm(equals(lhs, body.whole), tuple(where))


class Writer:
    """Renders statements, each once (a cache by name), collecting the named ones read.

    ``definitions``: the statements that may be written where they are read, but those in
    ``named``; ``names``: renderings of some tensors (a cotangent ``dY`` as ``G``)."""

    def __init__(self, definitions: dict[str, Statement], named, names: dict[str, Piece]):
        self.definitions, self.named, self.names = definitions, named, names
        self.used: list[str] = []
        self.done: dict[str, Rendering | None] = {}
        self.reading: list[str] = []  # the statements being rendered, innermost last
        self.reads: dict[str, Counter] = {}  # how often each statement writes in each other

    def multiplicities(self, target: str) -> Counter:
        """How many times each statement written in appears in the text of ``target``."""
        count = Counter({target: 1})
        order = [target] + [n for n in reversed(self.definitions) if n != target]
        for reader in order:  # a statement reads only earlier ones
            for name, k in self.reads.get(reader, {}).items():
                count[name] += count[reader] * k
        return count

    def statement(self, s: Statement, top: bool = False) -> Rendering | None:
        """``s`` rendered, once where it is read (``top``: as it stands, not cached)."""
        if top:
            self.reading.append(s.name)
            found = self.sum(s.terms, s.indices, top=True)
            self.reading.pop()
            return found
        if self.reading:
            self.reads.setdefault(self.reading[-1], Counter())[s.name] += 1
        if s.name not in self.done:
            self.done[s.name] = None  # a statement reads only earlier ones: no cycle
            self.reading.append(s.name)
            found = self.sum(s.terms, s.indices)
            self.reading.pop()
            if found is not None and len(found.whole.text) > MAX_WRITTEN_IN:
                found = None
            self.done[s.name] = found
        return self.done[s.name]

    def tensor(self, name: str) -> Rendering | None:
        if name in self.names:
            return Rendering(Fraction(1), self.names[name], True, (Link(self.names[name]),), kind="product")
        if name in self.definitions and name not in self.named:
            return self.statement(self.definitions[name])
        if name in self.definitions and name not in self.used:
            self.used.append(name)
        piece = tensor_name(name)
        return Rendering(Fraction(1), piece, True, (Link(piece),), kind="product")

    # -- sums and terms ----------------------------------------------------------------------

    def sum(self, terms, indices, top: bool = False) -> Rendering | None:
        """``Σ terms`` over ``indices``, each term's other indices summed over it; ``top``:
        a statement written as it stands, not where it is read."""
        rendered = []
        for t in terms:
            found = self.term(t, tuple(indices), top and len(terms) == 1)
            if found is False:
                return None
            rendered.append(found)
        return summed(rendered)

    def term(self, term: Term, indices: tuple[str, ...], top: bool = False):
        """(coefficient, rendering) of one term over ``indices``, (c, None) for a number,
        False where it has no matrix form; ``top``: a statement's only term, written as it
        stands (its sign may then go into a sum it holds)."""
        if not term.factors:
            return term.coefficient, None
        read = term_operands(term, indices)
        operands, proxies, inverse = [], [], set()
        alone = len(read.operands) == 1 and not read.deltas  # a root alone: t^∘(-0.5), not (1 ⊘ t^∘(0.5))
        for f, labels in read.operands:
            r, reciprocal = ((self.tensor(f.name), False) if isinstance(f, Factor) else
                             (self.node(f), False) if alone and _root(f) else self._node_operand(f))
            if r is None:
                return False
            if reciprocal:
                inverse.add(len(operands))
            proxies.append(Factor(f"#{len(operands)}", labels))
            operands.append(r)
        proxies += read.deltas
        if len(operands) == 1 and not indices and isinstance(term.factors[0], Power) \
                and term.factors[0].exponent == 2 and not inverse and not read.deltas:
            base = self.sum(term.factors[0].base.terms, free(term.factors[0]))  # ‖B‖²: a sum of squares
            if base is None:
                return False
            norm = Piece(f"‖{base.whole.text}‖²", rf"\left\|{base.whole.latex}\right\|^2")
            return term.coefficient, Rendering(Fraction(1), norm, True)
        found, form, operands, inverse = _read(indices, proxies, operands, inverse)
        if found is None:
            return False
        order = [int(f.name[1:]) for f in found.tensors]
        if form is None or form.batch or form.summed:  # "Σ_k" of slices is no matrix notation
            return False
        if not order:  # "->ii": the spec reads one 0-d operand, which this term does not have
            form = replace(form, scalars=())
        used = [operands[k] for k in order]
        flipped = frozenset(n for n, k in enumerate(order) if k in inverse)
        coefficient = term.coefficient
        for n, r in enumerate(used):
            if n not in flipped:
                coefficient *= r.coefficient
        sums = [n for n, r in enumerate(used) if r.terms is not None and n not in flipped and r.coefficient == 1]
        if top and coefficient < 0 and len(sums) == 1:  # -2 (T - U Vᵀ) V is 2 (U Vᵀ - T) V
            coefficient, used[sums[0]] = -coefficient, negated(used[sums[0]])
        formed = _formed(form, used, flipped)
        return False if formed is None else (coefficient, formed)

    def _node_operand(self, node):
        """(rendering, reciprocal) of a node as an operand of a term."""
        if isinstance(node, Power) and node.exponent < 0:
            return self.node(Power(node.base, -node.exponent)), True
        return self.node(node), False

    def node(self, node) -> Rendering | None:
        """A node as the tensor it is over its free indices, in order."""
        indices = free(node)
        if isinstance(node, Group):
            return self.sum(node.terms, indices)
        if isinstance(node, Scoped):
            if any(not set(node.over) <= set(term_free(t)) for t in node.body.terms):
                return None  # a term constant along a summed index: times its size
            return self.sum(node.body.terms, indices)
        if isinstance(node, Call):
            inner = self.sum(node.argument.terms, indices)
            if inner is None:
                return None
            value = applied(node.function, inner.whole)
            return Rendering(Fraction(1), value, True, (Link(value),), kind="product")
        base = self.sum(node.base.terms, indices)  # a Power, exponent positive
        if base is None:
            return None
        if node.exponent == 1:
            return base
        operand = as_operand(base.whole)
        if not indices:  # a scalar's power
            e = decimal(node.exponent)
            e = e if node.exponent.denominator == 1 and node.exponent > 0 else f"({e})"
            return Rendering(Fraction(1), Piece(f"{operand.text}^{e}", f"{operand.latex}^{{{e}}}"), True)
        if node.exponent == 2:
            return Rendering(Fraction(1), hadamard([operand, operand]), False)
        e = decimal(node.exponent)
        e = e if node.exponent.denominator == 1 else f"({e})"
        return Rendering(Fraction(1), Piece(f"{operand.text}^∘{e}", f"{operand.latex}^{{\\circ {e}}}"), True)


def _root(node) -> bool:
    """A negative power that is no reciprocal of an integer power (``t^-0.5``)."""
    return isinstance(node, Power) and node.exponent < 0 and node.exponent.denominator != 1


# -- assembling ------------------------------------------------------------------------------


class _Read(NamedTuple):
    """A term's operands as one einsum: its spec's form (None where it has none), and the
    renderings and reciprocal positions of the operands it reads after merging."""

    einsum: TermEinsum | None
    form: Form | None
    operands: list
    inverse: set


def _read(indices, proxies, operands, inverse) -> _Read:
    """A term's operands over the same indices merged (:func:`_merged`) into one einsum, or
    None where the notation has no spelling; where that einsum has no form (more operands than
    a form is searched for: ``"ki,ki,ki,ki,ki,i,ki->ki"``), every such group merged, so that it
    reads ``(A ∘ B ∘ ...) Diag(x)``."""
    merged = _merged(proxies, operands, inverse)
    found = einsum_of(indices, Term(Fraction(1), tuple(merged[0])))
    form = None if found is None else matrix_form(found.spec)
    if found is not None and form is None:
        every = _merged(proxies, operands, inverse, every=True)
        wider = einsum_of(indices, Term(Fraction(1), tuple(every[0]))) if len(every[0]) < len(merged[0]) else None
        form = None if wider is None else matrix_form(wider.spec)
        if form is not None:
            return _Read(wider, form, every[1], every[2])
    return _Read(found, form, merged[1], merged[2])


def _merged(proxies, operands, inverse, every: bool = False):
    """Operands over the same indices (none repeated), which another operand (or a delta)
    also holds, merged into one entrywise product, so that ``X[i,p] * t[i] * (1 - t[i])``
    reads ``Diag(t ∘ (1 - t)) X`` and a diagonal ``q[i] x[i] / t[i] δ[i,j]`` reads
    ``Diag(q ∘ x ⊘ t)`` (``x[k] * x[k]`` alone stays a dot product ``xᵀ x``). Reciprocals
    divide (``⊘``); a group of reciprocals alone stays one, ``Diag(a ∘ b)⁻¹``. ``every``:
    every group, whoever else holds its indices (``A[k,i] * B[k,i] * ... -> i`` is
    ``(A ∘ B ∘ ...)ᵀ 1``)."""
    groups: dict[frozenset, list[int]] = {}
    for n, p in enumerate(proxies):
        if isinstance(p, Factor) and len(set(p.indices)) == len(p.indices):
            groups.setdefault(frozenset(p.indices), []).append(n)
    joined = [g for key, g in groups.items() if len(g) > 1 and key and (every or all(
        any(label in p.indices for m, p in enumerate(proxies) if m not in g) for label in key))]
    if not joined:
        return proxies, operands, inverse
    proxies, operands, inverse = list(proxies), list(operands), set(inverse)
    for g in joined:
        tops = [n for n in g if int(proxies[n].name[1:]) not in inverse]
        first = proxies[(tops or g)[0]]
        numerators, denominators, coefficient = [], [], Fraction(1)
        for n in g:
            r = operands[int(proxies[n].name[1:])]
            below = bool(tops) and int(proxies[n].name[1:]) in inverse
            if not below:
                coefficient *= r.coefficient
            part = as_operand(r.whole if below else r.body)
            (denominators if below else numerators).append(
                part if proxies[n].indices == first.indices else transpose_of(part))
        operands[int(first.name[1:])] = Rendering(coefficient, hadamard(numerators, denominators), False)
        for n in g:
            if proxies[n] is not first:
                inverse.discard(int(proxies[n].name[1:]))
                proxies[n] = None
    return [p for p in proxies if p is not None], operands, inverse


def _formed(form, used: list[Rendering], inverse: frozenset[int]) -> Rendering | None:
    """The form's body over the operands' renderings: a product as a chain (operand chains
    spliced in, reversed where transposed), an identity as a symmetric one, any other kind by
    :func:`form_body`. A reciprocal operand (in ``inverse``) keeps its coefficient; the
    others' are the term's. None for a chain that counts (``1ᵀ 1``, a sum over an index that
    no operand holds): nothing in the formula says the size it is."""
    if form.nested:
        form, used = _unnested(form, used, inverse)
        if form is None:
            return None
    shown = [as_operand(r.whole if n in inverse else r.body) for n, r in enumerate(used)]
    if form.kind == "product" and form.factors in (((0, False),),) and not form.scalars and not inverse \
            and not form.scaled and not form.summed:
        return replace(used[0], coefficient=Fraction(1))  # the operand as it stands
    if form.kind in ("product", "trace") and not form.summed and not any(k in inverse for k in form.scalars):
        links = [Link(shown[k], scalar=True, symmetric=True) for k in form.scalars]
        for n, (k, t) in enumerate(form.factors):
            if k is None:
                links.append(Link(ONES, t))
            elif n in form.scaled and k not in inverse and _broadcast(used[k]):  # Diag(c 1) is c I
                links.extend(_scalar_links(used[k]) + [_IDENTITY])
            elif k not in inverse and used[k].terms is not None and _broadcast(used[k]):
                links.extend(_scalar_links(used[k]) + [Link(ONES, t)])  # (a 1 - b 1) is (a - b) 1
            elif n in form.scaled:
                d = applied("Diag", used[k].whole if k in inverse else used[k].body)
                links.append(Link(Piece(d.text + "⁻¹", d.latex + "^{-1}") if k in inverse else d, symmetric=True))
            elif k in inverse:
                links.append(Link(Piece(f"(1 ⊘ {shown[k].text})", rf"\left(1 \oslash {shown[k].latex}\right)"), t))
            elif used[k].kind == "product":
                chain = used[k].chain
                links.extend([x.flipped() for x in reversed(chain)] if t else chain)
            else:
                links.append(Link(shown[k], t and not used[k].diagonal, symmetric=used[k].diagonal))
                if _unsized(used[k], "cols" if t else "rows", links[:-1], form.factors[n + 1:], "rows"):
                    return None
                if _unsized(used[k], "rows" if t else "cols", links[:-1], form.factors[n + 1:], "cols"):
                    return None
        if sum(not x.scalar for x in links) > 1:  # I M is M
            links = [x for x in links if not x.identity]
        if _counts([x for x in links if not x.scalar], form.kind == "trace"):
            return None
        if form.kind == "trace":
            scalars = [x for x in links if x.scalar]
            inside = [x for x in links if not x.scalar]
            body = juxt([x.piece for x in scalars] + [applied("tr", juxt([x.piece for x in inside]))])
            return Rendering(Fraction(1), body, not scalars, tuple(inside) if not scalars else None, kind="trace")
        links = [x for x in links if x.scalar] + [x for x in links if not x.scalar]
        body = juxt([x.piece for x in links], empty="1")
        return Rendering(Fraction(1), body, atomic_text(body.text), tuple(links), kind="product")
    body = form_body(form, shown, inverse=inverse)
    if form.kind == "identity":  # I, c I, tr(B) I: diagonal, the same transposed
        link = _IDENTITY if body == _IDENTITY.base else Link(body, symmetric=True)
        return Rendering(Fraction(1), body, atomic_text(body.text), (link,), kind="product")
    if form.kind == "hadamard" and not form.scalars and not inverse:
        parts = tuple(transpose_of(shown[k]) if t else shown[k] for k, t in form.factors)
        return Rendering(Fraction(1), body, False, kind="hadamard", parts=parts)
    return Rendering(Fraction(1), body, atomic_text(body.text))


def _unnested(form, used: list[Rendering], inverse: frozenset[int]):
    """``form`` with each form it holds (``A B`` in ``(A B) ∘ C``) rendered by :func:`_formed`
    as an operand of its own, after ``used``; (None, used) where one has no rendering."""
    used = list(used)

    def operand(k):
        if not isinstance(k, Form):
            return k
        r = _formed(k, used[:count], inverse)
        used.append(r)
        return None if r is None else len(used) - 1

    count = len(used)
    factors = tuple((operand(k), t) for k, t in form.factors)
    scalars = tuple(operand(k) for k in form.scalars)
    if any(r is None for r in used[count:]):
        return None, used
    return replace(form, factors=factors, scalars=scalars), used


_IDENTITY = Link(Piece("I", "I"), symmetric=True, identity=True)


def _broadcast(r: Rendering) -> bool:
    """A scalar times the ones vector, ``c 1``, or a sum of them."""
    if r.terms is not None:
        return all(t is not None and _broadcast(t) for _, t in r.terms)
    return r.kind == "product" and bool(r.chain) and [x for x in r.chain if not x.scalar] == [Link(ONES)]


def _scalar_links(r: Rendering) -> list[Link]:
    """The scalar ``c`` of a broadcast ``c 1`` (:func:`_broadcast`) as chain links."""
    if r.terms is None:
        return [x for x in r.chain if x.scalar]
    scalars = summed([(c, Rendering(Fraction(1), juxt([x.piece for x in _scalar_links(t)], empty="1"), True))
                    for c, t in r.terms])
    return [Link(as_operand(scalars.whole), scalar=True, symmetric=True)]


def _unsized(r: Rendering, side: str, before: list[Link], after, which: str) -> bool:
    """A sum whose every term is a broadcast along ``side`` (``1 aᵀ + c 1 bᵀ``: its rows
    unsized; ``a 1ᵀ + ...``: its columns), next to a ones vector that sums along it
    (``1ᵀ (1 aᵀ + 1 bᵀ) 1``): a count that nothing in the text sizes. ``which`` is the
    side of ``r`` that the neighbour reads: its rows, read by the link before it, or its
    columns, by the factor after it."""
    if which == "rows":
        own = [x for x in before if not x.scalar]
        neighbour = own[-1] if own else None
        sums = neighbour is not None and neighbour.base == ONES and neighbour.transposed
    else:
        nxt = next(iter(after), None)
        sums = nxt is not None and nxt[0] is None and not nxt[1]
    return sums and _broadcast_along(r, side)


def _broadcast_along(r: Rendering | None, side: str) -> bool:
    """Every term of ``r`` begins with a ones column (``side`` "rows") or ends with a ones
    row ("cols")."""
    if r is None:
        return False
    if r.terms is not None:
        return all(_broadcast_along(t, side) for _, t in r.terms)
    own = [x for x in r.chain or () if not x.scalar] if r.kind == "product" else []
    end = own[0] if own and side == "rows" else own[-1] if own else None
    return end is not None and end.base == ONES and end.transposed == (side == "cols")


def _counts(links, traced: bool) -> bool:
    """A chain (scalars aside) holding ``1ᵀ 1``, or a trace of ones alone: a size."""
    if traced and links and all(x.base == ONES for x in links):
        return True
    return any(a.base == ONES and a.transposed and b.base == ONES and not b.transposed
               for a, b in zip(links, links[1:]))
