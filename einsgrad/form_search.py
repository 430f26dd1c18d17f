"""Finding a spec's matrix form: one rule of :mod:`einsgrad.matrix_forms`, a composition of
them, or a form for each value of batch labels.

A spec that no one rule covers may still be a textbook formula built of several:
``"ij,jk,ik->i"`` is ``((A B) ∘ C) 1``, ``"i,ij->i"`` is ``x ∘ (W 1)``, ``"ii,jj->"`` is
``tr(A) tr(B)``. :func:`composed_form` finds one by contracting one or two operands at a time
into an intermediate of at most two labels that a rule writes, until one rule writes the
rest. Every spec whose operands and output have at most two labels (and no ``...``) has one;
those of more labels have none of their own, but for each value of leading batch labels
(:func:`matrix_form`). Pure: labels in, forms out.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from functools import lru_cache

from .matrix_forms import Form, form_body, plain_form
from .render import Piece
from .spec import ELLIPSIS, Labels, Spec

# The matrix-form search budget: no rule covers more than four factors, and each batch label
# adds one letter to every operand, so larger specs have no matrix form and are not searched.
MAX_FORM_OPERANDS = 6  # operands of one label or more (0-d ones are written in front, any number)
MAX_FORM_LABELS = 8  # distinct labels (and at most twice this many label occurrences)
MAX_FORM_CANDIDATES = 64  # sets of batch labels tried, fewest labels first


def matrix_form(spec: Spec) -> Form | None:
    """The spec in matrix notation, or None; None at once for specs beyond the search budget
    (more than :data:`MAX_FORM_OPERANDS` operands not 0-d, or :data:`MAX_FORM_LABELS` labels).

    One rule's form first, then a composition of rules, then a form of each batch slice."""
    if sum(map(bool, spec.inputs)) > MAX_FORM_OPERANDS or sum(map(len, spec.inputs)) + len(
            spec.output) > 2 * MAX_FORM_LABELS or len(spec.labels) > MAX_FORM_LABELS:
        return None
    return (plain_form(spec.inputs, spec.output) or composed_form(spec.inputs, spec.output)
            or _batched_form(spec.inputs, spec.output))


def composed_form(inputs: tuple[Labels, ...], output: Labels) -> Form | None:
    """``inputs -> output`` as rules' forms nested in one another, or None where an operand
    or the output has more than two labels (or ``...``). The 0-d operands are written in
    front; of the compositions, the one with the fewest nested forms, then the shortest, is
    taken (:func:`_cost`)."""
    tensors = tuple(k for k, t in enumerate(inputs) if t)
    if ELLIPSIS in output or len(output) > 2 or any(ELLIPSIS in t or len(t) > 2 for t in inputs):
        return None
    if not tensors:  # scalars alone, or broadcast: a rule's
        return plain_form(inputs, output)
    order = sorted(range(len(tensors)), key=lambda m: inputs[tensors[m]])  # one cache entry per multiset
    found = _composed(tuple(inputs[tensors[m]] for m in order), tuple(output))
    if found is None:
        return None
    form = _placed(found, {n: tensors[m] for n, m in enumerate(order)})
    return replace(form, scalars=tuple(k for k, t in enumerate(inputs) if not t) + form.scalars)


@lru_cache(maxsize=4096)
def _composed(inputs: tuple[Labels, ...], output: Labels) -> Form | None:
    """A composition over ``inputs`` (none 0-d but those made here): a rule's form, or one
    or two operands contracted into an intermediate of at most two labels (those another
    operand or the output reads), written by a rule, and the rest composed around it."""
    direct = plain_form(inputs, output)
    if direct is not None:
        return direct
    best = None
    for size in (1, 2):
        for chosen in itertools.combinations(range(len(inputs)), size):
            if size == 2 and not set(inputs[chosen[0]]) & set(inputs[chosen[1]]):
                continue  # an outer product: the rules write one where it is read (x yᵀ)
            rest = tuple(k for k in range(len(inputs)) if k not in chosen)
            read = {l for k in rest for l in inputs[k]} | set(output)
            kept = tuple(l for l in dict.fromkeys(l for k in chosen for l in inputs[k]) if l in read)
            if len(kept) > 2 or size == 1 and len(kept) == len(inputs[chosen[0]]):
                continue  # a tensor of three labels, or one operand as it stands
            for labels in dict.fromkeys((kept, kept[::-1])):
                form = _step(inputs, output, chosen, rest, labels)
                if form is not None and (best is None or _cost(form) < _cost(best)):
                    best = form
    return best


def _step(inputs, output, chosen, rest, labels) -> Form | None:
    """The operands ``chosen`` contracted to ``labels`` by one rule, and the rest composed
    with that intermediate as their last operand."""
    inner = plain_form(tuple(inputs[k] for k in chosen), labels)
    if inner is None:
        return None
    outer = composed_form(tuple(inputs[k] for k in rest) + (labels,), output)
    if outer is None:
        return None
    where = dict(enumerate(rest))
    where[len(rest)] = _placed(inner, dict(enumerate(chosen)))
    return _spliced(_placed(outer, where))


def _placed(form: Form, where: dict) -> Form:
    """``form`` with each operand position ``n`` replaced by ``where[n]`` (a position or a
    form), through the forms it holds."""
    def place(k):
        if isinstance(k, Form):
            return _placed(k, where)
        return k if k is None else where[k]
    return replace(form, factors=tuple((place(k), t) for k, t in form.factors),
                   scalars=tuple(place(k) for k in form.scalars),
                   scale=None if form.scale is None else _placed(form.scale, where))


def _spliced(form: Form) -> Form:
    """Products held in a product or a trace written as part of its chain (``A Diag(x) B``,
    not ``(A Diag(x)) B``; a transposed one reversed, ``(A B)ᵀ C`` as ``Bᵀ Aᵀ C``), and
    entrywise products in an entrywise product as one (``A ∘ B ∘ C``); their scalars go in
    front."""
    if form.kind in ("product", "trace"):
        kinds = ("product",)
    elif form.kind in ("hadamard", "rowsum", "colsum"):
        kinds = ("hadamard",)
    else:
        return form
    factors, scaled, scalars = [], [], list(form.scalars)
    for n, (k, t) in enumerate(form.factors):
        if n in form.scaled or not isinstance(k, Form) or k.kind not in kinds or k.batch or k.summed \
                or kinds == ("hadamard",) and k.scalars:
            scaled += [len(factors)] if n in form.scaled else []
            factors.append((k, t))
            continue
        scalars += k.scalars
        inner = list(enumerate(k.factors))
        for m, (j, u) in reversed(inner) if t and kinds == ("product",) else inner:
            scaled += [len(factors)] if m in k.scaled else []
            factors.append((j, u if m in k.scaled else u != t))
    return replace(form, factors=tuple(factors), scaled=tuple(scaled), scalars=tuple(scalars))


def _cost(form: Form) -> tuple[int, int]:
    """(nested forms, the length of its text): the shortest reads best (``Diag(x) W 1``, not
    ``diag(W 1 xᵀ)``; ``(A ∘ C)ᵀ b``, not ``(C ∘ (Diag(b) A))ᵀ 1``)."""
    return _nested(form), len(form_body(form, _PLACEHOLDERS).text)


def _nested(form: Form) -> int:
    held = [k for k, _ in form.factors if isinstance(k, Form)] + [k for k in form.scalars if isinstance(k, Form)]
    return len(held) + sum(map(_nested, held))


_PLACEHOLDERS = tuple(Piece(f"A{n}", f"A{n}") for n in range(MAX_FORM_OPERANDS))


def _leading(strip, term) -> bool:
    """The stripped labels of ``term`` are its first axes (batch axes lead, as in "bij")."""
    held = sum(label in strip for label in term)
    return all(label in strip for label in term[:held])


def _batched_form(inputs, output) -> Form | None:
    """A form for each value of batch labels, fewest first: leading labels every operand
    holds once (``...`` may be missing from some: they are the same for every batch). In the
    output they read "for each b" (batched matmul); not in it, a sum over b. At most
    :data:`MAX_FORM_CANDIDATES` sets of batch labels are tried.
    """
    tensors = [t for t in inputs if t]
    candidates = [l for l in dict.fromkeys(l for t in tensors for l in t) if output.count(l) <= 1
                  and (l == ELLIPSIS or all(t.count(l) == 1 for t in tensors))]
    subsets = itertools.chain.from_iterable(
        itertools.combinations(candidates, size) for size in range(1, len(candidates) + 1))
    for strip in itertools.islice(subsets, MAX_FORM_CANDIDATES):
        rest = tuple(tuple(l for l in t if l not in strip) for t in inputs)
        if not any(rest) or not all(_leading(strip, t) for t in (*inputs, output)):
            continue
        kept = tuple(l for l in output if l not in strip)
        form = plain_form(rest, kept) or composed_form(rest, kept)
        columns = any(len(t) == 1 for t in (*rest, kept))
        if form is not None and (columns and not any(l in output for l in strip)):
            continue  # "Σ_i a (G ∘ X)" of row slices: no reader would take it as meant
        if form is not None:
            return replace(form, batch=tuple(l for l in strip if l in output),
                           summed=tuple(l for l in strip if l not in output),
                           columns=columns)
    return None
