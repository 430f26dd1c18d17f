"""``memory_limit`` honoured by slicing: which labels to cut, and what the cuts cost.

A sliced contraction is the same contraction, along the same tree, on slices of the operands:
outputs along a sliced label are written by pieces, sums over it accumulate. The tree is kept
fixed (it is the signature's forward tree) and only its labels are cut, so no intermediate
grows: a chunk's intermediates are the tree's with the sliced labels at their chunk sizes.

Every chunk of a label has the same size, so one compiled function serves every slice (the
loop over the slices is generated code too: :mod:`einsgrad.sliced_code`). A
chunk size that does not divide its label leaves the last chunk short; that chunk is padded
with zeros, which is exact for a multilinear contraction: a zero entry of a summed label adds
nothing, and the padded part of an output or gradient is cut off. Chunk sizes that divide the
label cost no padding, and the choice below weighs the padding's FLOPs like any other.

Which labels to cut is a greedy search over the fixed tree (:class:`Model`): each move cuts one
label of an intermediate over the limit a little further, and the move taken lowers the
intermediates' excess over the limit most per unit of FLOP overhead, counting the forward and
every gradient's steps. Where cotengra is installed its ``SliceFinder`` is asked too, on the
same tree, and its answer is taken where it costs fewer FLOPs (:func:`cuts`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
import numpy as np

from . import paths
from .errors import EinsumSpecError
from .plan import Path, forward_terms, sweep
from .shapes import BoundSpec

Cuts = tuple[tuple[str, int], ...]  # (label, chunk size) for each sliced label


@dataclass(frozen=True)
class Slicing:
    """One choice of cuts and what it costs, forward and every gradient together.

    Attributes:
        cuts: (label, chunk size) of each sliced label.
        slices: how many chunks run.
        largest: elements of one chunk's largest intermediate.
        flops: FLOPs of the forward and all gradients, over every chunk.
        unsliced_flops: the same, unsliced.
        finder: who chose the cuts: ``"einsgrad"`` or ``"cotengra"`` (``SliceFinder``).
    """

    cuts: Cuts
    slices: int
    largest: int
    flops: float
    unsliced_flops: float
    finder: str = "einsgrad"

    @property
    def overhead(self) -> float:
        """Sliced FLOPs over unsliced: what slicing costs."""
        return self.flops / self.unsliced_flops if self.unsliced_flops else 1.0


class Model:
    """The fixed tree's forward and reverse sweep as label sets: the size of each intermediate
    and the FLOPs of each step under any chunk sizes, without planning again.

    A step's FLOPs and an intermediate's elements are products over their labels, so cutting
    label ``l`` to chunk ``c`` scales each step holding it by ``c / d`` and multiplies the
    number of chunks by ``ceil(d / c)``. All in logarithms: FLOPs of large grids pass 1e300.
    """

    def __init__(self, bound: BoundSpec, path: Path):
        every = tuple(range(len(bound.spec.inputs)))
        swept = sweep(bound, path, every)
        self.size = bound.size_of
        self.sliceable = tuple(l for l in dict.fromkeys(l for t in bound.spec.inputs for l in t)
                               if self.size[l] > 1)
        column = {l: i for i, l in enumerate(self.sliceable)}
        kept = set(swept.returns) | {"y"}  # what a chunk returns is not an intermediate
        flops, memory = [], []
        for step in swept.steps:
            labels = set(step.labels).union(*step.inputs)
            if step.flops:  # (views and reshapes cost nothing, sliced or not)
                flops.append((math.log(step.flops), [column[l] for l in labels if l in column]))
            if step.fresh and step.target not in kept and 0 not in step.shape:  # (empty: it fits)
                memory.append((sum(math.log(d) for d in step.shape), [column[l] for l in step.labels if l in column],
                               step))
        self.steps = [step for _, _, step in memory]
        self.log_flops = np.array([f for f, _ in flops])
        self.log_sizes = np.array([m for m, _, _ in memory])
        self.flop_rows = _rows(len(self.sliceable), [h for _, h in flops])
        self.memory_rows = _rows(len(self.sliceable), [h for _, h, _ in memory])
        self.unsliced = float(np.exp(self.log_flops).sum())

    def scales(self, chunks: dict) -> np.ndarray:
        """Each label's log of chunk over size (0 where it is not cut), by column."""
        delta = np.zeros(len(self.sliceable))
        for i, l in enumerate(self.sliceable):
            if l in chunks:
                delta[i] = math.log(chunks[l] / self.size[l])
        return delta

    def measure(self, chunks: dict) -> Slicing:
        """What cutting ``chunks`` (label -> chunk size) costs."""
        delta = self.scales(chunks)
        sizes = self.log_sizes + _apply(self.memory_rows, delta, len(self.log_sizes))
        flops = float(np.exp(self.log_flops + _apply(self.flop_rows, delta, len(self.log_flops))).sum())
        slices = math.prod(-(-self.size[l] // c) for l, c in chunks.items())
        largest = round(math.exp(sizes.max())) if sizes.size else 0
        return Slicing(tuple(chunks.items()), slices, largest, flops * slices, self.unsliced)


def _rows(columns: int, held: list[list[int]]) -> list[np.ndarray]:
    """For each label column, the rows (steps) that hold it."""
    rows: list[list[int]] = [[] for _ in range(columns)]
    for r, cols in enumerate(held):
        for c in cols:
            rows[c].append(r)
    return [np.array(r, dtype=np.intp) for r in rows]


def _apply(rows: list[np.ndarray], delta: np.ndarray, count: int) -> np.ndarray:
    """Each of ``count`` rows' sum of ``delta`` over the columns it holds."""
    total = np.zeros(count)
    for c in np.flatnonzero(delta):
        total[rows[c]] += delta[c]
    return total


def _options(size: int, chunk: int) -> set[int]:
    """Smaller chunk sizes to try for a label of ``size`` cut to ``chunk``: one chunk more,
    the largest divisor below (no padding), and half."""
    count = -(-size // chunk)
    options = {-(-size // (count + 1)), -(-chunk // 2)}
    options.add(next(c for c in range(chunk - 1, 0, -1) if size % c == 0))
    return {c for c in options if 1 <= c < chunk}


def greedy(model: Model, memory_limit: int, start: dict | None = None) -> Slicing:
    """Cuts, from ``start`` on, until no intermediate of a chunk exceeds ``memory_limit``;
    each move cuts the label that lowers the summed log excess over the limit most per unit
    of log FLOPs (a move free of overhead first)."""
    limit = math.log(memory_limit)
    chunks = dict(start or {})
    delta = model.scales(chunks)
    sizes = model.log_sizes + _apply(model.memory_rows, delta, len(model.log_sizes))
    flop_scale = _apply(model.flop_rows, delta, len(model.log_flops))
    slices = math.prod(-(-model.size[l] // c) for l, c in chunks.items())
    column = {l: i for i, l in enumerate(model.sliceable)}
    while sizes.size and sizes.max() > limit + 1e-9:
        flops = math.log(slices) + _logsumexp(model.log_flops + flop_scale)
        over = np.flatnonzero(sizes > limit + 1e-9)
        labels = {l for i in over for l in model.steps[i].labels if l in column and chunks.get(l, model.size[l]) > 1}
        best = None
        for l in sorted(labels):
            c, d, col = chunks.get(l, model.size[l]), model.size[l], column[l]
            for new in sorted(_options(d, c)):
                step = math.log(new / c)
                rows = model.memory_rows[col]
                gain = float((np.maximum(sizes[rows] - limit, 0) - np.maximum(sizes[rows] + step - limit, 0)).sum())
                if gain <= 1e-12:
                    continue
                more = slices // -(-d // c) * -(-d // new)
                scaled = flop_scale.copy()
                scaled[model.flop_rows[col]] += step
                cost = math.log(more) + _logsumexp(model.log_flops + scaled) - flops
                score = (gain / max(cost, 1e-12), gain)
                if best is None or score > best[0]:
                    best = (score, l, new, step, more)
        if best is None:
            step = model.steps[int(sizes.argmax())]
            raise EinsumSpecError(
                f"memory_limit={memory_limit} is too small: the step {step.spec} needs "
                f"{round(math.exp(sizes.max()))} elements even when every label is sliced to size 1")
        _, l, new, step, slices = best
        chunks[l] = new
        sizes[model.memory_rows[column[l]]] += step
        flop_scale[model.flop_rows[column[l]]] += step
    return model.measure(chunks)


def _logsumexp(values: np.ndarray) -> float:
    if not values.size:  # no step costs anything
        return 0.0
    top = values.max()
    return float(top + np.log(np.exp(values - top).sum()))


def choose(bound: BoundSpec, memory_limit: int, path: Path) -> Slicing:
    """The cuts that bound every intermediate of the forward and backward along ``path`` by
    ``memory_limit`` elements for the fewest FLOPs found: einsgrad's greedy search, and
    cotengra's ``SliceFinder`` on the same tree where it is installed (its cuts, completed
    greedily where the backward's intermediates need more), whichever costs less."""
    model = Model(bound, path)
    found = greedy(model, memory_limit)
    if not found.cuts or not paths.has_cotengra():
        return found
    terms, core = forward_terms(bound)
    cut = paths.cotengra_slices(terms, core, bound.size_of, path, memory_limit)
    if cut is None:
        return found
    theirs = greedy(model, memory_limit, {l: 1 for l in cut if l in model.sliceable})
    theirs = Slicing(theirs.cuts, theirs.slices, theirs.largest, theirs.flops, theirs.unsliced_flops, "cotengra")
    return theirs if theirs.flops < found.flops else found


def cuts(bound: BoundSpec, memory_limit: int, path: Path, optimize="auto") -> Cuts:
    """Labels to slice, and their chunk sizes, so that no intermediate of the forward or of
    the backward along the tree ``path`` holds more than ``memory_limit`` elements (see
    :func:`choose`; ``optimize`` is not asked: the tree stays ``path``)."""
    return choose(bound, memory_limit, path).cuts
