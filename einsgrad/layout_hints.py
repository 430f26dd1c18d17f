"""Where a transposed copy goes: what a step's reader wants of its result's layout, the
orders copies are made in, and what a copy costs.

The planner tells each pairwise step how its reader would read its result as stored
(:class:`Hint`); the lowering then arranges the step's GEMM operands, or its operands' copies,
so that the result comes out that way (:func:`arranged`, :func:`multiplied_order`). A hint
moves a transposed copy from the reader to the writer, and on small values that removes a
numpy call per copy, whatever the order. On large ones the two copies are not alike: a
permutation that keeps a long innermost run moves memory at about copying speed, one that
scatters short runs over many axes is several times slower (:func:`copy_cost`). So where a
step's values hold :data:`WEIGHED` elements or more, the lowering weighs the step lowered with
its hint against the step lowered without it, each with what its reader then pays
(:func:`reading_cost`), and takes the cheaper; and a large operand's copy is made in the
cheapest of the orders that read as GEMM blocks (:func:`cheap_order`, :func:`matching_order`,
each :func:`exchanged`).
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, NamedTuple

from .spec import Labels
from .steps import Copy, Multiply, Step

WEIGHED = 2**16
"""Elements of a step's largest value from which its hint is weighed by cost. Below it a copy
costs little more than its call, and a hint that removes one wins (measured on 60-100 tensor
networks of bond 2 to 4: 1.1-1.3x faster with hints)."""

SCATTERED_NS = 20.0
"""Nanoseconds a copy pays per run of contiguous elements when its blocks scatter over many
axes (a cache and TLB miss each), on top of moving the bytes."""

BYTE_NS = 0.05
"""Nanoseconds per byte of a copy that reads and writes long runs (16 MiB in about 0.7 ms)."""


class Hint(NamedTuple):
    """How the steps reading a pairwise step's result would read it as stored: ``summed``, the
    labels they contract, in one block at either end of the result, in this order (their
    other operand's); ``order``, the order wanted for all of its labels, where one is (none:
    any order of the others)."""

    summed: Labels
    order: Labels = ()


def copy_cost(shape: tuple[int, ...], perm: tuple[int, ...], itemsize: int = 8) -> float:
    """Estimated nanoseconds of ``x.transpose(perm).copy()`` for a C-ordered ``x`` of ``shape``.

    numpy walks the copy in its C order, coalescing the axes that stay together, and moves
    one run (the innermost block) per call of its inner loop. Measured on 2**21-element float64
    arrays: a kept innermost run of 64 elements or more copies at about memcpy speed
    (0.8-1.4 ms); runs of 2-16 elements cost 2-8x that where the blocks scatter over 15 axes or
    more, much less over 2-4 axes (their few streams prefetch); an inner block read strided
    costs a cache line per element where the stride passes a line."""
    n = math.prod(shape)
    if n == 0:
        return 0.0
    longer = [axis for axis in range(len(shape)) if shape[axis] != 1]
    after = dict(zip(longer, longer[1:]))  # the next source axis longer than 1
    axes = [axis for axis in perm if shape[axis] != 1]
    starts = [i for i in range(1, len(axes)) if after.get(axes[i - 1]) != axes[i]]  # where a block starts
    if not starts:
        return n * itemsize * BYTE_NS
    inner, stride = math.prod(shape[axis] for axis in axes[starts[-1]:]), math.prod(shape[axes[-1] + 1:])
    per_run = SCATTERED_NS * min(1.0, len(starts) / 7)  # 2 blocks: a few ns; 8 or more: all of it
    strided = 1.5 * min(stride * itemsize, 64) / 64 if stride > 1 else 0.0
    return n * (itemsize * BYTE_NS + strided + per_run / inner)


def copies_cost(steps: Iterable[Step], size: Mapping[str, int]) -> float:
    """The estimated nanoseconds of the transposed copies among ``steps`` (a product's
    transposed views are read as a copy would read them), from each step's input labels."""
    total = 0.0
    for step in steps:
        op = step.operation
        if type(op) is Copy:
            total += copy_cost(tuple(size[l] for l in step.inputs[0]), op.perm)
        elif type(op) is Multiply:
            total += sum(copy_cost(tuple(size[l] for l in labels), layout.perm)
                         for labels, layout in zip(step.inputs, (op.a, op.b)) if layout.perm is not None)
    return total


def cheap_order(labels: Labels, batch: set, first: set, second: set) -> Labels:
    """A copy order of ``labels`` that reads as (batch, first, second) blocks, up to swapping
    the last two, each block in stored order. The block holding the innermost stored label
    goes last: a transposing copy that keeps the innermost axis innermost moves contiguous
    runs, and runs several times faster than one that moves it outward."""
    keep = lambda group: tuple(l for l in labels if l in group)  # noqa: E731
    head, one, two = keep(batch), keep(first), keep(second)
    return head + (two + one if labels[-1] in one else one + two)


def matching_order(labels: Labels, batch_order: Labels, summed: Labels, free: set) -> Labels:
    """A copy order of ``labels`` whose batch and contracted labels follow another operand's
    (``batch_order``, ``summed``); free labels keep their stored order, innermost block last."""
    own = tuple(l for l in labels if l in free)
    return batch_order + (summed + own if labels[-1] in free else own + summed)


def exchanged(order: Labels, free: set, batch: int) -> Labels:
    """A GEMM operand's copy ``order`` with its free and contracted blocks in each other's
    place after its ``batch`` leading labels: read the other way round (BLAS transposes)."""
    head, rest = order[:batch], order[batch:]
    lead = [l for l in rest if (l in free) == (rest[0] in free)] if rest else []
    return head + tuple(l for l in rest if l not in lead) + tuple(lead)


def reading_cost(order: Labels, hint: Hint, size: Mapping[str, int]) -> float:
    """What the reader that ``hint`` describes pays to read a value laid out in ``order``:
    nothing where its contracted labels are one block at an end (:func:`fits`), else a copy
    of the value that makes them one, the cheapest of moving them first or last, in their
    order in ``hint`` or in ``order`` (where the reader copies its other operand to match)."""
    if fits(order, hint):
        return 0.0
    shape = tuple(size[l] for l in order)
    summed = set(hint.summed)
    rest = tuple(i for i, l in enumerate(order) if l not in summed)
    hinted, stored = tuple(order.index(l) for l in hint.summed), tuple(i for i, l in enumerate(order) if l in summed)
    blocks = dict.fromkeys((hinted, stored))
    return min(min(copy_cost(shape, rest + block), copy_cost(shape, block + rest)) for block in blocks)


def multiplied_order(natural: Labels, hint: Hint) -> Labels:
    """The order of a product with nothing contracted for ``hint``: its own where it holds the
    same labels, else ``natural`` with the labels ``hint.summed`` moved last, in that order."""
    if set(hint.order) == set(natural) and len(hint.order) == len(natural):
        return tuple(hint.order)
    summed = set(hint.summed)
    return tuple(l for l in natural if l not in summed) + tuple(l for l in hint.summed if l in natural)


def misfit(order: Labels, hint: Hint) -> int:
    """How far a result in ``order`` is from what ``hint`` asks: 0, as asked (its ``summed``
    labels one block at an end, in their order, and all in ``hint.order`` where it is given);
    1, all but ``hint.order`` (where a block holds two labels or more: single labels read
    either way round); 2, the block at an end in another order (a reader copies the other
    operand or this); 3, no such block (a reader copies this)."""
    summed = hint.summed
    n = len(summed)
    head, tail = order[:n], order[len(order) - n:]
    if not fits(order, hint):
        return 3
    if head != summed and tail != summed:
        return 2
    if len(order) - n < 2 and n < 2:  # one label a block: read either way round, as stored
        return 0
    return 1 if hint.order and tuple(order) != tuple(hint.order) else 0


def fits(order: Labels, hint: Hint) -> bool:
    """Whether the labels ``hint.summed`` are one block at the start or the end of ``order``."""
    n = len(hint.summed)
    wanted = set(hint.summed)
    return set(order[:n]) == wanted or set(order[len(order) - n:]) == wanted


def arranged(order: Labels, free: set, other_free: set, first: bool, hint: Hint | None,
             partial: bool = False) -> Labels:
    """A GEMM operand's copy ``order`` with its free labels (``free``, the result's first block
    if ``first``, else its last, beside the other operand's ``other_free``) arranged so that
    the result's labels ``hint.summed`` make one block at one end, in that order, and the
    others follow ``hint.order``: then the step reading the result reads it as stored. The free
    block sits where it was; the order itself where no arrangement does it (the other
    operand's free labels both in and out of ``summed``, or none of ``free`` in it).

    With ``partial`` (a large operand), where no arrangement does it and ours is the result's
    last block, its labels of each kind (summed by the reader or not) are grouped, in stored
    order, the kind of its innermost label last: the reader must copy the result, and its copy
    then keeps that group as one run (:func:`copy_cost`)."""
    if hint is None:
        return order
    wanted = set(hint.summed)
    inside = [l for l in hint.summed if l in free]
    if not inside:
        return order
    outside = [l for l in order if l in free and l not in wanted]
    if hint.order:
        rank = {l: i for i, l in enumerate(hint.order)}
        outside.sort(key=lambda l: rank.get(l, len(rank)))  # stable: the rest keep their order
    theirs = other_free & wanted
    if theirs == other_free:  # the other block is all hint (or empty): ours ends beside it
        block = outside + inside if first else inside + outside
    elif not theirs:  # the other block is all outside: ours starts with the hint
        block = inside + outside if first else outside + inside
    elif partial and not first:
        last = [l for l in order if l in free][-1] in wanted
        block = [l for l in order if l in free and (l in wanted) != last] + [
            l for l in order if l in free and (l in wanted) == last]
    else:
        return order
    rearranged = iter(block)
    return tuple(next(rearranged) if l in free else l for l in order)
