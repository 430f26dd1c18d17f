"""Plans -> what they cost, for reading: :class:`Costs` (the totals) and :class:`PlanReport`
(the totals with every function's steps), both built from the same :class:`Plans`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from .steps import Plan


class Plans(NamedTuple):
    """The plans of one shape signature with every operand requested.

    Attributes:
        forward: the plain forward.
        vjp: all gradients in one shot, from the cotangent and the operands.
        saving: the forward that also returns what the pullback reads.
        pullback: all gradients from the cotangent and the saved values.
        separate: FLOPs of all gradients as one vjp per operand.
    """

    forward: Plan
    vjp: Plan
    saving: Plan
    pullback: Plan
    separate: int


def saved_intermediates(saving: Plan) -> tuple[str, ...]:
    """The values a saving forward keeps besides the output and the operands."""
    return tuple(name for name in saving.returns[1:] if name not in saving.args)


def _elements(program: Plan, names) -> int:
    return sum(math.prod(step.shape) for step in program.steps if step.target in names)


@dataclass(frozen=True)
class Costs:
    """What a contraction and its gradients cost for one shape signature.

    FLOPs count 2 per multiply-add; sizes are in elements.

    Attributes:
        forward: FLOPs of the forward path.
        pullback: FLOPs of all gradients after a stored forward (reverse mode: 2x forward).
        vjp: FLOPs of all gradients in one shot (forward minus its last step, plus pullback).
        separate: FLOPs of all gradients as one contraction per operand.
        largest: the largest array the forward creates (its output included), in elements.
        saved: elements the forward keeps for the pullback, besides the operands.
        path: the forward's steps as einsum specs over the bound labels.
        slices: (label, chunk size) of each label sliced to honour ``memory_limit``.
    """

    forward: int
    pullback: int
    vjp: int
    separate: int
    largest: int
    saved: int
    path: tuple[str, ...]
    slices: tuple[tuple[str, int], ...] = ()

    @classmethod
    def of(cls, plans: Plans, slices=()) -> "Costs":
        return cls(plans.forward.flops, plans.pullback.flops, plans.vjp.flops, plans.separate,
                   plans.forward.largest, _elements(plans.saving, saved_intermediates(plans.saving)),
                   tuple(s.spec for s in plans.forward.steps), tuple(slices))

    def __str__(self) -> str:
        rows = [("forward", self.forward), ("pullback", self.pullback), ("vjp (one shot)", self.vjp),
                ("per-operand", self.separate)]
        lines = [f"{name:<15} {flops:>16,} flops  {flops / max(self.forward, 1):5.2f}x forward"
                 for name, flops in rows]
        lines.append(f"largest intermediate {self.largest:,} elements; kept for the pullback "
                     f"{self.saved:,} elements; path {' | '.join(self.path)}")
        if self.slices:
            lines.append("sliced: " + ", ".join(f"{l} in chunks of {c}" for l, c in self.slices))
        return "\n".join(lines)


class PathStep(NamedTuple):
    """One line of a generated function: ``target`` from the bound einsum ``spec``."""

    target: str
    args: tuple[str, ...]
    spec: str
    flops: int
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Direction:
    """One generated function and what it costs.

    Attributes:
        name: ``forward``, ``vjp``, ``forward_saving`` or ``pullback``.
        steps: its steps in order (transposed copies included, at 0 FLOPs).
        flops: the sum over the steps.
        largest: elements of its largest intermediate (returned values excluded; 0 if none).
    """

    name: str
    steps: tuple[PathStep, ...]
    flops: int
    largest: int

    @classmethod
    def of(cls, name: str, program: Plan) -> "Direction":
        step = program.largest_intermediate()
        return cls(name, tuple(PathStep(s.target, s.args, s.spec, s.flops, s.shape) for s in program.steps),
                   program.flops, 0 if step is None else math.prod(step.shape))


@dataclass(frozen=True)
class PlanReport:
    """The contraction path and costs of the forward and of each way to get the gradients.

    ``str()`` gives a table (one row per function) followed by each function's steps;
    ``repr()`` one line. FLOPs count 2 per multiply-add; sizes are in elements.

    Attributes:
        spec: the forward spec, canonical.
        shapes: the operand shapes.
        bound: the spec over the bound labels the steps use (one label per dimension).
        forward: the plain forward.
        vjp: all gradients in one shot, from the cotangent and the operands.
        forward_saving: the forward of ``value_and_pullback``, which keeps what the backward reads.
        pullback: all gradients from the cotangent and the kept values.
        separate: FLOPs of all gradients as one contraction per operand (recomputing each).
        kept: the values ``forward_saving`` keeps besides its output (operands are ``x0``...).
        saved: elements of the kept intermediates (operands are kept by reference, not counted).
        slices: (label, chunk size) of each label sliced to honour ``memory_limit``.
        notes: lines on how the tree and the slices were chosen (their costs).
    """

    spec: str
    shapes: tuple[tuple[int, ...], ...]
    bound: str
    forward: Direction
    vjp: Direction
    forward_saving: Direction
    pullback: Direction
    separate: int
    kept: tuple[str, ...]
    saved: int
    slices: tuple[tuple[str, int], ...] = ()
    notes: tuple[str, ...] = ()

    @classmethod
    def of(cls, spec: str, shapes, bound: str, plans: Plans, slices=(), notes=()) -> "PlanReport":
        return cls(spec, tuple(shapes), bound, Direction.of("forward", plans.forward),
                   Direction.of("vjp", plans.vjp), Direction.of("forward_saving", plans.saving),
                   Direction.of("pullback", plans.pullback), plans.separate,
                   plans.saving.returns[1:], Costs.of(plans).saved, tuple(slices), tuple(notes))

    @property
    def directions(self) -> tuple[Direction, ...]:
        return (self.forward, self.vjp, self.forward_saving, self.pullback)

    def __repr__(self) -> str:
        return (f"PlanReport({self.spec!r}, shapes={self.shapes!r}, forward={self.forward.flops:,} "
                f"flops, pullback={self.pullback.flops:,} flops, vjp={self.vjp.flops:,} flops)")

    def __str__(self) -> str:
        base = max(self.forward.flops, 1)
        lines = [f"einsgrad plan: {self.spec}  shapes {', '.join(map(str, self.shapes))}",
                 f"bound labels: {self.bound}", "",
                 f"{'function':<16}{'flops':>16}  {'x forward':>9}  {'largest intermediate':>20}  steps"]
        rows = [(d.name, d.flops, d.largest, len(d.steps)) for d in self.directions]
        for name, flops, largest, count in rows:
            lines.append(f"{name:<16}{flops:>16,}  {flops / base:>9.2f}  {largest:>20,}  {count:>5}")
        lines.append(f"{'per-operand':<16}{self.separate:>16,}  {self.separate / base:>9.2f}"
                     "  (each gradient its own contraction)")
        lines.append(f"forward + pullback: {self.forward.flops + self.pullback.flops:,} flops; "
                     f"kept for the pullback: {', '.join(self.kept) or 'nothing'} "
                     f"({self.saved:,} elements besides the operands)")
        if self.slices:
            lines.append("sliced: " + ", ".join(f"{l} in chunks of {c}" for l, c in self.slices))
        lines += self.notes
        for direction in self.directions:
            lines += ["", f"{direction.name}:"]
            target = max((len(s.target) for s in direction.steps), default=0)
            spec = max((len(s.spec) for s in direction.steps), default=0)
            for s in direction.steps:
                lines.append(f"  {s.target:<{target}} = {s.spec:<{spec}}  {s.flops:>14,} flops  "
                             f"-> {str(s.shape):<14} from {', '.join(s.args)}")
        return "\n".join(lines)
