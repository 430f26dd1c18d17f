"""A tall GEMM's small right side read from a transposed copy, in the dtypes where the
dialect's BLAS multiplies faster so (:attr:`einsgrad.dialects.Dialect.right_transposed`).

A GEMM ``A @ B`` (each a matrix or a batch of them) can read each side as stored rows (``N``)
or transposed (``T``). MKL's ``dgemm``, which torch calls on the CPU, runs ``A`` by ``B``
transposed (NT) in 0.75-0.97 of the time of both as stored (NN), over shapes (rows, summed,
columns) from 128x128x128 to 4096x256x256, one thread, float64; in float32 and bfloat16 the two
are within 2-5% either way (and TN, TT are slower in all three). Where ``B`` is small beside
the product, a transposed copy of it (``k x n`` elements, 0.2 ms for 256x256 float64) costs
less than NT saves: attention's input gradient through its output projection, ``G @ W`` of
4096x256 by 256x256, took 14.5 ms NN against 12.9 ms NT (12.9 with the copy), float64, one
thread, interleaved medians (the product ``torch.einsum`` runs there reads such a copy, which
it makes in its forward). So a GEMM whose both sides are read as stored is rewritten to read
its right side from a copy stored (batch, columns, summed) and read transposed, where the
product has at least :data:`ROWS` rows and :data:`TALL` times as many rows as the copy has
rows or columns (below that, copy and gain were measured to cancel out: 512x256x256 and
4096x1024x256 gain nothing). Steps of a plan alone: one copy per value and order, made just
before the first GEMM that reads it; a GEMM whose product is then transposed is left to the
code generator (which multiplies it the other way round).

A pass over a finished plan, run where a function's plan meets its dtypes
(:meth:`einsgrad.signature.SignatureRecord.compose`), so that the code shown is the code
that runs; a generic plan decides on its shape class's sizes, as its other layouts do.
"""

from __future__ import annotations

import math
from typing import Mapping

from . import scalars
from .spec import Labels, canonical_text
from .steps import Copy, Layout, Matmul, Plan, Step

ROWS = 1024
"""The fewest rows of a product whose right side is copied (1024x256x256 and 1024x64x64 gained
1-5% in float64, 512 rows nothing). Shape-generic code decides on its class's sizes (3, 30,
300, 3000, ...): there a product of 1,000 rows or more is copied for."""

TALL = 8
"""How many times as many rows as the copy's rows and its columns the product needs."""


def in_dtype(plan: Plan, size_of: Mapping[str, int], dtypes: tuple, rewritten_in: tuple[str, ...]) -> Plan:
    """``plan`` :func:`rewritten` where the dtype its arguments' ``dtypes`` compute in (None
    among them: no argument) is named in ``rewritten_in`` (a dialect's ``right_transposed``);
    else ``plan`` itself."""
    if not rewritten_in or scalars.name(scalars.result_type(*[d for d in dtypes if d is not None])) not in rewritten_in:
        return plan
    return rewritten(plan, size_of)


def rewritten(plan: Plan, size_of: Mapping[str, int]) -> Plan:
    """``plan`` with each tall GEMM of two sides read as stored reading a transposed copy of
    its small right side instead (see the module); the plan itself where there is none.
    ``size_of``: each label's size (the bound spec's)."""
    steps: list[Step] = []
    copies: dict[tuple[str, Labels], str] = {}  # (value, order) -> the copy's name
    taken = set(plan.args) | {step.target for step in plan.steps}
    for step in plan.steps:
        order = _copied_order(step, size_of)
        if order is None:
            steps.append(step)
            continue
        source, labels = step.args[1], step.inputs[1]
        name = copies.get((source, order))
        if name is None:
            name = copies[source, order] = _fresh_name(taken)
            steps.append(Step(name, (source,), canonical_text((labels,), order),
                              Copy(tuple([labels.index(l) for l in order])), None, order,
                              tuple([size_of[l] for l in order]), 0, True, (labels,)))
        steps.append(_reading_copy(step, name, order, size_of))
    if not copies:
        return plan
    return Plan(plan.args, plan.arg_ranks, tuple(steps), plan.returns)


def _copied_order(step: Step, size_of: Mapping[str, int]) -> Labels | None:
    """The labels of the right side's copy, (batch, columns, summed), where ``step`` is a GEMM
    to rewrite; else None."""
    op = step.operation
    if type(op) is not Matmul or op.a.perm is not None or op.a.swap or op.b.perm is not None or op.b.swap:
        return None
    n = len(step.labels)
    if step.perm is not None and n >= 2 and step.perm == tuple(range(n - 2)) + (n - 1, n - 2):
        return None  # a transposed product: the generator multiplies it the other way round
    a, b = step.inputs
    a_dims, b_dims = _dims(op.a, a), _dims(op.b, b)
    if a_dims is None or b_dims is None or len(set(b)) != len(b) or sorted(sum(b_dims, ())) != sorted(b):
        return None
    *batch, summed, columns = b_dims
    if not summed or not columns:
        return None  # a matrix-vector product: one layout is as good as the other
    size = lambda group: math.prod([size_of[l] for l in group])  # noqa: E731
    rows = size(a_dims[-2])
    if rows < ROWS or rows < TALL * size(summed) or rows < TALL * size(columns):
        return None
    return tuple(sum(batch, ())) + columns + summed


def _dims(layout: Layout, labels: Labels) -> tuple[Labels, ...] | None:
    """The labels of each dimension a side is read with, (batch,) rows, columns; None where
    its layout does not say."""
    if layout.shape is None:
        return tuple((l,) for l in labels) if len(labels) in (2, 3) else None
    return layout.dims if layout.dims is not None and len(layout.dims) in (2, 3) else None


def _reading_copy(step: Step, name: str, order: Labels, size_of: Mapping[str, int]) -> Step:
    """``step`` reading its right side from the copy ``name`` of labels ``order``, transposed."""
    op = step.operation
    b_dims = _dims(op.b, step.inputs[1])
    *batch, summed, columns = b_dims
    dims = tuple(batch) + (columns, summed)  # as the copy stores them
    shape = tuple([math.prod([size_of[l] for l in group]) for group in dims])
    if all(len(group) == 1 for group in dims):
        layout = Layout(None, None, True)
    else:
        layout = Layout(None, shape, True, dims)
    inputs = (step.inputs[0], order)
    spec = canonical_text(inputs, ()) + step.spec.partition("->")[2]
    return Step(step.target, (step.args[0], name), spec, Matmul(op.a, layout, op.shape, op.dims), step.perm,
                step.labels, step.shape, step.flops, step.fresh, inputs, None)


def _fresh_name(taken: set) -> str:
    """A value name the plan does not use yet (taken from then on)."""
    i = len(taken)
    while f"t{i}" in taken:
        i += 1
    taken.add(f"t{i}")
    return f"t{i}"
