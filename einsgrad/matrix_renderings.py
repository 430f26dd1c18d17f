"""Matrix expressions as the writer of :mod:`einsgrad.matrix_statements` builds them: a
rendering (a coefficient times a body, with the chain of a product or the terms of a sum it
is), and sums of them written as a textbook writes them: terms written alike merged, a common
first or last factor taken out (``A x + Aᵀ x = (A + Aᵀ) x``), a common number in front
(``2 (Y - X W)``), parentheses only where a sum or a minus needs them. Pure: text only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction

from .algebra import decimal
from .render import Piece, juxt, transpose_of


@dataclass(frozen=True)
class Link:
    """One factor of a product chain: ``base``, transposed or not; a symmetric one (a
    diagonal matrix, a scalar) reads the same transposed."""

    base: Piece
    transposed: bool = False
    symmetric: bool = False
    scalar: bool = False
    identity: bool = False  # the identity matrix I itself (not a tensor named I)

    def flipped(self) -> "Link":
        return self if self.symmetric else replace(self, transposed=not self.transposed)

    @property
    def piece(self) -> Piece:
        return transpose_of(self.base) if self.transposed else self.base


@dataclass(frozen=True)
class Rendering:
    """``coefficient`` times ``body``, a matrix expression.

    Attributes:
        coefficient: a number in front, lifted out wherever the rendering is a factor.
        body: the expression without its coefficient.
        atomic: reads as one operand without parentheses (a name, a function's value).
        chain: a product's factors (a trace's, inside it), when ``body`` is one; a
            transposed chain is reversed.
        terms: a sum's terms, (coefficient, rendering or None for a number), when it is one.
        kind: "product", "trace", "hadamard" (``parts`` its operands) or "other".
    """

    coefficient: Fraction
    body: Piece
    atomic: bool
    chain: tuple[Link, ...] | None = None
    terms: tuple | None = None
    kind: str = "other"
    parts: tuple[Piece, ...] = ()

    @property
    def whole(self) -> Piece:
        """The coefficient and the body, as one expression."""
        return scaled(self.coefficient, self.body)

    @property
    def diagonal(self) -> bool:
        """A product of diagonal matrices (the symmetric links) or a sum of them: diagonal,
        so it reads the same transposed (a Hessian's ``Diag(a) Diag(b) - Diag(c)``)."""
        if self.kind == "product" and self.chain:
            return all(x.symmetric for x in self.chain)
        return self.terms is not None and all(r is not None and r.diagonal for _, r in self.terms)


def summed(rendered) -> Rendering:
    """Terms (coefficient, rendering or None for a number) as one rendering: terms written
    alike merged (``1ᵀ A 1 + 1ᵀ A 1`` is ``2 1ᵀ A 1``, never ``1ᵀ A (1 + 1)``), factored where
    every term is a chain with a common first or last factor, a positive term first."""
    alike: dict = {}
    for c, r in rendered:
        alike[r] = alike.get(r, 0) + c
    rendered = [(c, r) for r, c in alike.items() if c != 0]
    if not rendered:
        return Rendering(Fraction(1), Piece("0", "0"), True)
    if len(rendered) == 1:
        c, r = rendered[0]
        if r is None:
            return Rendering(Fraction(1), number(c), c >= 0)
        return replace(r, coefficient=c * r.coefficient)
    factored = _factored(rendered)
    if factored is not None:
        return factored
    first = next((n for n, (c, _) in enumerate(rendered) if c > 0), 0)
    rendered = [rendered[first]] + rendered[:first] + rendered[first + 1:]
    magnitudes = {abs(c) for c, _ in rendered}
    if len(magnitudes) == 1 and 1 not in magnitudes and all(r is not None for _, r in rendered):
        common = magnitudes.pop()  # 2 Y - 2 X W is 2 (Y - X W)
        inner = [(c / common, r) for c, r in rendered]
        return Rendering(common, parenthesized_always(signed(inner)), True, terms=tuple(inner))
    return Rendering(Fraction(1), signed(rendered), False, terms=tuple(rendered))


def _factored(rendered) -> Rendering | None:
    chains = [r.chain if r is not None and r.kind == "product" else None for _, r in rendered]
    if any(ch is None or any(x.scalar for x in ch) for ch in chains):
        return None
    head = 0
    while all(len(ch) > head + 1 and ch[head] == chains[0][head] for ch in chains):
        head += 1
    tail = 0
    while all(len(ch) > head + tail + 1 and ch[-1 - tail] == chains[0][-1 - tail] for ch in chains):
        tail += 1
    if not head and not tail:
        return None
    magnitudes = {abs(c) for c, _ in rendered}
    common = magnitudes.pop() if len(magnitudes) == 1 else Fraction(1)
    inner = summed([(c / common, Rendering(Fraction(1), juxt([x.piece for x in ch[head:len(ch) - tail]]),
                                         len(ch) - tail - head == 1, ch[head:len(ch) - tail], kind="product"))
                  for (c, _), ch in zip(rendered, chains)])
    if inner.kind == "product":
        middle, common = list(inner.chain), common * inner.coefficient
    else:
        middle = [Link(parenthesized_always(inner.whole), symmetric=inner.diagonal)]
    links = list(chains[0][:head]) + middle + list(chains[0][len(chains[0]) - tail:])
    return Rendering(common, juxt([x.piece for x in links]), False, tuple(links), kind="product")


def negated(r: Rendering) -> Rendering:
    return summed([(-c, x) for c, x in r.terms])


def signed(parts) -> Piece:
    text, latex = [], []
    for n, (c, r) in enumerate(parts):
        c = c if r is None else c * r.coefficient
        m = number(abs(c)) if r is None else scaled(abs(c), r.body)
        lead = ("-" if c < 0 else "") if n == 0 else (" - " if c < 0 else " + ")
        text += [lead, m.text]
        latex += [lead, m.latex]
    return Piece("".join(text), "".join(latex))


def scaled(c: Fraction, body: Piece) -> Piece:
    """``c body``; a sum (or a negated body) in parentheses, ``1/3 (a - b)``, never ``1/3 a - b``."""
    if c == 1:
        return body
    if _summed_text(body.text):
        body = parenthesized_always(body)
    if c == -1:
        return Piece("-" + body.text, "-" + body.latex)
    return juxt([number(c), body])


def number(c: Fraction) -> Piece:
    return Piece(decimal(c), decimal(c))


def as_operand(m: Piece) -> Piece:
    """A piece as an operand: parenthesized unless one name or one call."""
    return m if atomic_text(m.text) else parenthesized_always(m)


def _summed_text(text: str) -> bool:
    """A leading minus, or a ``+`` or ``-`` between terms outside parentheses and norms."""
    depth, norm = 0, False
    for n, char in enumerate(text):
        norm = not norm if char == "‖" else norm
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and not norm and text[n:n + 3] in (" + ", " - "):
            return True
    return text.startswith("-")


def atomic_text(text: str) -> bool:
    """No space, ∘, ⊘ or / outside parentheses and norms, and no leading minus; the ∘ of an
    entrywise power ``t^∘3`` is no product."""
    if text.startswith("-"):
        return False
    depth, norm = 0, False
    for n, char in enumerate(text):
        norm = not norm if char == "‖" else norm
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and not norm and char in " ∘⊘/" and text[n - 1:n + 1] != "^∘":
            return False
    return True


def parenthesized_always(m: Piece) -> Piece:
    return Piece(f"({m.text})", rf"\left({m.latex}\right)")
