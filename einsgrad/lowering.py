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
import operator
from typing import Callable, Mapping, NamedTuple

from .layout_hints import (WEIGHED, Hint, arranged, cheap_order, copies_cost, copy_cost, exchanged, matching_order,
                           misfit, multiplied_order, reading_cost)
from .spec import Labels, canonical_text
from .steps import Add, Copy, Dims, Einsum2, Layout, Matmul, Multiply, Operation, Step, Unary


class Lowering:
    """The steps of one plan as they are lowered, and every value's labels and freshness.

    The planner decides which steps there are and in which order; this decides how each is
    computed. It also remembers each value's transposed copies, so that later steps (the
    backward, above all) read a copy made once instead of copying again. Used once per plan.

    A network repeats a few pairwise steps up to the names of their labels (a chain's
    thousand GEMMs are two or three patterns, a circuit's gates a few dozen), and how a step
    is lowered depends on nothing but its operands', copies' and output's labels and sizes.
    So each pattern is lowered once (:meth:`binary`) and its steps are replayed, relabelled,
    for every step of the same pattern (:class:`Pattern`).
    """

    def __init__(self, size: Mapping[str, int]):
        self.size = size
        self.labels: dict[str, Labels] = {}
        self.fresh: dict[str, bool] = {}
        self.steps: list[Step] = []
        self.copies: dict[str, list[str]] = {}  # value -> its transposed copies
        self.count = 0
        self.products: dict[Labels, int] = {}  # labels -> the product of their sizes
        self.patterns: dict[tuple, Pattern] = {}  # pairwise steps lowered, by their pattern
        self.picks: dict[tuple, Picks] = {}  # how the replays of each pattern relabel, by the same key

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

    def _add(self, target, args, spec: str, operation, perm, labels, flops, fresh, kernel=None,
             shape=None) -> str:
        """Appends the step making ``target``; ``spec`` is its text over the bound labels,
        ``kernel`` the operation of its pattern's first step (see :class:`~einsgrad.steps.Step`),
        ``shape`` the result's, where known (else the sizes of ``labels``)."""
        known = self.labels
        if shape is None:
            shape = tuple(map(self.size.__getitem__, labels))
        inputs = tuple(map(known.__getitem__, args))
        self.steps.append(Step(target, args, spec, operation, perm, labels, shape, flops, fresh, inputs, kernel))
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
        return self._add(target, (arg,), canonical_text((x,), out),
                         Unary(diagonal, sum_axes, perm, reshape, broadcast, place, shape, own,
                               None if reshape is None else ones_dims,
                               None if broadcast is None else full_dims),
                         None, tuple(out), flops, fresh)

    def binary(self, target: str, a_name: str, b_name: str, out: Labels, exact: bool,
               hint: "Hint | None" = None) -> str:
        """A pairwise contraction; the result is in ``out`` order if ``exact``, else in the
        order the GEMM produces (batch, then a's free labels, then b's), arranged where it can
        be as ``hint`` asks (:class:`~einsgrad.layout_hints.Hint`, :meth:`weighed`). Lowered as the
        first step of its pattern was, relabelled, where one was (:class:`Pattern`)."""
        if exact:
            hint = None
        known, copies = self.labels, self.copies
        a, b = known[a_name], known[b_name]
        copies_a, copies_b = tuple(copies.get(a_name, ())), tuple(copies.get(b_name, ()))  # as they are now
        if a_name == b_name or a_name in copies_b or b_name in copies_a:
            return self.weighed(target, a_name, b_name, out, exact, hint)
        names = tuple(dict.fromkeys(a + b))
        at = dict(zip(names, range(len(names)))).__getitem__
        # Every label tuple by its labels' positions in ``names`` (a's are 0, 1, ...: its length
        # says them), and the labels' sizes.
        key = (len(a), tuple(map(at, b)), tuple(map(at, out)), exact, tuple(map(self.size.__getitem__, names)),
               tuple([tuple(map(at, known[c])) for c in copies_a]), tuple([tuple(map(at, known[c])) for c in copies_b]),
               None if hint is None else (tuple(map(at, hint.summed)), tuple(map(at, hint.order))))
        found = self.patterns.get(key)
        if found is not None:
            picks = self.picks.get(key)
            if picks is None:  # made at a pattern's first replay: most of a grid's are never replayed
                picks = self.picks[key] = Picks.of(found)
            return self._replay(found, picks, target, a_name, b_name, names)
        start = len(self.steps)
        self.weighed(target, a_name, b_name, out, exact, hint)
        sides = {a_name: (0, -1), b_name: (1, -1)}
        sides.update((c, (0, i)) for i, c in enumerate(copies_a))
        sides.update((c, (1, i)) for i, c in enumerate(copies_b))
        *made, step = self.steps[start:]
        self.patterns[key] = Pattern("".join(names), sides, tuple(made), step)
        return target

    def weighed(self, target: str, a_name: str, b_name: str, out: Labels, exact: bool,
                hint: Hint | None) -> str:
        """:meth:`fresh_binary` with ``hint``, or without it where that costs less: on a step
        whose largest value holds :data:`~einsgrad.layout_hints.WEIGHED` elements or more, the
        copies each way makes and the one its reader then makes (or none) are weighed by
        :func:`~einsgrad.layout_hints.copy_cost`. A hint that costs nothing is kept; a tie
        otherwise goes without it."""
        if hint is None or max(map(self.elements, (self.labels[a_name], self.labels[b_name], out))) < WEIGHED:
            return self.fresh_binary(target, a_name, b_name, out, exact, hint)
        start, count = len(self.steps), self.count
        held = {name: len(self.copies.get(name, ())) for name in (a_name, b_name)}
        hinted = self._costed(target, a_name, b_name, out, exact, hint, hint, start)
        if hinted:
            self._undo(start, count, held)
            if self._costed(target, a_name, b_name, out, exact, None, hint, start) > hinted:
                self._undo(start, count, held)
                self.fresh_binary(target, a_name, b_name, out, exact, hint)
        return target

    def _costed(self, target, a_name, b_name, out, exact, choice: Hint | None, hint: Hint, start: int) -> float:
        """Lowers the step with ``choice`` for a hint; returns the estimated cost of its copies
        (the steps from ``start``) and of its reader's, which ``hint`` describes."""
        self.fresh_binary(target, a_name, b_name, out, exact, choice)
        return copies_cost(self.steps[start:], self.size) + reading_cost(self.labels[target], hint, self.size)

    def _undo(self, start: int, count: int, held: dict[str, int]) -> None:
        """Forgets the steps from ``start``: their values, the copies among them (each operand
        holds ``held`` copies again) and the names they took (the counter was ``count``)."""
        for step in self.steps[start:]:
            del self.labels[step.target], self.fresh[step.target]
        del self.steps[start:]
        for name, length in held.items():
            if length:
                del self.copies[name][length:]
            else:
                self.copies.pop(name, None)
        self.count = count

    def _replay(self, pattern: "Pattern", picks: "Picks", target: str, a_name: str, b_name: str,
                names: Labels) -> str:
        """``pattern``'s steps for these operands, whose labels are ``names`` where the
        pattern's were its own: each copy made again of the same operand, the step itself
        reading the same values (the operands, their copies as they come in order). Sizes
        are part of the pattern, so each step's shape is its pattern step's."""
        operands, copies = (a_name, b_name), self.copies
        value = {old: operands[side] if i < 0 else copies[operands[side]][i]
                 for old, (side, i) in pattern.sides.items()}
        for copy, pick in zip(pattern.copies, picks.copy_labels):
            source = value[copy.args[0]]
            order = pick(names)
            value[copy.target] = name = self._add(self.name("t"), (source,), canonical_text((self.labels[source],), order),
                                                  copy.operation, None, order, 0, True, copy.shape)
            copies.setdefault(source, []).append(name)
        step = pattern.step
        operation = _relabelled(step.operation, picks.dims, names)
        return self._add(target, tuple(map(value.__getitem__, step.args)),
                         step.spec.translate(str.maketrans(pattern.names, "".join(names))), operation,
                         step.perm, picks.labels(names), step.flops, True,
                         None if operation is step.operation else step.operation, step.shape)

    def fresh_binary(self, target: str, a_name: str, b_name: str, out: Labels, exact: bool,
                     hint: "Hint | None" = None) -> str:
        """:meth:`binary` lowered afresh, no pattern replayed: what every replay equals."""
        if exact:
            hint = None
        a, b, size = self.labels[a_name], self.labels[b_name], self.size
        sa, sb, so = set(a), set(b), set(out)
        assert len(sa) == len(a) and len(sb) == len(b) and len(so) == len(out)
        assert so <= sa | sb and sa <= sb | so and sb <= sa | so
        prod = self.elements
        big = a if prod(a) >= prod(b) else b
        both = sa & sb
        batch = [l for l in big if l in both and l in so]
        contracted = [l for l in big if l in both and l not in so]
        free_a = [l for l in a if l not in sb]
        free_b = [l for l in b if l not in sa]
        natural = tuple(batch + free_a + free_b)
        if not contracted:
            if hint is not None:  # a product of views makes any order alike: the one its readers read
                natural = multiplied_order(natural, hint)
            operation: Operation = Multiply(
                _reshaped(a, [l for l in natural if l in sa], tuple((l,) if l in sa else () for l in natural), size),
                _reshaped(b, [l for l in natural if l in sb], tuple((l,) if l in sb else () for l in natural), size))
            flops = prod(natural)
        elif not free_a and not free_b and len(sa | sb) <= 52:
            letters = {l: chr(97 + i) if i < 26 else chr(39 + i) for i, l in enumerate(dict.fromkeys(a + b))}
            spell = lambda labels: "".join(letters[l] for l in labels)  # noqa: E731
            operation = Einsum2(f"{spell(a)},{spell(b)}->{spell(natural)}")
            flops = 2 * prod(natural) * prod(contracted)
        else:
            first, second, lay_a, lay_b, batch, rows, cols = self._gemm_operands(
                a_name, b_name, set(batch), set(contracted), set(free_a), set(free_b),
                tuple(out) if exact else None, hint)
            if first != a_name and first not in self.copies.get(a_name, ()):
                a, b = b, a  # the roles were swapped: show the step as the GEMM runs it
            a_name, b_name = first, second
            natural = tuple(batch + rows + cols)
            shape = tuple([size[l] for l in natural])
            made = (prod(batch),) * bool(batch) + (prod(rows), prod(cols))
            same = made == shape
            operation = Matmul(lay_a, lay_b, None if same else shape,
                               None if same else tuple([(l,) for l in natural]))
            flops = 2 * prod(natural) * prod(contracted)
        labels, perm = natural, None
        if exact and natural != tuple(out):
            labels, perm = tuple(out), _perm(natural, out)
        return self._add(target, (a_name, b_name), canonical_text((a, b), labels), operation, perm, labels,
                         flops, True)

    def _gemm_operands(self, a_name: str, b_name: str, batch: set, contracted: set, free_a: set, free_b: set,
                       out=None, hint=None):
        """Chooses how both sides of a GEMM are read: as stored, or from a transposed copy,
        and which operand goes first (the result is (batch, its free labels, the other's)).

        Of the ways to read both operands as stored, the one that reads the least data
        transposed wins (BLAS kernels read a large transposed operand slower), counting a
        result that must then be transposed into ``out`` as read transposed. An operand whose
        labels do not fall into (batch, rows, cols) blocks needs a copy. Copies are steps of
        their own, remembered per value, so that later steps (the backward, above all) read
        them too, transposed by BLAS where their blocks come swapped.

        With a ``hint`` (see :meth:`binary`), a way whose result its readers read as stored
        wins over every way whose result they must copy (:func:`~einsgrad.layout_hints.misfit`; BLAS reads a
        transposed operand at little cost, a copy is a pass over the data and, on small steps,
        a call as long), and copies order their free labels for it.
        """
        reads_a = self._reads(a_name, batch, free_a, contracted)  # a first: rows its free labels
        reads_b = self._reads(b_name, batch, contracted, free_b)
        free = [(pair, (a_name, b_name)) for pair in _matching(reads_a, reads_b)]
        free += [(pair, (b_name, a_name)) for pair in _matching(self._reads(b_name, batch, free_b, contracted),
                                                                 self._reads(a_name, batch, contracted, free_a))]
        if len(free) > 1:
            elements, known = self.elements, self.labels

            def transposed(choice):
                (_, ra), (_, rb) = choice[0]
                made = ra.batch + ra.rows + rb.cols
                late = out is not None and made != out
                off = 0 if hint is None else misfit(made, hint)
                swapped = sum(elements(known[n]) for n, r in choice[0] if r.swap) + (elements(out) if late else 0)
                return off if off > 1 else 0, swapped, off  # an order within blocks: a tie-break

            pair, _ = min(free, key=transposed)
        elif free:
            pair, _ = free[0]
        else:
            pair = self._copied_reads(a_name, b_name, batch, contracted, free_a, free_b, reads_a, reads_b, hint)
            if hint is not None and out is None:
                pair = self._hinted_roles(pair, batch, contracted, free_a, free_b, hint)
        (a_name, ba), (b_name, bb) = pair
        return (a_name, b_name, self._read(a_name, ba), self._read(b_name, bb),
                list(ba.batch), list(ba.rows), list(bb.cols))

    def _copied_reads(self, a_name, b_name, batch, contracted, free_a, free_b, reads_a, reads_b, hint=None):
        """Reads of both GEMM operands when they cannot both be read as stored.

        The larger operand is read as stored if it can be, else copied: to match the smaller
        one where that reads as stored (or from a copy made before), so that one copy is made
        and not two, else in the order cheapest to transpose (:func:`~einsgrad.layout_hints.cheap_order`); the
        smaller one is read as stored if its batch and contracted labels then come in the
        same order, else copied to match. A copy's free labels go in the order
        :func:`~einsgrad.layout_hints.arranged` gives for ``hint``.
        """
        elements = lambda name: self.elements(self.labels[name])  # noqa: E731
        sides = {True: (a_name, free_a, reads_a), False: (b_name, free_b, reads_b)}  # True: a's role

        def roles(is_a, free):  # (rows, cols): a reads (free, contracted), b (contracted, free)
            return (free, contracted) if is_a else (contracted, free)

        def summed_order(is_a, read):
            return read[1].cols if is_a else read[1].rows

        def matched(is_a, batch_order, summed):  # a copy of that side matching the other's blocks
            name, free = sides[is_a][:2]
            return arranged(matching_order(self.labels[name], batch_order, summed, free), free,
                            sides[not is_a][1], is_a, hint, elements(name) >= WEIGHED)

        lead_is_a = elements(a_name) >= elements(b_name)
        name, free, reads = sides[lead_is_a]
        other = sides[not lead_is_a][2]
        if reads:
            lead = reads[0]
        else:
            orders = [arranged(cheap_order(self.labels[name], batch, *roles(lead_is_a, free)), free,
                               sides[not lead_is_a][1], lead_is_a, hint, elements(name) >= WEIGHED)]
            if other:  # one copy, not two: it matches the other side as stored
                orders.insert(0, matched(lead_is_a, other[0][1].batch, summed_order(not lead_is_a, other[0])))
            order = orders[0]
            if elements(name) >= WEIGHED:  # by cost, with the other side's copy where that needs one

                def cost(order):
                    batch_order, summed = order[:len(batch)], tuple(l for l in order if l in contracted)
                    if any(r[1].batch == batch_order and summed_order(not lead_is_a, r) == summed for r in other):
                        return self._copy_cost(name, order)
                    return self._copy_cost(name, order) + self._copy_cost(
                        sides[not lead_is_a][0], matched(not lead_is_a, batch_order, summed))

                order = min(orders + [exchanged(o, free, len(batch)) for o in orders], key=cost)
            lead = self._copy(name, order, batch, *roles(lead_is_a, free))
        batch_order, summed = lead[1].batch, summed_order(lead_is_a, lead)
        name, free, reads = sides[not lead_is_a]
        matching = [r for r in reads if r[1].batch == batch_order and summed_order(not lead_is_a, r) == summed]
        if matching:
            follow = matching[0]
        else:
            order = matched(not lead_is_a, batch_order, summed)
            if elements(name) >= WEIGHED:
                order = min((order, exchanged(order, free, len(batch))), key=lambda o: self._copy_cost(name, o))
            follow = self._copy(name, order, batch, *roles(not lead_is_a, free))
        return (lead, follow) if lead_is_a else (follow, lead)

    def _copy_cost(self, name: str, order: Labels) -> float:
        """The estimated nanoseconds of copying ``name`` into ``order`` (:func:`~einsgrad.layout_hints.copy_cost`)."""
        labels = self.labels[name]
        return copy_cost(tuple(self.size[l] for l in labels), tuple(labels.index(l) for l in order))

    def _hinted_roles(self, pair, batch: set, contracted: set, free_a: set, free_b: set, hint: Hint):
        """``pair`` (the reads of a GEMM's first and second operand), or the same values with
        their roles exchanged where that lays the result out better for ``hint`` (:func:`~einsgrad.layout_hints.misfit`;
        copies read the same either way round: BLAS transposes)."""
        (a_name, ba), (b_name, bb) = pair
        off = misfit(ba.batch + ba.rows + bb.cols, hint)
        if not off:
            return pair
        known = self.labels
        first = _blocks(known[b_name], batch, free_b, contracted)
        second = _blocks(known[a_name], batch, contracted, free_a)
        if (first is None or second is None or first.batch != second.batch or first.cols != second.rows
                or misfit(first.batch + first.rows + second.cols, hint) >= off):
            return pair
        return (b_name, first), (a_name, second)

    def _reads(self, name: str, batch: set, rows: set, cols: set) -> list:
        """(value, blocks) for ``name`` and its copies that read as (batch, rows, cols)."""
        known, found = self.labels, []
        blocks = _blocks(known[name], batch, rows, cols)
        if blocks is not None:
            found.append((name, blocks))
        for copy in self.copies.get(name, ()):
            blocks = _blocks(known[copy], batch, rows, cols)
            if blocks is not None:
                found.append((copy, blocks))
        return found

    def _copy(self, name: str, order: Labels, batch, rows, cols):
        """A contiguous transposed copy of ``name`` with labels in ``order``, as a step."""
        labels, order = self.labels[name], tuple(order)
        target = self._add(self.name("t"), (name,), canonical_text((labels,), order),
                           Copy(tuple([labels.index(l) for l in order])), None, order, 0, True)
        self.copies.setdefault(name, []).append(target)
        return target, _blocks(order, batch, rows, cols)

    def _read(self, name: str, blocks: "Blocks") -> Layout:
        first, second = (blocks.cols, blocks.rows) if blocks.swap else (blocks.rows, blocks.cols)
        dims = ((blocks.batch,) if blocks.batch else ()) + (first, second)
        prod, size = self.elements, self.size
        shape = tuple([prod(group) for group in dims])
        if shape == tuple([size[l] for l in self.labels[name]]):
            return Layout(None, None, blocks.swap)
        return Layout(None, shape, blocks.swap, dims)

    def add(self, target: str, a_name: str, b_name: str) -> str:
        """``a + b``, two values with the same labels in the same order."""
        labels = self.labels[a_name]
        assert labels == self.labels[b_name], (labels, self.labels[b_name])
        return self._add(target, (a_name, b_name), canonical_text((labels, labels), labels), Add(), None,
                         labels, math.prod(self.size[l] for l in labels), True)

    def step(self, target: str, args: tuple[str, ...], out: Labels, exact: bool, hint: "Hint | None" = None) -> str:
        """A unary or pairwise step; pairwise needs distinct labels, else a unary fixes them.
        ``hint``: see :meth:`binary`."""
        if len(args) == 1:
            return self.unary(target, args[0], out)
        if exact and len(set(out)) != len(out):
            core = self.binary(self.name("t"), *args, tuple(dict.fromkeys(out)), False)
            return self.unary(target, core, out)
        return self.binary(target, *args, out, exact, hint)


class Pattern(NamedTuple):
    """A pairwise step as it was first lowered: the transposed copies it made, then the step.

    Attributes:
        names: its operands' labels in order of first appearance, as one string (each label
            is one character): a step of the same pattern has its own labels in their places.
        sides: each value the steps read, as (0: the first operand, 1: the second; -1: the
            operand itself, else the index of its copy among the operand's copies).
        copies: the copies made (each of a value of ``sides``).
        step: the step itself.
    """

    names: str
    sides: dict[str, tuple[int, int]]
    copies: tuple[Step, ...]
    step: Step


class Picks(NamedTuple):
    """How a step of a :class:`Pattern` relabels the pattern's steps: each label tuple it
    writes, picked from the step's own names by positions (:func:`_picker`).

    Attributes:
        copy_labels: each copy's labels.
        labels: the step's labels.
        dims: the pickers of the :data:`Dims` of the step's operation (:func:`_dims_pickers`).
    """

    copy_labels: tuple[Callable[[Labels], Labels], ...]
    labels: Callable[[Labels], Labels]
    dims: tuple | None

    @classmethod
    def of(cls, pattern: Pattern) -> "Picks":
        names = pattern.names
        return cls(tuple([_picker(copy.labels, names) for copy in pattern.copies]), _picker(pattern.step.labels, names),
                   _dims_pickers(pattern.step.operation, names))


def _picker(labels: Labels, names: str) -> Callable[[Labels], Labels]:
    """The function giving ``labels`` (each one of ``names``, a pattern's) of a step of the
    same pattern from that step's own names: their positions in ``names``, picked by one C call."""
    positions = [names.index(l) for l in labels]
    if len(positions) > 1:
        return operator.itemgetter(*positions)
    if positions:
        (position,) = positions
        return lambda own: (own[position],)
    return lambda own: ()


def _dims_pickers(operation: Operation, names: str) -> tuple | None:
    """For a pairwise step's operation, the :func:`_picker` of each group of its
    :data:`Dims`: (its first layout's, its second's, a GEMM's own), each None where it has
    none; None for an operation without Dims (an Einsum2's subscripts are letters by position)."""
    kind = type(operation)
    if kind is not Matmul and kind is not Multiply:
        assert kind is Einsum2, operation
        return None
    groups = lambda dims: None if dims is None else tuple([_picker(g, names) for g in dims])  # noqa: E731
    found = groups(operation.a.dims), groups(operation.b.dims), groups(operation.dims) if kind is Matmul else None
    return None if found == (None, None, None) else found


def _relabelled(operation: Operation, dims: tuple | None, names: Labels) -> Operation:
    """``operation`` of a step of the same pattern, whose labels are ``names``: its
    :data:`Dims` picked by ``dims`` (:func:`_dims_pickers`); the rest of a pairwise step's
    operation is positions and sizes. The operation itself where it has no Dims."""
    if dims is None:
        return operation
    pick_a, pick_b, pick_own = dims
    a, b = operation.a, operation.b
    if pick_a is not None:
        a = Layout(a.perm, a.shape, a.swap, tuple([pick(names) for pick in pick_a]))
    if pick_b is not None:
        b = Layout(b.perm, b.shape, b.swap, tuple([pick(names) for pick in pick_b]))
    if type(operation) is Multiply:
        return Multiply(a, b)
    return Matmul(a, b, operation.shape, None if pick_own is None else tuple([pick(names) for pick in pick_own]))


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
    """How ``order`` reads as (batch, rows, cols) without a copy, or None if it cannot.
    ``order`` holds each label of the three sets once (a value's labels are distinct), so a
    block's labels are its set when the set holds them all."""
    nb = len(batch)
    assert len(order) == nb + len(rows) + len(cols)
    if not batch.issuperset(order[:nb]):
        return None
    rest = order[nb:]
    nr = len(rows)
    if rows.issuperset(rest[:nr]):
        return Blocks(order[:nb], rest[:nr], rest[nr:], False)
    nc = len(cols)
    if cols.issuperset(rest[:nc]):
        return Blocks(order[:nb], rest[nc:], rest[:nc], True)
    return None


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
