"""Which layout ``torch.einsum`` gives its result, so that the torch dialect can match it
(its ``strided`` and ``strided_gradient``: :class:`einsgrad.dialects.Dialect`).

``torch.einsum`` of two operands runs one ``bmm`` whose operands it lays out as (labels of
both, labels of the first alone, summed) and (labels of both, summed, labels of the second
alone), each group in the output's order (or the operands swapped), and returns the product
permuted to the output's order: a view, contiguous only where the output lists its labels in
one of those grouped orders (both, first, second or both, second, first), as measured.
(Where nothing is contracted it multiplies instead, into a layout of its own choosing.)
Where it is not, a caller cannot ``.view()`` torch's result either, so einsgrad need not pay
a copy to make its own contiguous. Labels of size 1 take no part (their strides do not count
towards contiguity). One operand, or three and more (a path of pairs), are taken as
contiguous: einsgrad then always copies.

Its gradients are ``bmm``'s, of the operands as it laid them out: the first's (both, first
alone, summed) and the second's (both, summed, second alone), permuted back to each operand's
order, a view again (:func:`strided_gradient`). Where that view is not contiguous and
einsgrad's gradient is a product transposed after, einsgrad returns its view too, the product
in the plan's orientation (the torch dialect would otherwise swap it to be contiguous): no
copy either way, and attention's key gradient ``bhqd,bhqk->bhkd`` is then torch's GEMM, Q^T G
(32x128x128 per head in the training benchmark), not G^T Q (128x128x32), which MKL runs in
0.78x the time in float64 on one thread (measured; about as fast in float32).
"""

from __future__ import annotations

from .shapes import BoundSpec


def strided(bound: BoundSpec) -> bool:
    """Whether ``torch.einsum`` returns a non-contiguous view for this bound spec."""
    if len(bound.spec.inputs) != 2:
        return False
    size = bound.size_of
    first, second = (set(term) - {l for l in term if size[l] == 1} for term in bound.spec.inputs)
    if not (first & second) - set(bound.spec.output):  # nothing contracted: torch multiplies
        return False
    groups = [(0 if label in first and label in second else 1 if label in first else 2)
              for label in bound.spec.output if size[label] != 1]
    swapped = [3 - g if g else g for g in groups]  # torch swaps the operands for (second, first)
    return groups != sorted(groups) and swapped != sorted(swapped)


def strided_gradient(bound: BoundSpec, k: int) -> bool:
    """Whether ``torch.einsum``'s gradient of operand ``k`` is a non-contiguous view, as far
    as the layout above says; False (einsgrad then makes it contiguous) where it does not say:
    nothing contracted, a label repeated or summed within one operand, a label of size 1
    (torch then groups the labels otherwise, as measured), a summed label order that alone
    would decide."""
    if not _one_bmm(bound) or 1 in bound.size_of.values():
        return False
    terms = [list(term) for term in bound.spec.inputs]
    out = list(bound.spec.output)
    first = 1 if _swapped(out, terms) else 0
    own, other = terms[k], terms[1 - k]
    batch = [l for l in out if l in own and l in other]
    alone = [l for l in out if l in own and l not in other]
    summed = set(own) & set(other) - set(out)
    laid = batch + alone + ["summed"] if k == first else batch + ["summed"] + alone
    stored = []  # the operand's labels, each run of summed ones as one
    for label in own:
        if label not in summed:
            stored.append(label)
        elif not stored or stored[-1] != "summed":
            stored.append("summed")
    return stored != laid


def _one_bmm(bound: BoundSpec) -> bool:
    """Whether two operands are contracted by one ``bmm`` of the layout above: something
    summed, no label repeated within an operand or summed by one operand alone."""
    if len(bound.spec.inputs) != 2:
        return False
    size = bound.size_of
    terms = [[l for l in term if size[l] != 1] for term in bound.spec.inputs]
    out = {l for l in bound.spec.output if size[l] != 1}
    if any(len(set(t)) != len(t) for t in terms):
        return False
    a, b = map(set, terms)
    return bool((a & b) - out) and (a | b) <= (a & b) | out


def _swapped(out: list, terms: list) -> bool:
    """Whether torch multiplies the second operand by the first: the output lists its labels
    as (both, second alone, first alone) and not in the unswapped order."""
    a, b = map(set, terms)
    groups = [0 if l in a and l in b else 1 if l in a else 2 for l in out]
    swapped = [3 - g if g else g for g in groups]
    return groups != sorted(groups) and swapped == sorted(swapped)
