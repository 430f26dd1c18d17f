"""Small transposed copies made by one gather through a precomputed index: ``x.take(index)``.

numpy copies ``x.transpose(p).reshape(s)`` with a loop whose innermost run is the last axes
of the transposed array that stay consecutive in ``x``. A network of bond-2 tensors transposes
arrays of six to fourteen axes of size 2: the innermost run is 2 elements, and the copy costs
one inner-loop call per pair of elements (a 2**12-element copy of 12 axes: 7.6-11 µs). The
same copy as ``x.take(index)``, ``index`` the positions in ``x``'s C order of each element of
the copy (made once, when the code is loaded), is one call that reads each element once:
1.8 µs there, 0.22 µs against 0.42 µs for 2x2x2. Where the innermost run is longer the loop
catches up (2**14 elements of runs of 8: 1.2x the loop's time, runs of 32: 2.5x), and an
index costs 8 bytes an element to keep, so copies gather up to :data:`LIMIT` elements where
their run is at most :data:`RUN`, up to :data:`SHORT_LIMIT` elements where it is longer
(:func:`worth`).

A copy of at most :data:`INDEXED` elements is spelled ``x.ravel()[index]`` instead: the same
gather, by numpy's indexing, whose call costs less than ``take``'s argument parsing (2x2x2:
0.15 µs against 0.24 µs; 2**8 elements: 0.34 against 0.40 µs; 2**10: 0.92 against 0.98 µs).

The result is the same array (same values, C-ordered) whatever the layout of ``x``: ``take``
reads ``x`` in C order, as ``reshape`` does, and makes a strided ``x`` contiguous first. So a
gather is used where ``x`` is known to be stored contiguously (an argument, or a value a GEMM
or a copy made), and where the code's shapes are exact (an index is made for one shape):
numpy's straight-line code, not a step table (whose kernels serve every step of one pattern)
and not shape-generic code. Index arrays hold only integers of the plan's shapes. Such code
runs only on the shapes it was made for (an :class:`einsgrad.Einsum` call checks them, a
module from ``Einsum.module()`` refuses others): a gather leaves no reshape that would refuse
an array of another size, and would read a larger one's first elements.
"""

from __future__ import annotations

import math

from .steps import Copy, Layout, Matmul, Multiply, Plan, Step, tuple_text

LIMIT = 16384
"""Elements of the largest copy made by a gather (its index: 128 KiB)."""

RUN = 4
"""The longest innermost run (elements) of a copy that gathers at any size up to :data:`LIMIT`
(bond-2 axes, runs of 2 and 4: 0.23-0.43x the loop's time at 2**8 to 2**14 elements)."""

SHORT_LIMIT = 1024
"""Elements of the largest copy with a longer run that gathers: at 2**10 elements 0.5-0.85x
the loop's time for runs of 8 to 128 (a 32 x 32 transposition 1.2x), at 2**12 0.9-2.0x."""

INDEXED = 256
"""Elements of the largest copy gathered by indexing (``x.ravel()[index]``), not ``take``."""

HELPER = '''

def _gather_index(shape, perm, out, swap):
    """Where each element of x.transpose(perm).reshape(out) (then .T where swap) lies in x
    read in C order, for an x of `shape`: x.take(it) makes that copy, contiguous, in one call."""
    index = np.arange(int(np.prod(shape))).reshape(shape).transpose(perm).reshape(out)
    index = np.ascontiguousarray(index.T if swap else index)
    index.flags.writeable = False  # shared by every call
    return index
'''
"""The numpy helper that makes each index when the code is loaded."""


def inner_run(shape: tuple[int, ...], perm: tuple[int, ...]) -> int:
    """Elements of the innermost run of copying ``x.transpose(perm)`` (``x`` of ``shape``, C
    order): the trailing axes of the transposed array that are consecutive in ``x``."""
    axes = [p for p in perm if shape[p] != 1]
    run, k = 1, len(axes) - 1
    while k >= 0:
        run *= shape[axes[k]]
        if k == 0 or axes[k - 1] != axes[k] - 1:
            break
        k -= 1
    return run


def reshape_copies(shape: tuple[int, ...], perm: tuple[int, ...], out: tuple[int, ...]) -> bool:
    """Whether numpy's ``x.transpose(perm).reshape(out)`` copies a C-contiguous ``x`` of
    ``shape`` (else it is a view): some dimension of ``out`` spans transposed axes that are
    not consecutive in ``x``."""
    strides = [1] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        strides[i] = strides[i + 1] * shape[i + 1]
    old = [(shape[p], strides[p]) for p in perm if shape[p] != 1]
    new = [n for n in out if n != 1]
    i = j = 0
    while i < len(old) and j < len(new):
        have, want = old[i][0], new[j]
        k, m = i + 1, j + 1
        while have != want:
            if have < want:
                have *= old[k][0]
                k += 1
            else:
                want *= new[m]
                m += 1
        if any(old[a][1] != old[a + 1][0] * old[a + 1][1] for a in range(i, k - 1)):
            return True
        i, j = k, m
    return False


def worth(shape: tuple[int, ...], perm: tuple[int, ...], out: tuple[int, ...] | None) -> bool:
    """Whether ``x.transpose(perm).reshape(out)`` (``out`` None: ``x.transpose(perm).copy()``)
    is made by a gather (see the module): it copies, and its innermost run is short enough for
    its size."""
    n = math.prod(shape)
    if n == 0 or n > LIMIT:
        return False
    if out is not None and (math.prod(out) != n or not reshape_copies(shape, perm, out)):
        return False
    return n <= SHORT_LIMIT or inner_run(shape, perm) <= RUN


class Gathers:
    """The index arrays of one generated function, each named once (``_vjp_take0``) and
    defined before it by :meth:`lines`.

    Args:
        function: the function's name (a name the planner made), which prefixes the indices'.
        size_of: the size of every label of the plan.
        contiguous: the values stored contiguously (arguments and values GEMMs and copies
            make): only these are read by a gather.
    """

    def __init__(self, function: str, size_of: dict[str, int], contiguous: set[str]):
        self.function = function
        self.size_of = size_of
        self.contiguous = contiguous
        self.names: dict[tuple, str] = {}  # (shape, perm, out, swap) -> the index's name
        self.decided: dict[tuple, tuple | None] = {}  # (shape, perm, out, swap) -> :meth:`_index`'s answer

    def gathers(self, value: str, labels: tuple[str, ...], perm: tuple[int, ...], out: tuple[int, ...] | None,
                swap: bool = False) -> bool:
        """Whether :meth:`read` makes this read a gather: it is worth it (:func:`worth`) and
        can be made (sizes known, the value stored contiguously)."""
        return value in self.contiguous and self._index(labels, perm, out, swap) is not None

    def read(self, value: str, labels: tuple[str, ...], perm: tuple[int, ...], out: tuple[int, ...] | None,
             swap: bool = False) -> str | None:
        """``value`` (its labels ``labels``) transposed by ``perm``, reshaped to ``out`` (None:
        not reshaped) and swapped where ``swap``, as a gather; None where :meth:`gathers` says
        it is not one."""
        key = self._index(labels, perm, out, swap) if value in self.contiguous else None
        if key is None:
            return None
        name = self.names.get(key)
        if name is None:
            name = self.names[key] = f"_{self.function}_take{len(self.names)}"
        return f"{value}.ravel()[{name}]" if math.prod(key[0]) <= INDEXED else f"{value}.take({name})"

    def _index(self, labels, perm, out, swap) -> tuple | None:
        """The index of a gather reading a value of ``labels`` so, as (shape, perm, out, swap);
        None where it is not one (decided once per shape read so: a network reads few)."""
        try:
            shape = tuple([self.size_of[l] for l in labels])
        except KeyError:
            return None
        read = (shape, perm, out, swap)
        if read in self.decided:
            return self.decided[read]
        found = None
        if len(perm) == len(shape) and not (swap and (out is None or len(out) != 2)) and worth(shape, perm, out):
            found = (shape, tuple(perm), tuple([shape[p] for p in perm]) if out is None else tuple(out), swap)
        self.decided[read] = found
        return found

    def lines(self) -> list[str]:
        """The definitions of the indices :meth:`read` named, in order of first use."""
        return [f"{name} = _gather_index({tuple_text(shape)}, {tuple_text(perm)}, {tuple_text(out)}, {swap})"
                for (shape, perm, out, swap), name in self.names.items()]


def contiguous(plan: Plan) -> set[str]:
    """The values of ``plan`` stored contiguously by numpy's code: its arguments (as callers
    pass them, most often) and the values of GEMMs and copies not transposed after; a name
    made twice counts where every step making it qualifies."""
    made = set(plan.args)
    strided = set()
    for step in plan.steps:
        if step.perm is None and type(step.operation) in (Matmul, Copy):
            made.add(step.target)
        else:
            strided.add(step.target)
    return made - strided


def unreshaped(plan: Plan, gathering: Gathers) -> Plan:
    """``plan`` with each product that is read only by gathers and by GEMMs or products
    through a reshape left in the shape its GEMM made: a gather reads its operand in C order
    whatever its shape, and a reshape of the contiguous product is a view, so its own reshape
    to its labels' shape is a call for nothing (most products of a bond-2 network are read
    by one gathered copy). Step shapes stay their labels': the readers read these values by
    the ranks of their own reads."""
    readers: dict[str, list[tuple[Step, int]]] = {}
    made: dict[str, int] = {}
    for step in plan.steps:
        for side, arg in enumerate(step.args):
            readers.setdefault(arg, []).append((step, side))
        made[step.target] = made.get(step.target, 0) + 1
    kept, steps, changed = set(plan.returns), list(plan.steps), False
    for i, step in enumerate(steps):
        op = step.operation
        if (type(op) is not Matmul or op.shape is None or step.perm is not None or step.target in kept
                or made[step.target] != 1 or step.target not in readers):
            continue
        if all(_reads_any_shape(reader, side, gathering) for reader, side in readers[step.target]):
            steps[i] = Step(step.target, step.args, step.spec, Matmul(op.a, op.b, None, None), None, step.labels,
                            step.shape, step.flops, step.fresh, step.inputs, None)
            changed = True
    return Plan(plan.args, plan.arg_ranks, tuple(steps), plan.returns) if changed else plan


def _reads_any_shape(step: Step, side: int, gathering: Gathers) -> bool:
    """Whether ``step`` reads its operand ``side`` the same whatever that operand's shape (of
    its elements in C order): by a gather, or as a GEMM's or a product's reshape."""
    op, value = step.operation, step.args[side]
    labels = step.inputs[side] if len(step.inputs) > side else ()
    if type(op) is Copy:
        return gathering.gathers(value, labels, op.perm, op.shape)
    if type(op) is not Matmul and type(op) is not Multiply or step.args.count(value) != 1:
        return False
    layout: Layout = op.b if side else op.a
    if layout.shape is None:
        return False
    return layout.perm is None or gathering.gathers(value, labels, layout.perm, layout.shape, layout.swap)
