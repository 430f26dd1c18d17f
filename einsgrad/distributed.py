"""A contraction too large for one machine: its slices run as tasks of a dask.distributed cluster.

``memory_limit`` slices a contraction (:func:`einsgrad.slicing.cuts`): the same tree, run on
slices of the operands along a few labels, each slice's intermediates within the limit. The
slices are independent, so :func:`value_and_grads` splits their grid into rectangular groups
and runs the forward and all gradients of each group as one task on the cluster
(the sliced loops of :mod:`einsgrad.sliced_code` over the group's window). Each task returns the output and
the gradients at their full shapes, zero outside its group's windows: summing the tasks'
results, pairwise as a tree on the workers, places the pieces of values along a sliced label
and adds up the sums over it. Only the operands, the cotangent and that tree of sums cross the
network; no intermediate leaves its task.

``dask.distributed`` is imported by the caller, never here: any object with its ``Client``'s
``submit`` and ``scatter`` serves.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from . import backends, dialects, paths, slicing
from .compiled import Einsum
from .errors import EinsumSpecError
from .plan import Path
from .shapes import BoundSpec, bind, is_count
from .signature import FunctionKey, Mode, PlanKey, SignatureRecord, check_dtypes
from .spec import Spec


class ValueAndGrads(NamedTuple):
    """What :func:`value_and_grads` returns: unpack it as ``y, grads``.

    Attributes:
        value: the output, a numpy array.
        grads: the gradient of each operand, in order.
        slices: (label, chunk size) of each sliced label (none: the contraction fits).
        pieces: how many slices those cuts make.
        tasks: how many tasks ran the slices (groups of slices).
        largest: elements of the largest intermediate of one slice's forward or vjp (at most
            ``memory_limit``).
    """

    value: np.ndarray
    grads: tuple
    slices: slicing.Cuts = ()
    pieces: int = 1
    tasks: int = 1
    largest: int = 0


@dataclass(frozen=True)
class Job:
    """Everything a task needs but the arrays, by value (hashable: each worker compiles a job's
    code once, whatever the number of its tasks): the bound contraction, its forward tree, the
    cuts, and the dtypes of the calls."""

    spec: Spec
    bound: BoundSpec
    tree: Path
    memory_limit: int
    cuts: slicing.Cuts
    dtypes: tuple
    cotangent: np.dtype


Window = tuple[tuple[str, int, int], ...]  # (label, start, stop) of each sliced label: one group


def value_and_grads(spec, *operands, memory_limit: int, client=None, cotangent=None, optimize="auto",
                    sizes=None, tasks: int | None = None, timeout: float | None = None) -> ValueAndGrads:
    """The output of ``spec`` and the gradients of every operand, its slices run on a cluster.

    Args:
        spec: the einsum, as :class:`einsgrad.Einsum` takes it.
        *operands: numpy arrays (or values numpy reads as arrays).
        memory_limit: the largest intermediate of one slice, in elements (as ``Einsum``'s).
        client: a ``dask.distributed.Client``; None: the current one (``get_client()``).
        cotangent: ``dL/dY``; None: ones (the gradients of ``y.sum()``, of ``y`` when scalar).
        optimize: the path optimizer of the forward tree, asked once, here.
        sizes: sizes of labels only the output has.
        tasks: groups of slices to run as tasks (at most one per slice); None: two per
            worker thread of the cluster.
        timeout: seconds to wait for the result (None: no limit).

    Raises:
        EinsumSpecError: a bad spec, operands of another library than numpy, a cotangent of
            the wrong shape, or a memory limit that no slicing meets.

    >>> from dask.distributed import Client  # doctest: +SKIP
    >>> with Client(processes=False) as client:  # doctest: +SKIP
    ...     y, grads = value_and_grads("ab,bc->", A, B, memory_limit=2**20, client=client)
    """
    if memory_limit is None:
        raise EinsumSpecError("value_and_grads needs memory_limit: the largest intermediate of one slice")
    e = Einsum(spec, sizes=sizes, optimize=optimize, memory_limit=memory_limit)
    arrays, backend = backends.intake(tuple(operands))
    if backend is not None:
        raise EinsumSpecError(f"value_and_grads takes numpy arrays, not {backend.name} arrays")
    if len(arrays) != len(e.spec.inputs):
        raise EinsumSpecError(f"{str(e.spec)!r} takes {len(e.spec.inputs)} operands, got {len(arrays)}")
    bound = bind(e.spec, [a.shape for a in arrays], dict(e.sizes))
    if isinstance(e.optimize, (str, paths.GivenPath)):  # a value: the planning is kept for the next call
        record = _planned(e.spec, bound, e.optimize, memory_limit)
    else:  # an optimizer instance, asked again on each call as an Einsum asks it per signature
        record = SignatureRecord(e.spec, bound, e.optimize, memory_limit)
    g = np.ones(bound.output_shape, np.result_type(*arrays)) if cotangent is None else backends.as_numpy(
        cotangent, "the cotangent")
    if g.shape != bound.output_shape:
        raise EinsumSpecError(f"the cotangent has shape {g.shape} but the output of {str(e.spec)!r} "
                              f"has shape {bound.output_shape}")
    if client is None:
        from distributed import get_client

        client = get_client()
    elif not all(callable(getattr(client, name, None)) for name in ("submit", "scatter", "nthreads")):
        raise EinsumSpecError(f"client must be a dask.distributed Client, got {type(client).__name__}")
    dtypes = tuple(a.dtype for a in arrays)
    check_dtypes(dtypes, g.dtype)  # here, not in a task
    if tasks is not None and not is_count(tasks, 1):
        raise EinsumSpecError(f"tasks must be a positive integer, got {tasks!r}")
    job = Job(e.spec, bound, record.tree, record.memory_limit, record.slices, dtypes, g.dtype)
    count = tasks if tasks is not None else 2 * max(1, sum(client.nthreads().values()))
    windows = groups(bound, job.cuts, count)
    job_f, arrays_f, g_f = client.scatter([job, list(arrays), g], hash=False)  # keys of this call alone
    futures = [client.submit(run_group, job_f, window, arrays_f, g_f, pure=False) for window in windows]
    held = list(futures)  # every future, until the result is in: none is released while a sum waits on it
    while len(futures) > 1:  # the tree of sums, on the workers
        pairs = [futures[i:i + 2] for i in range(0, len(futures), 2)]
        futures = [client.submit(added, *pair, pure=False) if len(pair) == 2 else pair[0] for pair in pairs]
        held += futures
    y, *grads = futures[0].result(timeout=timeout)
    del held
    size = bound.size_of
    pieces = math.prod(-(-size[label] // chunk) for label, chunk in job.cuts)
    return ValueAndGrads(y, tuple(grads), job.cuts, pieces, len(windows), largest(record, job))


def groups(bound: BoundSpec, cuts: slicing.Cuts, count: int) -> list[Window]:
    """The grid of slices cut into about ``count`` rectangular groups of whole chunks: each
    sliced label, in turn, split into as many groups as the count left asks for."""
    size = bound.size_of
    ranges = []
    left = count
    for label, chunk in cuts:
        chunks = -(-size[label] // chunk)
        split = max(1, min(chunks, left))
        per = -(-chunks // split)
        ranges.append([(label, i * chunk, min((i + per) * chunk, size[label])) for i in range(0, chunks, per)])
        left = -(-left // split)
    return [tuple(window) for window in itertools.product(*ranges)]


def run_group(job: Job, window: Window, arrays, g) -> tuple:
    """One task: the output and the gradients of the slices in ``window``, at full shapes."""
    record = _record(job.spec, job.bound, job.tree, job.memory_limit)
    every = record.every
    span = {label: slice(start, stop) for label, start, stop in window}
    take = lambda labels: tuple(span.get(l, slice(None)) for l in labels)  # noqa: E731
    inputs, output = job.bound.spec.inputs, job.bound.spec.output
    parts = tuple(a[take(labels)] for a, labels in zip(arrays, inputs))
    sizes = tuple((label, stop - start) for label, start, stop in window)
    forward = FunctionKey(Mode.FORWARD, job.bound.input_shapes, job.dtypes, None, None, dialects.NUMPY)
    vjp = FunctionKey(Mode.VJP, job.bound.input_shapes, job.dtypes, every, job.cotangent, dialects.NUMPY)
    (y,) = record.sliced(forward, sizes)(*parts)
    grads = record.sliced(vjp, sizes)(g[take(output)], *parts)
    results = []
    for piece, labels, shape in zip((y, *grads), (output, *inputs), (job.bound.output_shape, *job.bound.input_shapes)):
        whole = np.zeros(shape, piece.dtype)
        whole[take(labels)] = piece
        results.append(whole)
    return tuple(results)


def added(a: tuple, b: tuple) -> tuple:
    """Two tasks' results summed (one node of the tree of sums)."""
    return tuple(np.add(x, y) for x, y in zip(a, b))


def largest(record: SignatureRecord, job: Job) -> int:
    """Elements of the largest intermediate the forward or vjp of the first (largest) slice
    creates: what ``memory_limit`` bounds (the results a task returns have the operands' and
    the output's shapes)."""
    chunk = tuple(job.cuts)
    plans = (record.plan(PlanKey(Mode.FORWARD, None, chunk)), record.plan(PlanKey(Mode.VJP, record.every, chunk)))
    steps = [p.largest_intermediate() for p in plans]
    return max([math.prod(s.shape) for s in steps if s is not None] + [0])


@functools.lru_cache(maxsize=16)
def _planned(spec: Spec, bound: BoundSpec, optimize, memory_limit: int) -> SignatureRecord:
    """The client's record of a contraction (its tree, its cuts, the plans of a slice), made once
    per spec, shapes, optimizer and limit: finding the cuts plans the backward several times."""
    return SignatureRecord(spec, bound, optimize, memory_limit)


@functools.lru_cache(maxsize=8)
def _record(spec: Spec, bound: BoundSpec, tree: Path, memory_limit: int) -> SignatureRecord:
    """A worker's record of a job's contraction, along the client's tree, made once per job."""
    return SignatureRecord(spec, bound, paths.GivenPath(tree, len(spec.inputs)), memory_limit)


__all__ = ["ValueAndGrads", "value_and_grads"]
