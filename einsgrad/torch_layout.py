"""Which layout ``torch.einsum`` gives its result, so that the torch dialect can match it.

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
