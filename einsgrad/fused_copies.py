"""A plan's small transposed copies, each read by one GEMM, folded into that GEMM's read.

The lowering makes a transposed copy (:class:`~einsgrad.steps.Copy`) a step of its own, so
that every later step reading the value in that order reads one copy. A network's small
steps pay for that: numpy spends about as long calling a function on a 2x2x2 array as on
computing it, and a copy read once costs its own call, and in a step table its own row, to
save nothing. So where a copy of at most :data:`SMALL` elements is read by exactly one
pairwise step, that step reads the copied value itself, transposed as the copy would have
been: ``x.transpose(p).reshape(s)`` copies as the copy step did (numpy's reshape of a
transposed array makes one C-ordered copy), in one expression instead of two lines.

numpy's dialect only: jax's dots are measured to lay out better reading the copies
(:func:`einsgrad.codegen._pair_by_dot`), and torch and dask keep their own. A pass over a
finished plan, run where the plan is rendered, so the code shown is the code that runs.
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace

from .steps import Copy, Layout, Matmul, Multiply, Operation, Plan, Step

SMALL = 4096
"""Elements of the largest copy folded into its reader: past a few thousand elements the copy
itself costs more than the call, and a GEMM may then read a transposed view strided."""


def fused(plan: Plan) -> Plan:
    """``plan`` with each small copy read once by a GEMM or product folded into that read
    (see the module); the plan itself where there is none."""
    steps = plan.steps
    reads: dict[str, int] = {}
    for step in steps:
        for arg in step.args:
            reads[arg] = reads.get(arg, 0) + 1
    kept = set(plan.returns)
    pending: dict[str, int] = {}  # a foldable copy's name -> its step's index
    of_source: dict[str, list[str]] = {}  # a value -> its pending copies
    readers: dict[int, list[tuple[int, int]]] = {}  # a reading step's index -> (side, the copy's index)
    for i, step in enumerate(steps):
        if pending:
            pairwise = type(step.operation) in (Matmul, Multiply)
            for side, arg in enumerate(step.args):
                at = pending.pop(arg, None)
                if at is not None and pairwise and step.args.count(arg) == 1:
                    readers.setdefault(i, []).append((side, at))
            pending.pop(step.target, None)
            for name in of_source.pop(step.target, ()):  # its value made again: the copy reads the old one
                pending.pop(name, None)
        if (type(step.operation) is Copy and reads.get(step.target) == 1 and step.target not in kept
                and math.prod(step.shape) <= SMALL):
            pending[step.target] = i
            of_source.setdefault(step.args[0], []).append(step.target)
    if not readers:
        return plan
    folded = {at for found in readers.values() for _, at in found}
    out = []
    for i, step in enumerate(steps):
        if i in folded:
            continue
        for side, at in readers.get(i, ()):
            step = _reading(step, side, steps[at])
        out.append(step)
    return Plan(plan.args, plan.arg_ranks, tuple(out), plan.returns)


def _reading(step: Step, side: int, copy: Step) -> Step:
    """``step`` reading on ``side`` the value ``copy`` copies, transposed as it was copied."""
    perm = copy.operation.perm
    args = step.args[:side] + copy.args + step.args[side + 1:]
    inputs = step.inputs[:side] + copy.inputs + step.inputs[side + 1:]
    kernel = None if step.kernel is None else _operation(step.kernel, side, perm)
    return replace(step, args=args, inputs=inputs, operation=_operation(step.operation, side, perm), kernel=kernel)


@functools.lru_cache(maxsize=4096)
def _operation(operation: Operation, side: int, perm: tuple[int, ...]) -> Operation:
    """``operation`` reading its operand ``side`` through ``perm`` first. Cached by value, so
    that the steps of one pattern name one kernel operation (:class:`einsgrad.tables.Kernels`
    spells each once)."""
    layout = (operation.a, operation.b)[side]
    order = perm if layout.perm is None else tuple(perm[p] for p in layout.perm)
    read = Layout(order, layout.shape, layout.swap, layout.dims)
    return replace(operation, a=read) if side == 0 else replace(operation, b=read)
