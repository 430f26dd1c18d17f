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
(:func:`einsgrad.codegen._pair_by_dot`), and torch and dask keep their own. Straight-line
code only: a step table (:mod:`einsgrad.tables`) spells one kernel per distinct expression,
and folded reads made a 256-tensor grid's 239 kernels 377, compiling 1.3-1.4x as long, where
a row saved is worth 0.2-0.5 µs a call. A pass over a finished plan, run where the plan is
rendered (:func:`einsgrad.codegen.render`), so the code shown is the code that runs.
"""

from __future__ import annotations

import math

from .steps import Copy, Layout, Matmul, Multiply, Operation, Plan, Step

SMALL = 4096
"""Elements of the largest copy folded into its reader: past a few thousand elements the copy
itself costs more than the call, and a GEMM may then read a transposed view strided."""


def folds(plan: Plan) -> dict[int, list[tuple[int, int]]]:
    """The folds :func:`fused` makes: for each step that reads a foldable copy, by index, the
    (side, index of the copy's step) of each copy it reads."""
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
    return readers


def fused(plan: Plan) -> Plan:
    """``plan`` with each small copy read once by a GEMM or product folded into that read
    (see the module); the plan itself where there is none."""
    readers = folds(plan)
    if not readers:
        return plan
    steps = plan.steps
    folded = {at for found in readers.values() for _, at in found}
    operations: dict = {}  # (id of an operation, side, perm) -> (it, it reading through perm)
    out = []
    for i, step in enumerate(steps):
        if i in folded:
            continue
        for side, at in readers.get(i, ()):
            step = _reading(step, side, steps[at], operations)
        out.append(step)
    return Plan(plan.args, plan.arg_ranks, tuple(out), plan.returns)


def _reading(step: Step, side: int, copy: Step, operations: dict) -> Step:
    """``step`` reading on ``side`` the value ``copy`` copies, transposed as it was copied;
    ``operations`` keeps each operation made, so that the steps of one pattern name one kernel
    operation (:class:`einsgrad.tables.Kernels` spells each once)."""
    perm = copy.operation.perm
    args = step.args[:side] + copy.args + step.args[side + 1:]
    inputs = step.inputs[:side] + copy.inputs + step.inputs[side + 1:]
    kernel = None if step.kernel is None else _operation(step.kernel, side, perm, operations)
    return Step(step.target, args, step.spec, _operation(step.operation, side, perm, operations), step.perm,
                step.labels, step.shape, step.flops, step.fresh, inputs, kernel)


def _operation(operation: Operation, side: int, perm: tuple[int, ...], made: dict) -> Operation:
    """``operation`` reading its operand ``side`` through ``perm`` first, made once per
    operation in ``made`` (which holds the operation, so that its id stays its own)."""
    key = (id(operation), side, perm)
    found = made.get(key)
    if found is not None and found[0] is operation:
        return found[1]
    layout = operation.b if side else operation.a
    order = perm if layout.perm is None else tuple([perm[p] for p in layout.perm])
    read = Layout(order, layout.shape, layout.swap, layout.dims)
    a, b = (operation.a, read) if side else (read, operation.b)
    result = Matmul(a, b, operation.shape, operation.dims) if type(operation) is Matmul else Multiply(a, b)
    made[key] = (operation, result)
    return result
