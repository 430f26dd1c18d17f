"""One step of a plan -> the operation computing it, with its layouts and transposed copies.

A unary step (any extended one-operand spec: diagonals, sums, broadcasts, diagonal placement)
is one :class:`~einsgrad.steps.Unary` chain of views and reductions. A pairwise step becomes a
:class:`~einsgrad.steps.Matmul` (one batched GEMM whose operands are read as stored, transposed
by BLAS, or from a transposed :class:`~einsgrad.steps.Copy`), a
:class:`~einsgrad.steps.Multiply` when nothing is contracted, or an
:class:`~einsgrad.steps.Einsum2` for a batched dot. Which steps a plan holds is
:mod:`einsgrad.plan`'s question, not this module's.
"""

from __future__ import annotations

import math
from typing import Mapping, NamedTuple

from .spec import Labels, Spec
from .steps import Add, Copy, Dims, Einsum2, Layout, Matmul, Multiply, Operation, Step, Unary


class Lowering:
    """The steps of one plan as they are lowered, and every value's labels and freshness.

    The planner decides which steps there are and in which order; this decides how each is
    computed. It also remembers each value's transposed copies, so that later steps (the
    backward, above all) read a copy made once instead of copying again. Used once per plan.
    """

    def __init__(self, size: Mapping[str, int]):
        self.size = size
        self.labels: dict[str, Labels] = {}
        self.fresh: dict[str, bool] = {}
        self.steps: list[Step] = []
        self.copies: dict[str, list[str]] = {}  # value -> its transposed copies
        self.count = 0
        self.products: dict[Labels, int] = {}  # labels -> the product of their sizes

    def elements(self, labels) -> int:
        """The product of the sizes of ``labels`` (a value's element count), remembered: the
        same few label tuples are weighed many times per step."""
        key = labels if type(labels) is tuple else tuple(labels)
        found = self.products.get(key)
        if found is None:
            found = self.products[key] = math.prod(self.size[l] for l in key)
        return found

    def name(self, prefix: str) -> str:
        """A new value name: ``prefix`` and a counter shared by every prefix."""
        self.count += 1
        return f"{prefix}{self.count - 1}"

    def argument(self, name: str, labels: Labels) -> str:
        """An argument of the plan: a value with ``labels`` that no step made (not fresh)."""
        self.labels[name] = labels
        self.fresh[name] = False
        return name

    def _add(self, target, args, spec, operation, perm, labels, flops, fresh) -> str:
        shape = tuple(self.size[l] for l in labels)
        inputs = tuple(self.labels[a] for a in args)
        self.steps.append(Step(target, args, str(spec), operation, perm, labels, shape, flops, fresh, inputs))
        self.labels[target] = labels
        self.fresh[target] = fresh
        return target

    def unary(self, target: str, arg: str, out: Labels) -> str:
        """``arg -> out`` for any extended unary spec."""
        x = self.labels[arg]
        size = self.size
        # Each repeated label is merged pairwise by ndarray.diagonal, which moves it last.
        distinct, pairs = list(x), []
        for label in dict.fromkeys(x):
            while distinct.count(label) > 1:
                p = distinct.index(label)
                q = distinct.index(label, p + 1)
                pairs.append((p, q))
                distinct = [l for i, l in enumerate(distinct) if i not in (p, q)] + [label]
        diagonal = tuple(pairs) or None
        distinct = tuple(distinct)
        out_distinct = tuple(dict.fromkeys(out))
        # Summing a size-1 axis away, or broadcasting to size 1, is a reshape: a view.
        sum_axes = tuple(i for i, l in enumerate(distinct) if l not in out_distinct and size[l] != 1)
        rest = [l for l in distinct if l in out_distinct or size[l] == 1]
        kept = [l for l in out_distinct if l in rest]
        if [l for l in rest if l in out_distinct] == kept:
            perm, order = None, rest  # in order already, but for size-1 axes the reshape drops
        else:
            order = kept + [l for l in rest if l not in out_distinct]
            perm = tuple(rest.index(l) for l in order)
        ones_dims = tuple((l,) if l in rest else () for l in out_distinct)
        ones = _sizes(ones_dims, size)
        reshape = None if ones == tuple(size[l] for l in order) else ones
        full_dims = tuple((l,) for l in out_distinct)
        full = _sizes(full_dims, size)
        broadcast = None if ones == full else full
        place = None
        if len(out_distinct) != len(out):
            place = tuple(tuple(i for i, l in enumerate(out) if l == u) for u in out_distinct)
        shape = tuple(size[l] for l in out)
        # A pure broadcast stays a read-only view; of an argument, it views a small copy,
        # so that no result shares memory with what the caller passed.
        own = broadcast is not None and place is None and not sum_axes and not self.fresh[arg]
        fresh = bool(sum_axes) or place is not None or own or (
            self.fresh[arg] and (diagonal is None or broadcast is not None))
        # Views (diagonal, transpose, reshape, broadcast) cost nothing; sums read, places write.
        flops = (math.prod(size[l] for l in distinct) if sum_axes else 0) + (
            math.prod(size[l] for l in out_distinct) if place is not None else 0)
        return self._add(target, (arg,), Spec((x,), tuple(out)),
                         Unary(diagonal, sum_axes, perm, reshape, broadcast, place, shape, own,
                               None if reshape is None else ones_dims,
                               None if broadcast is None else full_dims),
                         None, tuple(out), flops, fresh)

    def binary(self, target: str, a_name: str, b_name: str, out: Labels, exact: bool) -> str:
        """A pairwise contraction; the result is in ``out`` order if ``exact``, else in the
        order the GEMM produces (batch, then a's free labels, then b's)."""
        a, b, size = self.labels[a_name], self.labels[b_name], self.size
        assert len(set(a)) == len(a) and len(set(b)) == len(b) and len(set(out)) == len(out)
        assert set(out) <= set(a) | set(b)
        assert all(l in b or l in out for l in a) and all(l in a or l in out for l in b)
        big = a if self.elements(a) >= self.elements(b) else b
        batch = [l for l in big if l in a and l in b and l in out]
        contracted = [l for l in big if l in a and l in b and l not in out]
        free_a = [l for l in a if l not in b]
        free_b = [l for l in b if l not in a]
        natural = tuple(batch + free_a + free_b)
        prod = self.elements
        shape = tuple(size[l] for l in natural)
        if not contracted:
            ones_a, ones_b = ((),) * len(free_b), ((),) * len(free_a)
            singles = lambda labels: tuple((l,) for l in labels)  # noqa: E731
            operation: Operation = Multiply(
                _reshaped(a, batch + free_a, singles(batch + free_a) + ones_a, size),
                _reshaped(b, batch + free_b, singles(batch) + ones_b + singles(free_b), size))
            flops = prod(natural)
        elif not free_a and not free_b and len(set(a) | set(b)) <= 52:
            letters = {l: chr(97 + i) if i < 26 else chr(39 + i) for i, l in enumerate(dict.fromkeys(a + b))}
            spell = lambda labels: "".join(letters[l] for l in labels)  # noqa: E731
            operation = Einsum2(f"{spell(a)},{spell(b)}->{spell(natural)}")
            flops = 2 * prod(natural) * prod(contracted)
        else:
            first, second, lay_a, lay_b, batch, rows, cols = self._gemm_operands(
                a_name, b_name, set(batch), set(contracted), tuple(out) if exact else None)
            if first != a_name and first not in self.copies.get(a_name, ()):
                a, b = b, a  # the roles were swapped: show the step as the GEMM runs it
            a_name, b_name = first, second
            natural = tuple(batch + rows + cols)
            shape = tuple(size[l] for l in natural)
            made = (prod(batch),) * bool(batch) + (prod(rows), prod(cols))
            same = made == shape
            operation = Matmul(lay_a, lay_b, None if same else shape,
                               None if same else tuple((l,) for l in natural))
            flops = 2 * prod(natural) * prod(contracted)
        labels, perm = natural, None
        if exact and natural != tuple(out):
            labels, perm = tuple(out), _perm(natural, out)
        return self._add(target, (a_name, b_name), Spec((a, b), labels), operation, perm, labels,
                         flops, True)

    def _gemm_operands(self, a_name: str, b_name: str, batch: set, contracted: set, out=None):
        """Chooses how both sides of a GEMM are read: as stored, or from a transposed copy,
        and which operand goes first (the result is (batch, its free labels, the other's)).

        Of the ways to read both operands as stored, the one that reads the least data
        transposed wins (BLAS kernels read a large transposed operand slower), counting a
        result that must then be transposed into ``out`` as read transposed. An operand whose
        labels do not fall into (batch, rows, cols) blocks needs a copy. Copies are steps of
        their own, remembered per value, so that later steps (the backward, above all) read
        them too, transposed by BLAS where their blocks come swapped.
        """
        a_labels, b_labels = self.labels[a_name], self.labels[b_name]
        free_a = {l for l in a_labels if l not in contracted and l not in batch}
        free_b = {l for l in b_labels if l not in contracted and l not in batch}
        reads_a = self._reads(a_name, batch, free_a, contracted)  # a first: rows its free labels
        reads_b = self._reads(b_name, batch, contracted, free_b)
        free = [(pair, (a_name, b_name)) for pair in _matching(reads_a, reads_b)]
        free += [(pair, (b_name, a_name)) for pair in _matching(self._reads(b_name, batch, free_b, contracted),
                                                                 self._reads(a_name, batch, contracted, free_a))]
        if free:
            elements = self.elements

            def transposed(choice):
                (_, ra), (_, rb) = choice[0]
                late = out is not None and ra.batch + ra.rows + rb.cols != out
                return sum(elements(self.labels[n]) for n, r in choice[0] if r.swap) + (elements(out) if late else 0)

            pair, _ = min(free, key=transposed)
        else:
            pair = self._copied_reads(a_name, b_name, batch, contracted, free_a, free_b, reads_a, reads_b)
        (a_name, ba), (b_name, bb) = pair
        return (a_name, b_name, self._read(a_name, ba), self._read(b_name, bb),
                list(ba.batch), list(ba.rows), list(bb.cols))

    def _copied_reads(self, a_name, b_name, batch, contracted, free_a, free_b, reads_a, reads_b):
        """Reads of both GEMM operands when they cannot both be read as stored.

        The larger operand is read as stored if it can be, else copied in the order cheapest
        to transpose (:func:`_cheap_order`); the smaller one is read as stored if its batch
        and contracted labels then come in the same order, else copied to match.
        """
        elements = lambda name: self.elements(self.labels[name])  # noqa: E731
        sides = {True: (a_name, free_a, reads_a), False: (b_name, free_b, reads_b)}  # True: a's role

        def roles(is_a, free):  # (rows, cols): a reads (free, contracted), b (contracted, free)
            return (free, contracted) if is_a else (contracted, free)

        def summed_order(is_a, read):
            return read[1].cols if is_a else read[1].rows

        lead_is_a = elements(a_name) >= elements(b_name)
        name, free, reads = sides[lead_is_a]
        lead = reads[0] if reads else self._copy(
            name, _cheap_order(self.labels[name], batch, *roles(lead_is_a, free)), batch, *roles(lead_is_a, free))
        batch_order, summed = lead[1].batch, summed_order(lead_is_a, lead)
        name, free, reads = sides[not lead_is_a]
        matching = [r for r in reads if r[1].batch == batch_order and summed_order(not lead_is_a, r) == summed]
        follow = matching[0] if matching else self._copy(
            name, _matching_order(self.labels[name], batch_order, summed, free), batch, *roles(not lead_is_a, free))
        return (lead, follow) if lead_is_a else (follow, lead)

    def _reads(self, name: str, batch: set, rows: set, cols: set) -> list:
        """(value, blocks) for ``name`` and its copies that read as (batch, rows, cols)."""
        reads = [(n, _blocks(self.labels[n], batch, rows, cols)) for n in (name, *self.copies.get(name, ()))]
        return [(n, r) for n, r in reads if r]


    def _copy(self, name: str, order: Labels, batch, rows, cols):
        """A contiguous transposed copy of ``name`` with labels in ``order``, as a step."""
        labels = self.labels[name]
        target = self._add(self.name("t"), (name,), Spec((labels,), tuple(order)),
                           Copy(tuple(labels.index(l) for l in order)), None, tuple(order), 0, True)
        self.copies.setdefault(name, []).append(target)
        return target, _blocks(tuple(order), batch, rows, cols)

    def _read(self, name: str, blocks: "Blocks") -> Layout:
        first, second = (blocks.cols, blocks.rows) if blocks.swap else (blocks.rows, blocks.cols)
        dims = ((blocks.batch,) if blocks.batch else ()) + (first, second)
        shape = _sizes(dims, self.size)
        if shape == tuple(self.size[l] for l in self.labels[name]):
            return Layout(None, None, blocks.swap)
        return Layout(None, shape, blocks.swap, dims)

    def add(self, target: str, a_name: str, b_name: str) -> str:
        """``a + b``, two values with the same labels in the same order."""
        labels = self.labels[a_name]
        assert labels == self.labels[b_name], (labels, self.labels[b_name])
        return self._add(target, (a_name, b_name), Spec((labels, labels), labels), Add(), None,
                         labels, math.prod(self.size[l] for l in labels), True)

    def step(self, target: str, args: tuple[str, ...], out: Labels, exact: bool) -> str:
        """A unary or pairwise step; pairwise needs distinct labels, else a unary fixes them."""
        if len(args) == 1:
            return self.unary(target, args[0], out)
        if exact and len(set(out)) != len(out):
            core = self.binary(self.name("t"), *args, tuple(dict.fromkeys(out)), False)
            return self.unary(target, core, out)
        return self.binary(target, *args, out, exact)


def _matching(reads_a: list, reads_b: list) -> list:
    """Every pair of reads of a GEMM's first operand (rows: its free labels) and its second
    (rows: the contracted labels), as stored, with batch and contracted labels in the same order."""
    return [(ra, rb) for ra in reads_a for rb in reads_b if ra[1].batch == rb[1].batch and ra[1].cols == rb[1].rows]


class Blocks(NamedTuple):
    """An operand's labels read as (batch, rows, cols) blocks; ``swap``: stored (cols, rows)."""

    batch: Labels
    rows: Labels
    cols: Labels
    swap: bool


def _blocks(order: Labels, batch: set, rows: set, cols: set) -> Blocks | None:
    """How ``order`` reads as (batch, rows, cols) without a copy, or None if it cannot."""
    nb = len(batch)
    if set(order[:nb]) != batch:
        return None
    rest = order[nb:]
    nr = len(rows)
    if set(rest[:nr]) == rows:
        return Blocks(order[:nb], rest[:nr], rest[nr:], False)
    nc = len(cols)
    if set(rest[:nc]) == cols:
        return Blocks(order[:nb], rest[nc:], rest[:nc], True)
    return None


def _cheap_order(labels: Labels, batch: set, first: set, second: set) -> Labels:
    """A copy order of ``labels`` that reads as (batch, first, second) blocks, up to swapping
    the last two, each block in stored order. The block holding the innermost stored label
    goes last: a transposing copy that keeps the innermost axis innermost moves contiguous
    runs, and runs several times faster than one that moves it outward."""
    keep = lambda group: tuple(l for l in labels if l in group)  # noqa: E731
    head, one, two = keep(batch), keep(first), keep(second)
    return head + (two + one if labels[-1] in one else one + two)


def _matching_order(labels: Labels, batch_order: Labels, summed: Labels, free: set) -> Labels:
    """A copy order of ``labels`` whose batch and contracted labels follow another operand's
    (``batch_order``, ``summed``); free labels keep their stored order, innermost block last."""
    own = tuple(l for l in labels if l in free)
    return batch_order + (summed + own if labels[-1] in free else own + summed)


def _perm(labels, order) -> tuple[int, ...] | None:
    perm = tuple(labels.index(l) for l in order)
    return None if perm == tuple(range(len(labels))) else perm


def _reshaped(labels: Labels, order, dims: Dims, size, swap=False) -> Layout:
    """Transposes ``labels`` into ``order`` and reshapes to ``dims``; skips what is a no-op."""
    perm = _perm(labels, order)
    shape = _sizes(dims, size)
    if perm is None and shape == tuple(size[l] for l in labels):
        return Layout(None, None, swap)
    return Layout(perm, shape, swap, dims)


def _sizes(dims: Dims, size) -> tuple[int, ...]:
    """The shape that ``dims`` spells, in the sizes of ``size``."""
    return tuple(math.prod(size[l] for l in group) for group in dims)
