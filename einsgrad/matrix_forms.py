"""Matrix forms: an einsum spec in matrix notation, by a table of small rules.

Each rule (:data:`_PLAIN_RULES`) is a function of the label tuples that returns a :class:`Form`
or None; :func:`plain_form` tries them in turn. A form may hold forms of its own where an
operand is one (``(A B) ∘ C``): :mod:`einsgrad.form_search` builds those, and batched ones.
:func:`form_body` renders a form as text and LaTeX.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, replace
from typing import Sequence

from .render import (ONES, Piece, applied, differential_of, equals, juxt, label_symbols, listed,
                     parenthesized, spaced, summation, symbol_latex, transpose_of)
from .spec import ELLIPSIS

@dataclass(frozen=True)
class Form:
    """A matrix formula over the operands of a spec.

    Attributes:
        kind: "product", "trace", "hadamard", "diag" (the diagonal of a square matrix or of a
            product, ``diag(A B)``), "identity" (``scale`` times ``I``), "rowsum" (an
            entrywise product summed along its rows, ``(A ∘ B) 1``) or "colsum"
            (``(A ∘ B)ᵀ 1``).
        factors: (operand, transposed) in order: an operand is a position, None for a ones
            vector, or a form of operands (``A B`` in ``(A B) ∘ C``).
        scalars: 0-d operands, written in front: positions, or forms (``tr(B)``).
        batch: labels every operand and the output share: "for each b: ...".
        summed: labels the operands share and the output lacks: "Σ_b ...".
        scaled: positions in ``factors`` of vectors written as diagonal matrices ``Diag(d)``.
        columns: a batched form holds vector slices, read as column vectors.
        scale: an identity's scalar factor as a form of its own (``tr(B) I``), or None.
    """

    kind: str
    factors: "tuple[tuple[int | Form | None, bool], ...]" = ()
    scalars: "tuple[int | Form, ...]" = ()
    batch: tuple[str, ...] = ()
    summed: tuple[str, ...] = ()
    scaled: tuple[int, ...] = ()
    columns: bool = False
    scale: "Form | None" = None

    @property
    def nested(self) -> bool:
        """Some operand is a form of its own (a scale aside)."""
        return any(isinstance(k, Form) for k, _ in self.factors) or any(
            isinstance(k, Form) for k in self.scalars)


def _identity_form(inputs, output, tensors):
    """``"->ii"``: the scalars times the identity ``I`` (the backward of the trace); a scalar
    of the other operands times it, ``"kk->ii"`` is ``tr(B) I``."""
    if len(output) != 2 or output[0] != output[1]:
        return None
    if not tensors:
        return Form("identity")
    if any(output[0] in inputs[k] for k in tensors):
        return None
    scale = plain_form(inputs, ())
    return None if scale is None else Form("identity", scale=replace(scale, scalars=()))


def _diag_form(inputs, output, tensors):
    """``"ii->i"`` takes the diagonal, ``diag(A)``; ``"i->ii"`` makes a diagonal matrix,
    ``Diag(d)``, the scaling of :func:`_scaling_form` with no matrix to scale. Two names, as
    the Frobenius rule ``M : Diag(N) = diag(M) : N`` needs: one ``diag`` for both reads the
    same text two ways (a reader sees ``Diag(q) diag(x)`` as two different things)."""
    if len(tensors) != 1:
        return None
    term = inputs[tensors[0]]
    if len(term) == 2 and term[0] == term[1] and output == term[:1]:
        return Form("diag", ((tensors[0], False),))
    if len(term) == 1 and output == term * 2:
        return Form("product", ((tensors[0], False),), scaled=(0,))
    return None


def _hadamard_form(inputs, output, tensors):
    """Entrywise product ``A ∘ B``: every operand has exactly the output's labels."""
    if len(tensors) < 2 or not 1 <= len(output) <= 2 or len(set(output)) != len(output):
        return None
    if any(len(inputs[k]) != len(output) or set(inputs[k]) != set(output) for k in tensors):
        return None
    return Form("hadamard", tuple((k, inputs[k] != output) for k in tensors))


def _scaling_form(inputs, output, tensors):
    """Rows and columns scaled by vectors: ``"i,ij->ij"`` is ``Diag(d) X``, ``"ij,j->ij"`` is
    ``X Diag(d)``, ``"i,ij,j->ij"`` is ``Diag(a) X Diag(b)`` (the textbook forms of batched
    scalings)."""
    if len(output) != 2 or output[0] == output[1]:
        return None
    matrices = [k for k in tensors if len(inputs[k]) == 2]
    vectors = [k for k in tensors if len(inputs[k]) == 1]
    if len(matrices) != 1 or not vectors or len(matrices) + len(vectors) != len(tensors):
        return None
    (m,), term = matrices, inputs[matrices[0]]
    if set(term) != set(output) or any(inputs[k][0] not in output for k in vectors):
        return None
    left = [(k, False) for k in vectors if inputs[k][0] == output[0]]
    right = [(k, False) for k in vectors if inputs[k][0] == output[1]]
    factors = (*left, (m, term != output), *right)
    return Form("product", factors, scaled=tuple(n for n, (k, _) in enumerate(factors) if k != m))


def _rowsum_form(inputs, output, tensors):
    """An entrywise product summed over one axis: ``"ij,ij->i"`` is ``(A ∘ B) 1``, and
    ``"ij,ij->j"`` is ``(A ∘ B)ᵀ 1`` (the gradient of a row scaling)."""
    if len(tensors) < 2 or len(output) != 1:
        return None
    first = inputs[tensors[0]]
    if len(first) != 2 or first[0] == first[1] or output[0] not in first:
        return None
    if any(set(inputs[k]) != set(first) or len(inputs[k]) != 2 for k in tensors):
        return None
    return Form("rowsum" if output[0] == first[0] else "colsum",
                 tuple((k, inputs[k] != first) for k in tensors))


def _orientations(term):
    """(rows, cols, transposed) of a vector (a column) or a matrix, as stored or transposed."""
    if len(term) == 1:
        return ((term[0], None, False), (None, term[0], True))
    if term[0] == term[1]:
        return ((term[0], term[1], False),)
    return ((term[0], term[1], False), (term[1], term[0], True))


def _chain_kind(chain, output, count):
    """"product", "trace" or "diag" if the oriented ``chain`` multiplies out to ``output``,
    else None.

    Adjacent factors share their inner label (or are an outer product, both None), an inner
    label occurs nowhere else, the outer labels are the output (a vector is a column), or
    both are the output's one label: the diagonal of a product of matrices, ``diag(A B C)``."""
    for (_, cols), (rows, _) in zip(chain, chain[1:]):
        if cols != rows or cols is not None and (count[cols] != 2 or cols in output):
            return None
    first, last = chain[0][0], chain[-1][1]
    if not output:
        if first is None and last is None:
            return "product"
        return "trace" if first == last and count[first] == 2 else None
    if len(output) == 1 and first == last == output[0] and count[first] == 2 and len(chain) > 1 \
            and all(cols is not None for _, cols in chain[:-1]):  # diag(x yᵀ) is x ∘ y
        return "diag"
    if len(output) == 1 and (first, last) != (output[0], None):
        return None
    ends = tuple(label for label in (first, last) if label is not None)
    return "product" if ends == output and all(count[l] == 1 for l in ends) else None


def _followed(items, output, count):
    """A chain of more than four factors, found by following each inner label to the one
    other factor that holds it: from the output's row label (or, for a scalar, from each
    vector and each orientation of the first factor, a trace), fewest transposes first."""
    starts = []
    if output:
        starts = [(n, o) for n, (_, term) in enumerate(items) for o in _orientations(term)
                  if o[0] == output[0]]
    else:
        starts = [(n, o) for n, (_, term) in enumerate(items) for o in _orientations(term)
                  if o[0] is None or n == 0]
    best = None
    for n, start in starts:
        chain, used = [(n, start)], {n}
        while chain[-1][1][1] is not None and len(used) < len(items):
            label = chain[-1][1][1]
            nxt = [(m, o) for m, (_, term) in enumerate(items) if m not in used
                   for o in _orientations(term) if o[0] == label]
            if len(nxt) != 1:
                break
            chain.append(nxt[0])
            used.add(nxt[0][0])
        if len(used) != len(items):
            continue
        oriented = [o for _, o in chain]
        kind = _chain_kind([(r, c) for r, c, _ in oriented], output, count)
        flips = sum(t for _, _, t in oriented)
        if kind is not None and (best is None or (flips, kind == "trace") < best[0]):
            best = ((flips, kind == "trace"),
                    Form(kind, tuple((items[m][0], o[2]) for m, o in chain)))
    return None if best is None else best[1]


def _chain_form(inputs, output, tensors):
    """Products of matrices and vectors with transposes, traces of them, and sums and
    broadcasts as products with a ones vector ``1`` (``"ij->i"`` is ``A 1``). Up to four
    factors every order is tried; longer chains are followed label by label."""
    if any(len(inputs[k]) > 2 for k in tensors):
        return None
    if len(output) > 2 or len(set(output)) != len(output):
        return None
    count = Counter(label for k in tensors for label in inputs[k])
    ones = [l for l, c in count.items() if c == 1 and l not in output]
    ones += [l for l in output if l not in count]
    items = [(k, inputs[k]) for k in tensors] + [(None, (l,)) for l in ones]
    if not items:
        return Form("product") if not output else None
    count.update(ones)
    if len(items) > 4:
        return _followed(items, output, count)
    best = None  # fewest transposes, then a product before a trace (xᵀ y, not tr(x yᵀ)), then
    # a transposed ones vector before a transposed tensor (a sum reads 1ᵀ x)
    for order in itertools.permutations(items):
        for oriented in itertools.product(*(_orientations(term) for _, term in order)):
            flips = sum(t for _, _, t in oriented)
            if best is not None and flips > best[0][0]:
                continue
            kind = _chain_kind([(r, c) for r, c, _ in oriented], output, count)
            own = sum(t for (k, _), (_, _, t) in zip(order, oriented) if k is not None)
            if kind is not None and (best is None or (flips, kind == "trace", own) < best[0]):
                factors = tuple((k, t) for (k, _), (_, _, t) in zip(order, oriented))
                best = ((flips, kind == "trace", own), Form(kind, factors))
    return None if best is None else best[1]


_PLAIN_RULES = (_identity_form, _diag_form, _hadamard_form, _scaling_form, _rowsum_form,
                _chain_form)


def plain_form(inputs, output) -> Form | None:
    """The first rule's form of the spec ``inputs -> output`` (label tuples), or None."""
    if ELLIPSIS in output or any(ELLIPSIS in t for t in inputs):
        return None
    tensors = tuple(k for k, t in enumerate(inputs) if t)
    scalars = tuple(k for k, t in enumerate(inputs) if not t)
    for rule in _PLAIN_RULES:
        form = rule(inputs, output, tensors)
        if form is not None:
            return replace(form, scalars=scalars)
    return None


def form_body(form: Form, names: Sequence[Piece], vary: int | None = None,
              inverse: frozenset[int] = frozenset()) -> Piece:
    """The formula, ``vary`` (an operand position) written as a differential ``dX``.

    Operands at positions in ``inverse`` stand for their elementwise reciprocal: divided by
    (a scalar, ``/ s``), in an entrywise quotient (``A ⊘ B``), a diagonal's inverse
    (``Diag(d)⁻¹``), else ``(1 ⊘ B)``. ``names`` are written as given: a compound one comes
    parenthesized."""
    parts = form_parts(form, names, vary, inverse)
    if form.kind in ("hadamard", "rowsum", "colsum"):
        body = hadamard([p for (k, _), p in zip(form.factors, parts) if k not in inverse],
                        [p for (k, _), p in zip(form.factors, parts) if k in inverse])
        if form.kind != "hadamard":  # always: A∘Aᵀ 1 would read as A ∘ (Aᵀ 1)
            body = Piece(f"({body.text})", rf"\left({body.latex}\right)")
            body = juxt([transpose_of(body) if form.kind == "colsum" else body, ONES])
    elif form.kind == "trace":
        body = applied("tr", juxt(parts))
    elif form.kind == "diag":
        only = form.factors[0] if len(form.factors) == 1 else (None, True)
        body = applied("diag", _bare(names, only[0], vary, inverse)
                       if isinstance(only[0], Form) and not only[1] else juxt(parts))
    elif form.kind == "identity":
        body = Piece("I", "I")
        if form.scale is not None:
            body = juxt([grouped(form_body(form.scale, names, vary, inverse)), body])
    else:
        body = juxt(parts, empty="")
    scalars = [_leaf(names, k, False, vary, inverse) for k in form.scalars if k not in inverse]
    if scalars:
        body = juxt(scalars + ([parenthesized(body) if form.kind == "hadamard" else body]
                                if body.text else []))
    divisors = [_leaf(names, k, False, vary, inverse) for k in form.scalars if k in inverse]
    if divisors:
        over = juxt(divisors)
        over = parenthesized(over) if len(divisors) > 1 else over
        top = body if body.text else Piece("1", "1")
        body = Piece(f"{top.text} / {over.text}", rf"{top.latex} / {over.latex}")
    if form.summed:
        body = summation(label_symbols(form.summed), body)
    return body


def _bare(names, position, vary, inverse) -> Piece:
    """An operand as written inside a function's parentheses (``Diag(W 1)``): a form as is."""
    if isinstance(position, Form):
        return form_body(position, names, vary, inverse)
    m = ONES if position is None else names[position]
    return differential_of(m) if position is not None and position == vary else m


def _leaf(names, position, transposed, vary, inverse=frozenset()) -> Piece:
    """An operand as a factor: a compound form parenthesized, ``(A B)ᵀ``."""
    m = _bare(names, position, vary, inverse)
    m = grouped(m) if isinstance(position, Form) else m
    return transpose_of(m) if transposed else m


def grouped(m: Piece) -> Piece:
    """``m`` as one operand: parenthesized unless it reads as one already, a name, a call or
    a group (``tr(A B)``, ``(A ∘ B)ᵀ``): no space, ``∘``, ``⊘`` or ``/`` outside parentheses
    (``x∘x`` transposed is ``(x∘x)ᵀ``), the ``∘`` of an entrywise power ``t^∘3`` aside."""
    depth = 0
    for n, char in enumerate(m.text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and char in " ∘⊘/" and m.text[n - 1:n + 1] != "^∘":
            return Piece(f"({m.text})", rf"\left({m.latex}\right)")
    return m


def form_parts(form: Form, names: Sequence[Piece], vary: int | None = None,
               inverse: frozenset[int] = frozenset()) -> list[Piece]:
    """The factors of ``form`` as written, in order (a product's chain, a Hadamard product's
    operands); a reciprocal as :func:`form_body` writes it outside an entrywise quotient."""
    parts = []
    for n, (k, t) in enumerate(form.factors):
        m = _leaf(names, k, t, vary, inverse)
        if n in form.scaled:
            m = applied("Diag", _bare(names, k, vary, inverse))
            m = Piece(m.text + "⁻¹", m.latex + "^{-1}") if k in inverse else m
        elif k in inverse and form.kind not in ("hadamard", "rowsum", "colsum"):
            m = Piece(f"(1 ⊘ {m.text})", rf"\left(1 \oslash {m.latex}\right)")
        parts.append(m)
    return parts


def hadamard(numerators: Sequence[Piece], denominators: Sequence[Piece] = ()) -> Piece:
    """``A ∘ B ⊘ C``; a square of a name tight, ``A∘A``, as a textbook writes it."""
    tops = list(numerators) or [Piece("1", "1")]
    tight = not denominators and len(tops) > 1 and len(set(tops)) == 1 and _name_like(tops[0].text)
    joint = "∘" if tight else " ∘ "
    body = Piece(joint.join(p.text for p in tops), r" \circ ".join(p.latex for p in tops))
    for d in denominators:
        body = Piece(f"{body.text}{'⊘' if tight else ' ⊘ '}{d.text}", rf"{body.latex} \oslash {d.latex}")
    return body


def _name_like(text: str) -> bool:
    return text.isidentifier() or text.rstrip("ᵀ").isidentifier()


def form_equation(lhs: Piece, form: Form, names: Sequence[Piece]) -> Piece:
    """``lhs = formula``, after "for each b:" when the form is batched (saying that vector
    slices are columns, as the formula reads them: ``"bi,bi->b"`` is ``xᵀ y`` per row b)."""
    equation = equals(lhs, form_body(form, names))
    if not form.batch:
        return equation
    columns = " (slices as column vectors)" if form.columns else ""
    each = Piece(f"for each {listed(label_symbols(form.batch))}{columns}:",
                 r"\text{for each }" + ", ".join(symbol_latex(s) for s in label_symbols(form.batch))
                 + r"\text{" + columns + ":}")
    return spaced(each, equation)
