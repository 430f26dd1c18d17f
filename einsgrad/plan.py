"""Bound spec -> :class:`Plan`: named steps, each lowered onto numpy primitives, with costs.

The forward is a contraction tree whose order opt_einsum finds (the only place that imports
it). Reverse mode walks that tree backward: each step's backward is the step's own derived
spec (:func:`einsgrad.derive.backward`), contracted with the cotangent and its sibling, so
all gradients together cost twice the forward's FLOPs. Only steps that lead to a requested
value are kept.

Every step is lowered here, once per shape signature, to one of four operations:

* :class:`Unary`: one operand's diagonal, sums, transposition, broadcast and diagonal placement;
* :class:`Matmul`: a pairwise contraction as one (batched) GEMM: labels in both operands and the
  output are the batch, labels in both operands only are contracted;
* :class:`Multiply`: a pairwise step with nothing to contract (outer or Hadamard product);
* :class:`Einsum2`: a batched dot product (no free label on either side), memory-bound.
"""

from __future__ import annotations

import copy
import inspect
import math
import os
from dataclasses import dataclass
from typing import NamedTuple, Sequence, Union

import numpy as np
import opt_einsum

from . import derive
from .errors import EinsumSpecError
from .shapes import BoundSpec
from .spec import Spec

Labels = tuple[str, ...]
Path = tuple[tuple[int, ...], ...]  # opt_einsum's answer: operand positions contracted in turn


@dataclass(frozen=True)
class Unary:
    """``x -> y`` for one operand, as a chain of numpy operations, each skipped when None.

    Attributes:
        diagonal: pairs of axes merged in turn by ``ndarray.diagonal`` (a repeated label).
        sum_axes: axes summed after the diagonal.
        perm: transposition of the remaining axes into output order.
        reshape: drops summed axes of size 1 and adds one for each label only the output has.
        broadcast: the shape to broadcast to, where a label only the output has is not size 1.
        place: for each distinct output label, the output axes it fills; values go on that
            diagonal of a zero array (a label repeated in the output).
        shape: the output shape.
        own: copy the (small) data before broadcasting it, so the view aliases no argument.
    """

    diagonal: tuple[tuple[int, int], ...] | None
    sum_axes: tuple[int, ...]
    perm: tuple[int, ...] | None
    reshape: tuple[int, ...] | None
    broadcast: tuple[int, ...] | None
    place: tuple[tuple[int, ...], ...] | None
    shape: tuple[int, ...]
    own: bool = False


@dataclass(frozen=True)
class Layout:
    """How one side of a matmul is read: transpose, reshape to (batch,) rows, cols, swap last two.

    ``swap`` means the operand is stored as (cols, rows) already, so BLAS reads it transposed
    instead of copying it.
    """

    perm: tuple[int, ...] | None
    shape: tuple[int, ...] | None
    swap: bool


@dataclass(frozen=True)
class Matmul:
    """A pairwise contraction as one (batched) GEMM, then a reshape to ``shape`` (None: none)."""

    a: Layout
    b: Layout
    shape: tuple[int, ...] | None


@dataclass(frozen=True)
class Multiply:
    """A pairwise step with no contracted label: broadcast multiplication."""

    a: Layout
    b: Layout


@dataclass(frozen=True)
class Copy:
    """A transposed copy, stored contiguously, that GEMMs then read without copying."""

    perm: tuple[int, ...]


@dataclass(frozen=True)
class Einsum2:
    """A pairwise step with no free label on either side (batched dot): numpy's own einsum."""

    subscripts: str


Operation = Union[Unary, Matmul, Multiply, Einsum2, Copy]


@dataclass(frozen=True)
class Step:
    """One line of a plan: ``target = operation(*args)``, then ``.transpose(perm)``.

    Attributes:
        target: name of the value computed (``t3``, ``dx0``...).
        args: names of the values it reads.
        spec: the step as an einsum over the bound labels, e.g. ``"ij,jk->ik"``.
        operation: how it is computed.
        perm: final transposition into the requested label order, or None.
        labels: labels of the result, in storage order.
        shape: shape of the result.
        flops: floating point operations (2 per multiply-add).
        fresh: the result shares no memory with an argument (it may be a read-only
            broadcast view of memory it owns).
    """

    target: str
    args: tuple[str, ...]
    spec: str
    operation: Operation
    perm: tuple[int, ...] | None
    labels: Labels
    shape: tuple[int, ...]
    flops: int
    fresh: bool


@dataclass(frozen=True)
class Plan:
    """A straight-line program: arguments (and their ranks), steps, returned values."""

    args: tuple[str, ...]
    arg_ranks: tuple[int, ...]
    steps: tuple[Step, ...]
    returns: tuple[str, ...]

    @property
    def flops(self) -> int:
        return sum(step.flops for step in self.steps)

    @property
    def largest(self) -> int:
        """Elements of the largest value a step creates."""
        return max([math.prod(step.shape) for step in self.steps if step.fresh] + [0])

    def largest_intermediate(self) -> Step | None:
        """The step creating the largest value that is not returned."""
        made = [s for s in self.steps if s.fresh and s.target not in self.returns]
        return max(made, key=lambda s: math.prod(s.shape), default=None)

    def fresh(self, name: str) -> bool:
        """Whether a returned value owns its memory (else the caller must copy it)."""
        for step in reversed(self.steps):  # returned values are made last
            if step.target == name:
                return step.fresh
        return False  # an argument returned as it is


@dataclass(frozen=True)
class Record:
    """A forward step as the reverse pass needs it: its inputs' and output's labels."""

    target: str
    args: tuple[str, ...]
    spec: Spec


class _Builder:
    """Accumulates steps; knows every value's labels. Used once per plan.

    ``optimize`` and ``memory_limit`` serve only the contractions that are not the forward
    tree (whose path is passed in): the direct gradients of :func:`vjp_plan`.
    """

    def __init__(self, bound: BoundSpec, optimize="auto", memory_limit=None):
        self.size = bound.size_of
        self.optimize = optimize
        self.memory_limit = memory_limit
        self.labels: dict[str, Labels] = {}
        self.fresh: dict[str, bool] = {}
        self.steps: list[Step] = []
        self.copies: dict[str, list[str]] = {}  # value -> its transposed copies
        self.count = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count - 1}"

    def plan(self, args, steps, returns) -> "Plan":
        args = tuple(args)
        return Plan(args, tuple(len(self.labels[a]) for a in args), tuple(steps), tuple(returns))

    def argument(self, name: str, labels: Labels) -> str:
        self.labels[name] = labels
        self.fresh[name] = False
        return name

    def _add(self, target, args, spec, operation, perm, labels, flops, fresh) -> str:
        shape = tuple(self.size[l] for l in labels)
        self.steps.append(Step(target, args, str(spec), operation, perm, labels, shape, flops, fresh))
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
        ones = tuple(size[l] if l in rest else 1 for l in out_distinct)
        reshape = None if ones == tuple(size[l] for l in order) else ones
        full = tuple(size[l] for l in out_distinct)
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
        return self._add(target, (arg,), Spec.of((x,), out),
                         Unary(diagonal, sum_axes, perm, reshape, broadcast, place, shape, own),
                         None, tuple(out), flops, fresh)

    def binary(self, target: str, a_name: str, b_name: str, out: Labels, exact: bool) -> str:
        """A pairwise contraction; the result is in ``out`` order if ``exact``, else in the
        order the GEMM produces (batch, then a's free labels, then b's)."""
        a, b, size = self.labels[a_name], self.labels[b_name], self.size
        assert len(set(a)) == len(a) and len(set(b)) == len(b) and len(set(out)) == len(out)
        assert set(out) <= set(a) | set(b)
        assert all(l in b or l in out for l in a) and all(l in a or l in out for l in b)
        big = a if math.prod(size[l] for l in a) >= math.prod(size[l] for l in b) else b
        batch = [l for l in big if l in a and l in b and l in out]
        contracted = [l for l in big if l in a and l in b and l not in out]
        free_a = [l for l in a if l not in b]
        free_b = [l for l in b if l not in a]
        natural = tuple(batch + free_a + free_b)
        prod = lambda labels: math.prod(size[l] for l in labels)  # noqa: E731
        shape = tuple(size[l] for l in natural)
        if not contracted:
            ones_a, ones_b = (1,) * len(free_b), (1,) * len(free_a)
            operation: Operation = Multiply(
                _reshaped(a, batch + free_a, tuple(size[l] for l in batch + free_a) + ones_a, size),
                _reshaped(b, batch + free_b,
                          tuple(size[l] for l in batch) + ones_b + tuple(size[l] for l in free_b), size))
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
            operation = Matmul(lay_a, lay_b, None if made == shape else shape)
            flops = 2 * prod(natural) * prod(contracted)
        labels, perm = natural, None
        if exact and natural != tuple(out):
            labels, perm = tuple(out), _perm(natural, out)
        return self._add(target, (a_name, b_name), Spec.of((a, b), labels), operation, perm, labels,
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
        free = [(pair, (a_name, b_name)) for pair in self._stored_reads(a_name, b_name, batch, contracted)]
        free += [(pair, (b_name, a_name)) for pair in self._stored_reads(b_name, a_name, batch, contracted)]
        if free:
            elements = lambda labels: math.prod(self.size[l] for l in labels)  # noqa: E731

            def transposed(choice):
                (_, ra), (_, rb) = choice[0]
                late = out is not None and ra.batch + ra.rows + rb.cols != out
                return sum(elements(self.labels[n]) for n, r in choice[0] if r.swap) + (elements(out) if late else 0)

            pair, (a_name, b_name) = min(free, key=transposed)
        else:
            pair = None
        a_labels, b_labels = self.labels[a_name], self.labels[b_name]
        free_a = {l for l in a_labels if l not in contracted and l not in batch}
        free_b = {l for l in b_labels if l not in contracted and l not in batch}
        reads_a = self._reads(a_name, batch, free_a, contracted)
        reads_b = self._reads(b_name, batch, contracted, free_b)
        if pair is None:
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
        elements = lambda name: math.prod(self.size[l] for l in self.labels[name])  # noqa: E731
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

    def _stored_reads(self, a_name: str, b_name: str, batch: set, contracted: set) -> list:
        """Every way to read ``a_name`` (rows: its free labels) and ``b_name`` (rows: the
        contracted labels) as stored, with batch and contracted labels in the same order."""
        free_a = {l for l in self.labels[a_name] if l not in contracted and l not in batch}
        free_b = {l for l in self.labels[b_name] if l not in contracted and l not in batch}
        return [(ra, rb) for ra in self._reads(a_name, batch, free_a, contracted)
                for rb in self._reads(b_name, batch, contracted, free_b)
                if ra[1].batch == rb[1].batch and ra[1].cols == rb[1].rows]

    def _copy(self, name: str, order: Labels, batch, rows, cols):
        """A contiguous transposed copy of ``name`` with labels in ``order``, as a step."""
        labels = self.labels[name]
        target = self._add(self.name("t"), (name,), Spec.of((labels,), order),
                           Copy(tuple(labels.index(l) for l in order)), None, tuple(order), 0, True)
        self.copies.setdefault(name, []).append(target)
        return target, _blocks(tuple(order), batch, rows, cols)

    def _read(self, name: str, blocks: "Blocks") -> Layout:
        dims = lambda ls: math.prod(self.size[l] for l in ls)  # noqa: E731
        lead = (dims(blocks.batch),) if blocks.batch else ()
        first, second = (blocks.cols, blocks.rows) if blocks.swap else (blocks.rows, blocks.cols)
        shape = lead + (dims(first), dims(second))
        if shape == tuple(self.size[l] for l in self.labels[name]):
            shape = None
        return Layout(None, shape, blocks.swap)

    def step(self, target: str, args: tuple[str, ...], out: Labels, exact: bool) -> str:
        """A unary or pairwise step; pairwise needs distinct labels, else a unary fixes them."""
        if len(args) == 1:
            return self.unary(target, args[0], out)
        if exact and len(set(out)) != len(out):
            core = self.binary(self.name("t"), *args, tuple(dict.fromkeys(out)), False)
            return self.unary(target, core, out)
        return self.binary(target, *args, out, exact)

    def contract(self, args: list[str], out: Labels, target: str, records: list[Record],
                 path: Path | None = None) -> str:
        """The contraction tree of an einsum over ``args`` into ``target`` with labels ``out``.

        Operands first drop what only they have (diagonals, labels summed alone), the pairwise
        contractions follow ``path`` (found by :func:`search` when None), and a last unary step
        does what only the output has (broadcast, diagonal placement, label order).
        """
        if len(args) == 1:
            self.unary(target, args[0], out)
            records.append(Record(target, (args[0],), Spec.of((self.labels[args[0]],), out)))
            return target
        wanted = set(out)
        operands = []
        for arg, keep in zip(args, _reduced([self.labels[a] for a in args], out)):
            labels = self.labels[arg]
            if keep != labels:
                reduced = self.unary(self.name("t"), arg, keep)
                records.append(Record(reduced, (arg,), Spec.of((labels,), keep)))
                arg = reduced
            operands.append(arg)
        core = tuple(dict.fromkeys(l for l in out if any(l in self.labels[a] for a in operands)))
        if path is None:
            path = search([set(self.labels[a]) for a in operands], set(core), self.size,
                          self.optimize, self.memory_limit)
        for contraction in path:
            picked = [operands.pop(i) for i in sorted(contraction, reverse=True)]
            while len(picked) > 1:
                a_name, b_name = picked.pop(), picked.pop()
                last = not operands and not picked
                if last and core == tuple(out):
                    name, keep, exact = target, tuple(out), True
                else:
                    others = wanted.union(*(self.labels[x] for x in operands + picked))
                    name, exact = self.name("t"), False
                    keep = tuple(l for l in dict.fromkeys(self.labels[a_name] + self.labels[b_name])
                                 if l in others)
                spec = Spec.of((self.labels[a_name], self.labels[b_name]), keep)
                name = self.binary(name, a_name, b_name, keep, exact)
                records.append(Record(name, (a_name, b_name), Spec.of(spec.inputs, self.labels[name])))
                picked.append(name)
            operands.append(picked[0])
        (root,) = operands
        if root != target:
            self.unary(target, root, out)
            records.append(Record(target, (root,), Spec.of((self.labels[root],), out)))
        return target

    def reverse(self, records: list[Record], cotangent: str, leaves: dict[str, Labels]) -> dict:
        """Walks ``records`` backward from ``cotangent``; returns {leaf name: its gradient}.

        A step's gradient with respect to its argument ``p`` is the step's own derived spec,
        whose operands are the cotangent of the step and the step's other arguments.
        Branches that lead to none of ``leaves`` are skipped.
        """
        leads = set(leaves)
        for record in records:
            if leads.intersection(record.args):
                leads.add(record.target)
        grads = {records[-1].target: cotangent}
        for record in reversed(records):
            if record.target not in grads:
                continue
            for p, arg in enumerate(record.args):
                if arg not in leads:
                    continue
                spec = derive.backward(record.spec, p)
                args = (grads[record.target],) + record.args[:p] + record.args[p + 1:]
                assert sorted(spec.inputs[0]) == sorted(self.labels[args[0]])
                exact = arg in leaves
                target = "d" + arg if exact else self.name("dt")
                grads[arg] = self.step(target, args, spec.output, exact)
        return {leaf: grads[leaf] for leaf in leaves}


def check_optimizer(optimize):
    """An opt_einsum path optimizer: a name it knows, a ``PathOptimizer`` instance (cotengra's
    are), or a function taking ``(inputs, output, size_dict, memory_limit)``; bools mean auto
    / greedy. Anything else is refused here, not at the first path search."""
    if isinstance(optimize, bool):
        return "auto" if optimize else "greedy"
    if isinstance(optimize, str):
        try:
            opt_einsum.paths.get_path_fn(optimize)
        except KeyError:
            raise EinsumSpecError(
                f"optimize={optimize!r} is not an opt_einsum path optimizer; try 'auto', "
                "'greedy', 'optimal', 'dp' or 'branch-2'") from None
        return optimize
    if isinstance(optimize, opt_einsum.paths.PathOptimizer):
        return optimize
    if callable(optimize):
        try:
            inspect.signature(optimize).bind([], set(), {}, None)
        except (TypeError, ValueError):  # no signature, or one these arguments do not fit
            raise EinsumSpecError(
                f"optimize={optimize!r} is not a path optimizer: a function must take "
                "(inputs, output, size_dict, memory_limit) and return a path") from None
        return optimize
    raise EinsumSpecError(f"optimize must be an opt_einsum optimizer name or PathOptimizer, got {optimize!r}")


def auxiliary(optimize):
    """The optimizer for contractions other than the forward tree (one direct contraction per
    gradient, the per-operand baseline, the Jacobian): the user's when it is a name, else
    opt_einsum's ``"auto"``, so that an instance (often a costly search) is asked once per
    shape signature, for the forward tree alone."""
    return optimize if isinstance(optimize, str) else "auto"


def search(inputs: list[set], output: set, size: dict, optimize, memory_limit=None) -> Path:
    """One path search: opt_einsum's pairwise order for ``inputs`` -> ``output``.

    An optimizer instance is searched with a fresh deep copy, as stateful ones
    (``RandomGreedy``) refuse a second contraction; one that cannot be copied (cotengra's
    ``HyperOptimizer`` holds a process pool) is called as it is. The answer is validated.
    Under ``memory_limit`` opt_einsum's optimizers may give up and leave one many-operand
    contraction (no intermediates, but no BLAS either); then the unconstrained path is taken,
    and slicing (:func:`slicing`) bounds the memory. An empty dimension makes every path
    cost nothing, so the search sees it as size 1 (opt_einsum's ``dp`` finds no path through
    a size 0).
    """
    if len(inputs) <= 2:
        return (tuple(range(len(inputs))),)
    if 0 in size.values():
        size = {label: max(d, 1) for label, d in size.items()}
    if isinstance(optimize, str):
        find = opt_einsum.paths.get_path_fn(optimize)
    else:
        try:
            find = copy.deepcopy(optimize)
        except Exception:  # state that cannot be copied (locks, pools, modules): use it as is
            find = optimize
    if memory_limit is not None:
        try:
            path = _checked(find(inputs, output, size, memory_limit), len(inputs), optimize)
            if all(len(step) <= 2 for step in path):
                return path
        except RuntimeError:  # opt_einsum's "no contraction found for memory_limit"
            pass
    try:
        path = find(inputs, output, size, None)
    except RuntimeError as error:  # an optimizer that gives up even without a memory limit
        raise EinsumSpecError(f"the path optimizer {optimize!r} found no contraction path: {error}") from None
    return _checked(path, len(inputs), optimize)


def _checked(path, count: int, optimize) -> Path:
    """``path`` as a tuple of steps, each of distinct positions among the operands left, that
    contracts ``count`` operands to one; anything else names the optimizer that gave it."""
    def refuse(reason: str) -> EinsumSpecError:
        return EinsumSpecError(f"the path optimizer {optimize!r} returned {path!r}, which is not "
                               f"a contraction path for {count} operands: {reason}")
    try:
        steps = tuple(tuple(step) for step in path)
    except TypeError:
        raise refuse("a path is a sequence of tuples of operand positions") from None
    left = count
    for step in steps:
        if not step or not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool)
                               and 0 <= i < left for i in step):
            raise refuse(f"the step {step!r} must name positions 0 to {left - 1}")
        if len(set(step)) != len(step):
            raise refuse(f"the step {step!r} names a position twice")
        left -= len(step) - 1
    if left != 1:
        raise refuse(f"it leaves {left} operands, not one")
    return tuple(tuple(int(i) for i in step) for step in steps)


def _reduced(terms: Sequence[Labels], out: Labels) -> list[Labels]:
    """Each operand's labels without what only it has (its diagonals, labels it sums alone)."""
    holders: dict[str, int] = {}
    for term in terms:
        for label in set(term):
            holders[label] = holders.get(label, 0) + 1
    wanted = set(out)
    return [tuple(dict.fromkeys(l for l in term if l in wanted or holders[l] > 1)) for term in terms]


def forward_path(bound: BoundSpec, optimize="auto", memory_limit=None) -> Path:
    """The forward contraction tree: the one question asked of the path optimizer per shape
    signature. Every plan of the signature (forward, vjp, forward-saving, pullback, slicing)
    is built from it, so that no two of them disagree about the tree."""
    terms = _reduced(bound.spec.inputs, bound.spec.output)
    if len(terms) == 1:
        return ()
    core = {l for l in bound.spec.output if any(l in term for term in terms)}
    return search([set(term) for term in terms], core, bound.size_of, optimize, memory_limit)


def _host_memory() -> int:
    """Bytes of physical memory on this host (the int64 limit where the OS does not say)."""
    try:
        return min(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), INT64_MAX)
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        return INT64_MAX


INT64_MAX = 2**63 - 1
HOST_MEMORY = _host_memory()


def check_fits(program: Plan, itemsize: int, where: str) -> None:
    """Refuses, before anything is allocated, a plan making a value larger than this host's
    memory (or than an int64 counts): no such array can exist, so the run could only fail.

    Args:
        program: the plan to run.
        itemsize: bytes per element of its values (the signature's common dtype).
        where: what the plan computes, for the message (``"the forward of 'i->ii'"``).
    """
    for step in program.steps:
        value = "the output" if step.target == "y" else f"the step {step.spec} (value {step.target})"
        check_fits_shape(step.shape, itemsize, where, value)


def check_fits_shape(shape: tuple[int, ...], itemsize: int, where: str, value: str = "the result") -> None:
    """Refuses an array of ``shape`` that this host's memory could never hold (see
    :func:`check_fits`); ``value`` names it in the message."""
    count = math.prod(shape)
    if count * itemsize > HOST_MEMORY:
        raise EinsumSpecError(
            f"{value} in {where} would hold {count:,} elements of shape {shape} "
            f"({count * itemsize:,} bytes), more than this host's {HOST_MEMORY:,} bytes of memory")


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


def _reshaped(labels: Labels, order, shape, size, swap=False) -> Layout:
    """Transposes ``labels`` into ``order`` and reshapes to ``shape``; skips what is a no-op."""
    perm = _perm(labels, order)
    if perm is None and tuple(shape) == tuple(size[l] for l in labels):
        shape = None
    return Layout(perm, shape, swap)


def _prune(steps: list[Step], returns: tuple[str, ...]) -> tuple[Step, ...]:
    """Keeps only the steps whose result is needed for ``returns``."""
    needed, kept = set(returns), []
    for step in reversed(steps):
        if step.target in needed:
            kept.append(step)
            needed.update(step.args)
    return tuple(reversed(kept))


def _inputs(builder: _Builder, bound: BoundSpec) -> list[str]:
    return [builder.argument(f"x{i}", term) for i, term in enumerate(bound.spec.inputs)]


def forward_plan(bound: BoundSpec, path: Path) -> Plan:
    """The forward contraction ``y = einsum(x0, x1, ...)`` along the tree ``path``."""
    builder = _Builder(bound)
    args = _inputs(builder, bound)
    builder.contract(args, bound.spec.output, "y", [], path)
    return builder.plan(args, _prune(builder.steps, ("y",)), ("y",))


def vjp_plan(bound: BoundSpec, wrt: tuple[int, ...], path: Path, optimize="auto",
             memory_limit=None) -> Plan:
    """Gradients of the operands in ``wrt`` from ``g`` and the operands, in one shot.

    Reverse mode over the forward tree ``path``, or, when it costs fewer FLOPs, one direct
    contraction per requested gradient (typical when one gradient of many operands is
    wanted), whose paths ``optimize`` finds (see :func:`auxiliary`).
    """
    tree = _tree_vjp(bound, wrt, path)
    if len(wrt) == len(bound.spec.inputs) and len(wrt) > 2:
        return tree
    direct = _direct_vjp(bound, wrt, optimize, memory_limit)
    return direct if direct.flops < tree.flops else tree


def _tree_vjp(bound, wrt, path) -> Plan:
    builder = _Builder(bound)
    args = _inputs(builder, bound)
    records: list[Record] = []
    builder.contract(args, bound.spec.output, "y", records, path)
    builder.argument("g", bound.spec.output)
    grads = builder.reverse(records, "g", {args[k]: bound.spec.inputs[k] for k in wrt})
    returns = tuple(grads[args[k]] for k in wrt)
    return builder.plan(("g", *args), _prune(builder.steps, returns), returns)


def _direct_vjp(bound, wrt, optimize, memory_limit) -> Plan:
    builder = _Builder(bound, optimize, memory_limit)
    args = _inputs(builder, bound)
    builder.argument("g", bound.spec.output)
    returns = []
    for k in wrt:
        others = args[:k] + args[k + 1:]
        returns.append(builder.contract(["g"] + others, bound.spec.inputs[k], f"dx{k}", []))
    return builder.plan(("g", *args), builder.steps, returns)


def resized(bound: BoundSpec, sizes) -> BoundSpec:
    """``bound`` with some labels' sizes changed (a chunk of a sliced contraction)."""
    return BoundSpec(bound.spec, tuple((bound.size_of | dict(sizes)).items()))


def slicing(bound: BoundSpec, memory_limit: int, path: Path,
            optimize="auto") -> tuple[tuple[str, int], ...]:
    """Labels to slice, and their chunk sizes, so that no intermediate of the forward or of
    the backward along the tree ``path`` holds more than ``memory_limit`` elements.

    The contraction then runs chunk by chunk: outputs along a sliced label are written by
    pieces, sums over it accumulate. The label cut is the largest one of the largest
    intermediate, halved until everything fits (cotengra's idea, in its simplest form).
    """
    sizes = bound.size_of
    sliceable = {l for term in bound.spec.inputs for l in term}
    chunks: dict[str, int] = {}
    every = tuple(range(len(bound.spec.inputs)))
    while True:
        step = vjp_plan(resized(bound, chunks), every, path, optimize, memory_limit).largest_intermediate()
        if step is None or math.prod(step.shape) <= memory_limit:
            return tuple(chunks.items())
        labels = [l for l in step.labels if l in sliceable and sizes[l] > 1]
        if not labels:
            raise EinsumSpecError(
                f"memory_limit={memory_limit} is too small: the step {step.spec} needs "
                f"{math.prod(step.shape)} elements even when every label is sliced to size 1")
        label = max(labels, key=lambda l: sizes[l])
        sizes[label] = chunks[label] = -(-sizes[label] // 2)


def pullback_plans(bound: BoundSpec, wrt: tuple[int, ...], path: Path) -> tuple[Plan, Plan]:
    """A forward along the tree ``path`` that also returns what the backward needs, and that
    backward.

    The first plan returns ``y`` followed by the saved values; the second takes ``g`` and the
    saved values and returns the gradients in ``wrt`` order. Only the values the backward reads
    are saved.
    """
    builder = _Builder(bound)
    args = _inputs(builder, bound)
    records: list[Record] = []
    builder.contract(args, bound.spec.output, "y", records, path)
    forward_count = len(builder.steps)
    builder.argument("g", bound.spec.output)
    grads = builder.reverse(records, "g", {args[k]: bound.spec.inputs[k] for k in wrt})
    returns = tuple(grads[args[k]] for k in wrt)
    backward = _prune(builder.steps[forward_count:], returns)
    made = {step.target for step in backward}
    saved = tuple(dict.fromkeys(a for step in backward for a in step.args if a not in made and a != "g"))
    forward = builder.plan(args, _prune(builder.steps[:forward_count], ("y",) + saved), ("y",) + saved)
    return forward, builder.plan(("g", *saved), backward, returns)
