"""Spec + shapes -> :class:`BoundSpec`: every dimension has its own plain label and one size.

Binding removes the two things that make einsum gradients subtle, so that the symbolic rule in
:mod:`einsgrad.derive` covers them with no special case:

* an ellipsis becomes fresh labels, one per batch dimension, right-aligned across operands;
* a dimension of size 1 that numpy broadcasts against a larger size of the same label becomes a
  fresh label of size 1 that only its operand has: the forward sums it (a squeeze) and the
  backward broadcasts back to it, which is exactly the sum over the broadcast dimension.
"""

from __future__ import annotations

import string
import sys
from dataclasses import dataclass
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from .algebra import Fresh
from .errors import EinsumSpecError
from .spec import ELLIPSIS, SIZE_LIMIT, Spec


@dataclass(frozen=True)
class BoundSpec:
    """A spec whose labels are plain symbols with one size each, bound to operand shapes."""

    spec: Spec
    sizes: tuple[tuple[str, int], ...]

    @property
    def size_of(self) -> dict[str, int]:
        return dict(self.sizes)

    def resized(self, sizes) -> BoundSpec:
        """This spec with some labels' sizes changed (a chunk of a sliced contraction)."""
        if not sizes:
            return self
        return BoundSpec(self.spec, tuple((self.size_of | dict(sizes)).items()))

    @property
    def input_shapes(self) -> tuple[tuple[int, ...], ...]:
        size = self.size_of
        return tuple(tuple(size[l] for l in term) for term in self.spec.inputs)

    @property
    def output_shape(self) -> tuple[int, ...]:
        size = self.size_of
        return tuple(size[l] for l in self.spec.output)


@dataclass(frozen=True)
class ShapeClass:
    """The shape signatures that share one plan and one shape-generic function.

    ``representative`` is the signature the class is planned for (:func:`shape_class`);
    shape-generic code read from that plan takes its sizes from its arguments at run time,
    so it serves every signature of the class. A class is a cache key of its own kind: it
    never equals a signature's plain tuple of shapes.
    """

    representative: tuple[tuple[int, ...], ...]


UNKNOWN_SIZE = 300  # the class of a size not known when planning: the few hundred of a layer


def shape_class(shapes) -> ShapeClass | None:
    """The class of a shape signature, or None where only its exact shapes will do.

    A plan depends on sizes in two ways. Which sizes are 1 changes its structure: a size-1
    dimension broadcast against a larger one is a label of its own, summed away and
    broadcast back. Beyond that, sizes only weigh costs (the path search, which operand of a
    GEMM leads, what is read transposed), so sizes of one order of magnitude choose plans
    within a small factor of the best for each. Hence the class keeps every 1, and maps
    any other size to the representative of its decade, ``3 * 10**k`` for sizes in
    ``[10**k, 10**(k+1))`` (2 to 9 count as the first decade): near its geometric middle, and
    no product of two or more representatives is a representative, so no reshape is taken
    for a no-op because sizes coincide. A size that is not a Python int (a symbolic size of
    ``torch.compile`` or ``torch.export``) has no magnitude to read without fixing it: it
    plans as :data:`UNKNOWN_SIZE`, so that a traced family of sizes shares one graph.
    A signature with an empty dimension (size 0) has no class.
    """
    representative = []
    for shape in shapes:
        sizes = []
        for size in shape:
            if type(size) is not int and not isinstance(size, np.integer):
                sizes.append(UNKNOWN_SIZE)
                continue
            if size == 0:
                return None
            sizes.append(1 if size == 1 else 3 * 10 ** (len(str(int(size))) - 1))
        representative.append(tuple(sizes))
    return ShapeClass(tuple(representative))


class Classified(NamedTuple):
    """A call's shapes as a record's cache key (a :class:`ShapeClass`, or the exact shapes),
    and the output shape those shapes give (checked by binding them)."""

    signature: tuple | ShapeClass
    output_shape: tuple


def classify(spec: Spec, shapes, sizes, exact: bool = False) -> Classified:
    """The record key of ``shapes`` for shape-generic code, and their output shape. The shapes
    are bound to check them, symbolic sizes included (binding only compares them, it never
    fixes them). ``exact`` (a ``memory_limit`` bounds exact sizes' intermediates), batch sizes
    in ``sizes`` (they fix the shapes) and an empty dimension plan for the exact shapes."""
    output_shape = bind(spec, shapes, dict(sizes)).output_shape
    found = None
    if not exact and not any(label == ELLIPSIS for label, _ in sizes):
        found = shape_class(shapes)
    if found is None:  # int(): a symbolic size becomes a concrete one (a guard)
        return Classified(tuple([tuple(map(int, s)) for s in shapes]), tuple(map(int, output_shape)))
    return Classified(found, output_shape)


def differ(shape, other) -> bool:
    """Whether two shapes differ, compared size by size (so that symbolic sizes compare too)."""
    return len(shape) != len(other) or any(a != b for a, b in zip(shape, other))


def _fresh_labels(taken) -> Fresh:
    """Labels for bound dimensions that no spec label has: the unused letters first (readable
    generated code), then characters beyond Latin-1 in code point order, never a surrogate
    (which no encoding writes, so that text holding any label always encodes)."""
    return Fresh(taken, string.ascii_letters, _beyond_latin1)


def _beyond_latin1(letter: str, n: int) -> str:
    """The ``n``-th (1, 2, ...) variant of ``letter`` as :class:`~einsgrad.algebra.Fresh` asks
    for it after the letters: one character, so that round ``n`` of the 52 letters takes the
    next 52 code points past Latin-1 (surrogates skipped), or an error past the last one."""
    code = (n - 1) * len(string.ascii_letters) + string.ascii_letters.index(letter)
    if code >= _FRESH:
        raise EinsumSpecError(f"the shapes need more than {_FRESH:,} labels for batch and broadcast "
                              "dimensions, more than einsgrad can name")
    code += 0x100
    return chr(code if code < _SURROGATES.start else code + len(_SURROGATES))


_SURROGATES = range(0xD800, 0xE000)
_FRESH = sys.maxunicode + 1 - 0x100 - len(_SURROGATES)


def is_count(value, least: int) -> bool:
    """Whether ``value`` is an int (numpy's too, never a bool) of at least ``least``."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= least


def check_shapes(shapes, count: int) -> tuple[tuple[int, ...], ...]:
    """``shapes=`` as a tuple of tuples of non-negative ints, one per operand, or an error
    saying which shape is wrong: the user's shapes are checked once, before binding."""
    try:
        checked = tuple(tuple(d for d in s) for s in shapes)
    except TypeError:
        raise EinsumSpecError(f"shapes must be one shape (a sequence of sizes) per operand, got {shapes!r}") from None
    if len(checked) == count and all(type(d) is int and 0 <= d < SIZE_LIMIT for s in checked for d in s):
        return checked  # plain ints, all valid: a network's thousands of sizes pass in one look
    for i, shape in enumerate(checked):
        if not all(is_count(d, 0) for d in shape):
            raise EinsumSpecError(f"shape {i} must hold non-negative integers, got {shape!r}")
        if any(d >= SIZE_LIMIT for d in shape):
            raise EinsumSpecError(f"shape {i} is {shape!r}: a dimension holds fewer than 2**63 elements")
    if len(checked) != count:
        raise EinsumSpecError(f"the spec names {count} operand(s) but {len(checked)} shapes were given")
    return tuple(tuple(int(d) for d in s) for s in checked)


def bind(spec: Spec, shapes: Sequence[Sequence[int]], sizes: Mapping | None = None) -> BoundSpec:
    """Binds ``spec`` to operand shapes; raises :class:`EinsumSpecError` naming the operand.

    Args:
        spec: a parsed spec.
        shapes: one shape per operand.
        sizes: validated sizes of labels (and of ``"..."``) that only the output has.
    """
    sizes = dict(sizes or {})
    if len(shapes) != len(spec.inputs):
        raise spec.error(
            f"the spec names {len(spec.inputs)} operand(s) but {len(shapes)} were given", None,
            len(spec.output))
    fresh = _fresh_labels(set(spec.labels))

    # Expand the ellipsis into batch labels, right-aligned like numpy broadcasting.
    ellipsis_ranks = []
    for i, (term, shape) in enumerate(zip(spec.inputs, shapes)):
        named = len(term) - (ELLIPSIS in term)
        if ELLIPSIS in term and len(shape) < named:
            raise spec.error(
                f"operand {i} has {len(shape)} dimension(s) but its subscripts "
                f"{''.join(term)!r} name at least {named}", i)
        if ELLIPSIS not in term and len(shape) != named:
            raise spec.error(
                f"operand {i} has {len(shape)} dimension(s) but its subscripts "
                f"{''.join(term)!r} name {named}", i)
        if ELLIPSIS in term:
            ellipsis_ranks.append(len(shape) - named)
    out_batch = sizes.pop(ELLIPSIS, None)
    rank = max(ellipsis_ranks + [len(out_batch or ())])
    batch = tuple(fresh.take() for _ in range(rank))

    def expand(term, ndim_batch):
        labels = []
        for label in term:
            labels.extend(batch[rank - ndim_batch:] if label == ELLIPSIS else (label,))
        return labels

    terms = [expand(term, len(shape) - len(term) + 1) for term, shape in zip(spec.inputs, shapes)]
    output = expand(spec.output, rank)
    if out_batch is not None and ELLIPSIS in spec.output:
        sizes.update(zip(batch[rank - len(out_batch):], out_batch))

    # One size per label: equal within an operand, equal or 1 across operands (broadcast).
    size_of: dict[str, int] = {}
    where: dict[str, int] = {}
    for i, (term, shape) in enumerate(zip(terms, shapes)):
        own: dict[str, int] = {}
        for label, size in zip(term, shape):
            size = _plain(size)
            if own.setdefault(label, size) != size:
                raise _located(spec, i, label,
                               f"label {label!r} repeats in operand {i} with sizes {own[label]} "
                               f"and {size}; a repeated label takes a diagonal, which needs equal sizes")
            if size == 1:
                size_of.setdefault(label, 1)
                continue
            known = size_of.get(label, 1)
            if known not in (1, size):
                raise _located(spec, i, label,
                               f"label {_name(label, batch)} has size {known} in operand {where[label]} "
                               f"but {size} in operand {i}")
            size_of[label] = size
            where.setdefault(label, i)
    for label, size in sizes.items():
        if label in size_of and size_of[label] != size:
            raise EinsumSpecError(
                f"sizes[{label!r}] = {size} but the operands give label {label!r} size {size_of[label]}")
        size_of[label] = size

    # A size-1 dimension broadcast against a larger one gets a label of its own.
    bound_terms = []
    for term, shape in zip(terms, shapes):
        renamed: dict[str, str] = {}
        bound = []
        for label, size in zip(term, shape):
            if size == 1 and size_of[label] != 1:
                if label not in renamed:
                    renamed[label] = fresh.take()
                    size_of[renamed[label]] = 1
                label = renamed[label]
            bound.append(label)
        bound_terms.append(tuple(bound))
    return BoundSpec(Spec.of(bound_terms, output), tuple(size_of.items()))


def _plain(size):
    """A size as a Python int; a symbolic size (``torch.compile``'s) stays symbolic, so that
    checking it adds a condition on it instead of fixing it to one value."""
    return int(size) if isinstance(size, (int, np.integer)) else size


def _name(label: str, batch: tuple[str, ...]) -> str:
    return f"'...' (batch dimension {batch.index(label)})" if label in batch else repr(label)


def _located(spec: Spec, operand: int, label: str, reason: str):
    """Points at the label's column, or at the ellipsis for a batch dimension."""
    term = spec.inputs[operand]
    if label in term:
        return spec.error(reason, operand, term.index(label))
    return spec.error(reason, operand, term.index(ELLIPSIS) if ELLIPSIS in term else 0)
