"""``memory_limit`` honoured by slicing: which labels to cut, and the run chunk by chunk.

A sliced contraction is the same contraction, along the same tree, on slices of the operands:
outputs along a sliced label are written by pieces, sums over it accumulate. Each chunk runs
the code compiled for the chunk's label sizes (:meth:`einsgrad.shapes.BoundSpec.resized`);
nothing is bound again.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable

import numpy as np

from .errors import EinsumSpecError
from .plan import Path, sweep, vjp_plan
from .shapes import BoundSpec

Cuts = tuple[tuple[str, int], ...]  # (label, chunk size) for each sliced label


def cuts(bound: BoundSpec, memory_limit: int, path: Path, optimize="auto") -> Cuts:
    """Labels to slice, and their chunk sizes, so that no intermediate of the forward or of
    the backward along the tree ``path`` holds more than ``memory_limit`` elements.

    The label cut is the largest one of the largest intermediate, halved until everything
    fits (cotengra's idea, in its simplest form).
    """
    sizes = bound.size_of
    sliceable = {l for term in bound.spec.inputs for l in term}
    chunks: dict[str, int] = {}
    every = tuple(range(len(bound.spec.inputs)))
    while True:
        chunk = bound.resized(chunks)
        step = vjp_plan(chunk, every, sweep(chunk, path, every), optimize, memory_limit).largest_intermediate()
        if step is None or math.prod(step.shape) <= memory_limit:
            return tuple(chunks.items())
        labels = [l for l in step.labels if l in sliceable and sizes[l] > 1]
        if not labels:
            raise EinsumSpecError(
                f"memory_limit={memory_limit} is too small: the step {step.spec} needs "
                f"{math.prod(step.shape)} elements even when every label is sliced to size 1")
        label = max(labels, key=lambda l: sizes[l])
        sizes[label] = chunks[label] = -(-sizes[label] // 2)


def run(bound: BoundSpec, cuts: Cuts, function: Callable[[Cuts], Callable], arrays,
        g=None, wrt: tuple[int, ...] = ()) -> tuple:
    """The forward (``g`` None) or the gradients of the operands ``wrt``, chunk by chunk.

    Args:
        bound: the whole contraction.
        cuts: the sliced labels and their chunk sizes (:func:`cuts`).
        function: the compiled function of one chunk, given that chunk's label sizes.
        arrays: the operands (numpy arrays).
        g: the cotangent, for the gradients.
        wrt: the operands whose gradients ``function``'s code returns, in order.
    """
    size = bound.size_of
    where = ([(bound.output_shape, bound.spec.output)] if g is None else
             [(bound.input_shapes[k], bound.spec.inputs[k]) for k in wrt])
    totals: list = [None] * len(where)
    for starts in itertools.product(*(range(0, size[l], c) for l, c in cuts)):
        window = {l: slice(i, i + c) for (l, c), i in zip(cuts, starts)}
        chunk = tuple((l, min(c, size[l] - i)) for (l, c), i in zip(cuts, starts))
        take = lambda labels: tuple(window.get(l, slice(None)) for l in labels)  # noqa: E731
        parts = tuple(a[take(labels)] for a, labels in zip(arrays, bound.spec.inputs))
        if g is None:
            results = function(chunk)(*parts)
        else:
            results = function(chunk)(g[take(bound.spec.output)], *parts)
        for j, (result, (shape, labels)) in enumerate(zip(results, where)):
            if totals[j] is None:
                totals[j] = np.zeros(shape, dtype=result.dtype)
            totals[j][take(labels)] += result
    return tuple(totals)
