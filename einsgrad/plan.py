"""Bound spec -> :class:`~einsgrad.steps.Plan`: which steps each mode runs, in which order.

The forward is a contraction tree whose order the path optimizer (:mod:`einsgrad.paths`)
finds once per shape signature. Reverse mode walks that tree backward: each step's backward
is the step's own derived spec (:func:`einsgrad.derive.backward`), contracted with the
cotangent and its sibling, so all gradients together cost twice the forward's FLOPs. Only
steps that lead to a requested value are kept. The forward and its reverse sweep are
scheduled and lowered together, once per signature and set of operands (a :class:`Sweep`);
the forward, the one-shot vjp and the forward-saving/pullback pair are its projections.
How each step is computed (GEMM layouts, transposed copies, views) is
:mod:`einsgrad.lowering`'s job.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Mapping, NamedTuple, Sequence

from . import paths
from .layout_hints import Hint
from .lowering import Lowering
from .paths import Path
from .shapes import BoundSpec
from .spec import Labels, canonical_text
from .steps import Matmul, Multiply, Plan, Regroup, Step


class Record(NamedTuple):
    """A forward step as the reverse pass needs it: its arguments' labels (``inputs``) and its
    result's (``output``), as the spec of the step."""

    target: str
    args: tuple[str, ...]
    inputs: tuple[Labels, ...]
    output: Labels


class _Scheduler:
    """Schedules the steps of one plan, lowered as they come: contraction trees and the reverse
    sweep over them. Used once per sweep (or direct vjp); the operands are ``x0``, ``x1``...

    ``optimize`` and ``memory_limit`` serve only the contractions that are not the forward
    tree (whose path is passed in): the direct gradients of :func:`vjp_plan`.
    """

    def __init__(self, bound: BoundSpec, optimize="auto", memory_limit=None):
        self.bound = bound
        self.lowering = Lowering(bound.size_of)
        self.optimize = optimize
        self.memory_limit = memory_limit
        self.args = [self.lowering.argument(f"x{i}", term) for i, term in enumerate(bound.spec.inputs)]
        self.records: list[Record] = []

    def forward(self, path: Path) -> int:
        """The forward ``y`` along the tree ``path``, recorded for :meth:`backward`; returns
        how many steps it took."""
        self.contract(self.args, self.bound.spec.output, "y", self.records, path)
        return len(self.lowering.steps)

    def backward(self, wrt: tuple[int, ...]) -> tuple[str, ...]:
        """The reverse sweep from ``g`` over the recorded forward; returns the names of the
        gradients of the operands ``wrt``, in that order."""
        inputs = self.bound.spec.inputs
        self.lowering.argument("g", self.bound.spec.output)
        grads = self.reverse(self.records, "g", {self.args[k]: inputs[k] for k in wrt})
        return tuple(grads[self.args[k]] for k in wrt)

    def plan(self, args, steps, returns) -> Plan:
        """A plan of ``steps`` taking ``args`` and returning ``returns``."""
        args = tuple(args)
        return Plan(args, tuple(len(self.lowering.labels[a]) for a in args), tuple(steps), tuple(returns))

    def contract(self, args: list[str], out: Labels, target: str, records: list[Record],
                 path: Path | None = None) -> str:
        """The contraction tree of an einsum over ``args`` into ``target`` with labels ``out``.

        Operands first drop what only they have (diagonals, labels summed alone), the pairwise
        contractions follow ``path`` (found by :func:`einsgrad.paths.search` when None), and a
        last unary step does what only the output has (broadcast, diagonal placement, label order).
        """
        known = self.lowering.labels
        if len(args) == 1:
            self.lowering.unary(target, args[0], out)
            records.append(Record(target, (args[0],), (known[args[0]],), tuple(out)))
            return target
        operands = []
        for arg, keep in zip(args, _reduced([known[a] for a in args], out)):
            own = known[arg]
            if keep != own:
                reduced = self.lowering.unary(self.lowering.name("t"), arg, keep)
                records.append(Record(reduced, (arg,), (own,), keep))
                arg = reduced
            operands.append(arg)
        if path is None:
            held = {l for a in operands for l in known[a]}
            core = tuple(dict.fromkeys(l for l in out if l in held))
            path = paths.search([set(known[a]) for a in operands], set(core), self.lowering.size,
                                self.optimize, self.memory_limit)
        pairs, root = _pairings([known[a] for a in operands], out, path)
        reader: dict[int, tuple[int, int]] = {}  # a value's id -> (the pairing reading it, the other operand)
        for k, pairing in enumerate(pairs):
            reader[pairing.a] = (k, pairing.b)
            reader[pairing.b] = (k, pairing.a)
        names = dict(enumerate(operands))  # ids: the operands', then each pairing's result
        first = len(operands)
        for k, pairing in enumerate(pairs):
            a_name, b_name = names[pairing.a], names[pairing.b]
            if pairing.final:
                name, keep, exact = target, pairing.keep, True
            else:  # the labels in the order the operands hold them now
                kept = set(pairing.keep)
                name, exact = self.lowering.name("t"), False
                keep = tuple(l for l in dict.fromkeys(known[a_name] + known[b_name]) if l in kept)
            hint = None
            if first + k in reader:  # the labels the next step contracts, in its other operand's order
                at, other = reader[first + k]
                summed = set(pairing.keep).difference(pairs[at].keep)
                order = known[names[other]] if other in names else pairs[other - first].keep
                hint = Hint(tuple(l for l in order if l in summed)) if summed else None
            name = self.lowering.binary(name, a_name, b_name, keep, exact, hint)
            records.append(Record(name, (a_name, b_name), (known[a_name], known[b_name]), known[name]))
            names[first + k] = name
        root = names[root]
        if root != target:
            self.lowering.unary(target, root, out)
            records.append(Record(target, (root,), (known[root],), tuple(out)))
        return target

    def reverse(self, records: list[Record], cotangent: str, leaves: dict[str, Labels]) -> dict:
        """Walks ``records`` backward from ``cotangent``; returns {leaf name: its gradient}.

        A step's gradient with respect to its argument ``p`` is the step's own derived spec,
        whose operands are the cotangent of the step and the step's other arguments, and whose
        output is the argument's labels (:func:`einsgrad.derive.backward`, spelled out here as
        it runs once per step of every reverse sweep: a Spec's error columns are not needed).
        Branches that lead to none of ``leaves`` are skipped.
        """
        known = self.lowering.labels
        made = {record.target: record for record in records}
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
                args = (grads[record.target],) + record.args[:p] + record.args[p + 1:]
                assert set(record.output) == set(known[args[0]])  # a value's labels are distinct
                exact = arg in leaves
                target = "d" + arg if exact else self.lowering.name("dt")
                grads[arg] = self.lowering.step(target, args, record.inputs[p], exact,
                                                None if exact else _cotangent_hint(made.get(arg), known[arg]))
        return {leaf: grads[leaf] for leaf in leaves}


def _cotangent_hint(maker: Record | None, labels: Labels) -> Hint | None:
    """The order wanted for the cotangent of a value with ``labels``, made by the pairwise
    step ``maker``: the value's own, split as that step made it, so that the two steps of its
    backward read the cotangent as stored, as the forward read the value's operands."""
    if maker is None or len(maker.args) != 2:
        return None
    first, second = map(set, maker.inputs)
    summed = tuple(l for l in labels if l in second and l not in first)
    return Hint(summed, labels) if summed else None


class Pairing(NamedTuple):
    """One pairwise step of a contraction tree, by value ids (the operands are 0, 1, ...; the
    ``k``-th pairing's result is the operands' count plus ``k``): it contracts ``a`` and ``b``
    into ``keep``; ``final``: the last step, whose result is the output itself."""

    a: int
    b: int
    keep: Labels
    final: bool


def _pairings(terms: list[Labels], out: Labels, path: Path) -> tuple[list[Pairing], int]:
    """The pairwise steps of contracting ``terms`` along ``path`` into ``out``, and the id of
    the tree's root: known before any is lowered, so that each step knows which step reads
    its result. A pair's result keeps a label that the output or another operand still has."""
    wanted = set(out)
    # How many operands left hold each label: counted as operands come and go, so that each
    # step costs its own labels, not the network's.
    holders = Counter(l for term in terms for l in term)
    core = tuple(dict.fromkeys(l for l in out if holders[l]))
    labels = list(terms)
    operands = list(range(len(terms)))
    pairs: list[Pairing] = []
    for contraction in path:
        picked = [operands.pop(i) for i in sorted(contraction, reverse=True)]
        while len(picked) > 1:
            a, b = picked.pop(), picked.pop()
            last = not operands and not picked
            pair = labels[a] + labels[b]
            holders.subtract(pair)
            final = last and core == tuple(out)
            keep = tuple(out) if final else tuple(l for l in dict.fromkeys(pair) if l in wanted or holders[l] > 0)
            holders.update(keep)
            pairs.append(Pairing(a, b, keep, final))
            labels.append(keep)
            picked.append(len(labels) - 1)
        operands.append(picked[0])
    (root,) = operands
    return pairs, root


def _reduced(terms: Sequence[Labels], out: Labels) -> list[Labels]:
    """Each operand's labels without what only it has (its diagonals, labels it sums alone)."""
    holders: dict[str, int] = {}
    for term in terms:
        for label in set(term):
            holders[label] = holders.get(label, 0) + 1
    wanted = set(out)
    return [tuple(dict.fromkeys(l for l in term if l in wanted or holders[l] > 1)) for term in terms]


def forward_terms(bound: BoundSpec) -> tuple[list[Labels], Labels]:
    """The operands' labels and the output's as the forward tree contracts them: each
    operand without what only it has, the output without what no operand has."""
    terms = _reduced(bound.spec.inputs, bound.spec.output)
    return terms, tuple(dict.fromkeys(l for l in bound.spec.output if any(l in term for term in terms)))


def forward_path(bound: BoundSpec, optimize="auto", memory_limit=None) -> Path:
    """The forward contraction tree's path (see :func:`forward_tree`)."""
    return forward_tree(bound, optimize, memory_limit).path


def forward_tree(bound: BoundSpec, optimize="auto", memory_limit=None) -> paths.Tree:
    """The forward contraction tree: the one question asked of the path optimizer per shape
    signature. Every plan of the signature (forward, vjp, forward-saving, pullback, slicing)
    is built from it, so that no two of them disagree about the tree. Its ``limit`` is the
    memory limit its slicing implies (a sliced cotengra tree's), if any."""
    terms, core = forward_terms(bound)
    if len(terms) == 1:
        return paths.Tree(())
    return paths.tree(terms, core, bound.size_of, optimize, memory_limit)


def _prune(steps, returns: tuple[str, ...]) -> tuple[Step, ...]:
    """Keeps only the steps whose result is needed for ``returns``."""
    needed, kept = set(returns), []
    for step in reversed(steps):
        if step.target in needed:
            kept.append(step)
            needed.update(step.args)
    return tuple(reversed(kept))


class Sweep(NamedTuple):
    """The forward tree and the reverse sweep over it for the operands ``wrt``, lowered once.

    Every plan that follows the tree is a projection of it: the forward, the one-shot vjp,
    and the forward-saving/pullback pair, so that none of them can disagree about a step.

    Attributes:
        args: the operands' names, ``x0``, ``x1``...
        steps: the forward's steps, then the reverse sweep's (which reads ``g``).
        forward_count: how many of ``steps`` are the forward's.
        returns: the gradients of ``wrt``, in that order.
        ranks: each value's rank (arguments, ``g`` and every step's result), by name.
        sizes: each bound label's size.
    """

    args: tuple[str, ...]
    steps: tuple[Step, ...]
    forward_count: int
    returns: tuple[str, ...]
    ranks: Mapping[str, int]
    sizes: Mapping[str, int]

    def forward(self) -> Plan:
        """``y = einsum(x0, x1, ...)``."""
        return self._plan(self.args, self.steps[:self.forward_count], ("y",))

    def vjp(self) -> Plan:
        """The gradients from ``g`` and the operands, in one shot."""
        return self._plan(("g", *self.args), self.steps, self.returns)

    def pair(self) -> "PullbackPlans":
        """A forward that returns ``y`` and what the backward reads, and that backward (``g``
        and the saved values in, the gradients out). Only values the backward reads are saved;
        an operand that the forward reads through a reshape is saved as that reshape makes
        it (:class:`~einsgrad.steps.Regroup`: a copy where the operand is strided), which
        both passes read."""
        forward = _prune(self.steps[:self.forward_count], ("y",))
        backward = _prune(self.steps[self.forward_count:], self.returns)
        made = {step.target for step in backward}
        saved = tuple(dict.fromkeys(a for step in backward for a in step.args
                                    if a not in made and a != "g"))
        ranks = dict(self.ranks)
        operands, first = set(self.args).intersection(saved), {}
        for i, step in enumerate(forward):  # each saved operand's first read through a reshape
            for a in step.args:
                if a in operands and a not in first and (layouts := _reshaping_reads(step, a)):
                    first[a] = (i, layouts[0])
        if first:
            forward, backward, saved = self._regrouped(first, forward, backward, saved, ranks)
        return PullbackPlans(Plan(self.args, tuple(ranks[a] for a in self.args), forward, ("y",) + saved),
                             Plan(("g", *saved), tuple(ranks[a] for a in ("g", *saved)), backward, self.returns))

    def _regrouped(self, first: dict, forward, backward, saved, ranks: dict) -> tuple:
        """The forward and backward steps and the saved values, with each operand of ``first``
        (its first reshaping read: the step's index and layout) read through its
        :class:`~einsgrad.steps.Regroup` from that step on; ``ranks`` learns the new values'.
        One pass over the steps, whatever the number of operands."""
        names = {arg: "r" + arg[1:] for arg in first}  # x0 -> r0: no other value's name starts with r
        inserted: dict[int, list[Step]] = {}
        for arg in (a for a in saved if a in first):
            i, layout = first[arg]
            labels = forward[i].inputs[forward[i].args.index(arg)]
            inserted.setdefault(i, []).append(
                Step(names[arg], (arg,), canonical_text((labels,), labels), Regroup(layout.shape, layout.dims),
                     None, labels, tuple(self.sizes[l] for l in labels), 0, False, (labels,)))
            ranks[names[arg]] = len(labels)

        def renamed(step: Step, mapping: dict) -> Step:
            args = step.args
            if mapping.keys().isdisjoint(args):
                return step
            return step.reading(tuple([mapping.get(a, a) for a in args]))

        regrouped, active = [], {}
        for i, step in enumerate(forward):
            for regroup in inserted.get(i, ()):
                regrouped.append(regroup)
                active[regroup.args[0]] = regroup.target
            regrouped.append(renamed(step, active))
        return (tuple(regrouped), tuple(renamed(step, names) for step in backward),
                tuple(names.get(a, a) for a in saved))

    def _plan(self, args: tuple[str, ...], steps, returns: tuple[str, ...]) -> Plan:
        """The steps of ``steps`` that ``returns`` needs, as a plan taking ``args``."""
        return Plan(args, tuple(self.ranks[a] for a in args), _prune(steps, returns), returns)


def _reshaping_reads(step: Step, arg: str) -> list:
    """The layouts by which a pairwise step reads ``arg`` through a reshape alone."""
    op = step.operation
    if not isinstance(op, (Matmul, Multiply)):
        return []
    return [layout for name, layout in zip(step.args, (op.a, op.b))
            if name == arg and layout.shape is not None and layout.perm is None and layout.dims is not None]


class PullbackPlans(NamedTuple):
    """The two halves of a forward and its pullback, projected from one :class:`Sweep`."""

    saving: Plan  # returns y, then what the backward reads
    pullback: Plan  # takes g and the saved values, returns the gradients


def sweep(bound: BoundSpec, path: Path, wrt: tuple[int, ...]) -> Sweep:
    """The forward along the tree ``path``, then the reverse sweep from ``g`` for the operands
    ``wrt`` (none: the forward alone)."""
    builder = _Scheduler(bound)
    count = builder.forward(path)
    returns = builder.backward(wrt)
    ranks = {name: len(labels) for name, labels in builder.lowering.labels.items()}
    return Sweep(tuple(builder.args), tuple(builder.lowering.steps), count, returns, ranks, dict(bound.size_of))


def vjp_plan(bound: BoundSpec, wrt: tuple[int, ...], tree: Sweep, optimize="auto",
             memory_limit=None) -> Plan:
    """Gradients of the operands in ``wrt`` from ``g`` and the operands, in one shot.

    Reverse mode over the forward tree (``tree``, the sweep for ``wrt``), or, when it costs
    fewer FLOPs, one direct contraction per requested gradient (typical when one gradient of
    many operands is wanted), whose paths ``optimize`` finds (see :func:`einsgrad.paths.auxiliary`).
    Under ``memory_limit`` the direct contractions are taken only where no intermediate of
    theirs exceeds it: the tree's are the ones slicing bounds.
    """
    reverse = tree.vjp()
    if len(wrt) == len(bound.spec.inputs) and len(wrt) > 2:
        return reverse
    direct = _direct_vjp(bound, wrt, optimize, memory_limit)
    largest = direct.largest_intermediate()
    if memory_limit is not None and largest is not None and math.prod(largest.shape) > memory_limit:
        return reverse
    return direct if direct.flops < reverse.flops else reverse


def _direct_vjp(bound, wrt, optimize, memory_limit) -> Plan:
    builder = _Scheduler(bound, optimize, memory_limit)
    args = builder.args
    builder.lowering.argument("g", bound.spec.output)
    returns = []
    for k in wrt:
        others = args[:k] + args[k + 1:]
        returns.append(builder.contract(["g"] + others, bound.spec.inputs[k], f"dx{k}", []))
    return builder.plan(("g", *args), builder.lowering.steps, returns)


def jvp_plan(bound: BoundSpec, wrt: tuple[int, ...], path: Path, value: bool = False) -> Plan:
    """Forward mode: ``dy`` (``y`` and ``dy`` with ``value``) from the operands and the tangents
    ``dx{k}`` of the operands in ``wrt`` (the others' are zero), pushed along the tree ``path``.

    Each step ``z = f(a, b)`` of the tree is linear in each argument, so its tangent is the
    step itself once per argument that carries one, summed: ``dz = f(da, b) + f(a, db)``. The
    primal intermediates are shared by every term, so the jvp costs the forward plus at most
    two forward steps per step (one where a single tangent flows), against one whole forward
    per operand for the sum of :func:`einsgrad.derive.tangent` terms. Primal steps that
    nothing returned reads (without ``value``, the output ``y`` itself) are pruned.
    """
    builder = _Scheduler(bound)
    builder.forward(path)
    lowering, known = builder.lowering, builder.lowering.labels
    tangents = {builder.args[k]: lowering.argument(f"d{builder.args[k]}", known[builder.args[k]])
                for k in wrt}
    for record in builder.records:
        carried = [p for p, arg in enumerate(record.args) if arg in tangents]
        if not carried:
            continue
        last = record.target == "y"
        terms = []
        for p in carried:
            args = record.args[:p] + (tangents[record.args[p]],) + record.args[p + 1:]
            name = "dy" if last and len(carried) == 1 else lowering.name("dt")
            out = known[terms[0]] if terms else known[record.target]
            terms.append(lowering.step(name, args, out, exact=last or bool(terms)))
        total = terms[0]
        for n, term in enumerate(terms[1:], 2):
            total = lowering.add("dy" if last and n == len(terms) else lowering.name("dt"), total, term)
        tangents[record.target] = total
    assert "y" in tangents, "every operand leads to y: one tangent at least"
    returns = ("y", "dy") if value else ("dy",)
    args = (*builder.args, *(f"d{builder.args[k]}" for k in wrt))
    return builder.plan(args, _prune(lowering.steps, returns), returns)
