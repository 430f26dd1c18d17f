"""A plan as data: the frozen steps a planner makes and the code generator reads.

Each :class:`Step` computes one value by one operation, a direct spelling in numpy's
primitives (:mod:`einsgrad.lowering` chooses among the first six; :mod:`einsgrad.plan` adds
the last to forward-saving plans):

* :class:`Unary`: one operand's diagonal, sums, transposition, broadcast and diagonal placement;
* :class:`Matmul`: a pairwise contraction as one (batched) GEMM: labels in both operands and the
  output are the batch, labels in both operands only are contracted;
* :class:`Multiply`: a pairwise step with nothing to contract (outer or Hadamard product);
* :class:`Einsum2`: a batched dot product (no free label on either side), memory-bound;
* :class:`Copy`: a transposed copy that GEMMs then read without copying;
* :class:`Add`: the sum of two values with the same labels (the terms of a jvp);
* :class:`Regroup`: a saved operand as the forward's reshape reads it, made once for both passes.

A :class:`Plan` is a straight-line program of such steps. Nothing here plans or runs: the
planner and the code generator both import these values, and neither imports the other.

Every shape a step reshapes or broadcasts to is kept twice: as integers (the sizes it was
planned for, which exact-shape code writes) and as :data:`Dims`, the labels whose sizes
multiply into each dimension, from which shape-generic code reads the sizes of the arguments
at run time (:func:`einsgrad.shapes.shape_class`).
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from typing import Union

from .spec import Labels

Dims = tuple[Labels, ...]
"""A shape as labels: each dimension is the product of its labels' sizes (none: size 1)."""


def _frozen(cls):
    """``dataclass(frozen=True)``, whose ``__init__`` sets every field in one call.

    A frozen dataclass's own ``__init__`` sets each field by a call of
    ``object.__setattr__``: 1.9 µs for a :class:`Step`'s eleven, against 0.8 µs for the whole
    ``__dict__`` at once, and a network of a thousand tensors plans some 6,000 steps and as many
    operations and layouts per signature. All else (fields, defaults, equality, hash, repr,
    ``dataclasses.replace``) is the dataclass's. The ``__init__`` is written from the field
    names alone."""
    cls = dataclass(frozen=True)(cls)
    names = [f.name for f in fields(cls)]
    defaults = {f"_default_{f.name}": f.default for f in fields(cls) if f.default is not MISSING}
    assert all(f.default_factory is MISSING for f in fields(cls)), cls
    params = ", ".join(["self", *(n if f"_default_{n}" not in defaults else f"{n}=_default_{n}" for n in names)])
    body = "{" + ", ".join(f"{n!r}: {n}" for n in names) + "}"
    namespace = {"_set": object.__setattr__, **defaults}
    exec(f"def __init__({params}):\n    _set(self, '__dict__', {body})\n", namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init
    return cls


@_frozen
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
        reshape_dims: ``reshape`` as :data:`Dims`.
        broadcast_dims: ``broadcast`` as :data:`Dims`.
    """

    diagonal: tuple[tuple[int, int], ...] | None
    sum_axes: tuple[int, ...]
    perm: tuple[int, ...] | None
    reshape: tuple[int, ...] | None
    broadcast: tuple[int, ...] | None
    place: tuple[tuple[int, ...], ...] | None
    shape: tuple[int, ...]
    own: bool = False
    reshape_dims: Dims | None = None
    broadcast_dims: Dims | None = None


@_frozen
class Layout:
    """How one side of a matmul is read: transpose, reshape to (batch,) rows, cols, swap last two.

    ``swap`` means the operand is stored as (cols, rows) already, so BLAS reads it transposed
    instead of copying it; ``dims`` is ``shape`` as :data:`Dims`.
    """

    perm: tuple[int, ...] | None
    shape: tuple[int, ...] | None
    swap: bool
    dims: Dims | None = None


@_frozen
class Matmul:
    """A pairwise contraction as one (batched) GEMM, then a reshape to ``shape`` (None: none),
    ``dims`` as :data:`Dims`."""

    a: Layout
    b: Layout
    shape: tuple[int, ...] | None
    dims: Dims | None = None


@_frozen
class Multiply:
    """A pairwise step with no contracted label: broadcast multiplication."""

    a: Layout
    b: Layout


@_frozen
class Copy:
    """A transposed copy, stored contiguously, that GEMMs then read without copying; stored
    with ``shape`` (``dims`` as :data:`Dims`) where every GEMM reads it so (None: its own)."""

    perm: tuple[int, ...]
    shape: tuple[int, ...] | None = None
    dims: Dims | None = None


@_frozen
class Regroup:
    """An operand reshaped to ``shape`` (``dims`` as :data:`Dims`) and back to its own shape:
    a copy where that reshape copies (a strided operand: heads stored (b, s, h, d) read as
    bhsd), else a view. The steps that read the operand through that reshape read this value
    instead, as a view, and the forward-saving plan saves it in the operand's place: the
    forward's copy is the pullback's too (as ``bmm`` saves the copies ``torch.einsum``'s
    reshapes make)."""

    shape: tuple[int, ...]
    dims: Dims


@_frozen
class Einsum2:
    """A pairwise step with no free label on either side (batched dot): numpy's own einsum."""

    subscripts: str


@_frozen
class Add:
    """``a + b`` of two values with the same labels in the same order: forward mode's product
    rule, ``d(AB) = dA B + A dB``, sums one term per operand that carries a tangent."""


Operation = Union[Unary, Matmul, Multiply, Einsum2, Copy, Add, Regroup]


@_frozen
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
        inputs: the labels of each argument, in storage order.
        kernel: the operation of the first step of this one's lowering pattern
            (:class:`einsgrad.lowering.Pattern`), whose generated expression this one's is,
            relabelled: expressions read labels by position only, so code generators may
            spell it once; None where the step is the first (or of no pattern). A hint for
            caches, outside equality.
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
    inputs: tuple[Labels, ...] = ()
    kernel: Operation | None = field(default=None, compare=False, repr=False)

    def reading(self, args: tuple[str, ...]) -> "Step":
        """This step reading ``args`` in its arguments' places (values renamed), all else
        its own: ``dataclasses.replace`` without its keyword call, for the thousands of
        steps a forward-saving plan renames."""
        step = object.__new__(Step)
        object.__setattr__(step, "__dict__", {**self.__dict__, "args": args})
        return step


@_frozen
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

    def fresh_values(self) -> dict[str, bool]:
        """:meth:`fresh` of every value a step makes, by name, in one pass (a value made
        twice counts as its last step made it)."""
        return {step.target: step.fresh for step in self.steps}


def tuple_text(values) -> str:
    """Integers of a step (a permutation, a shape) as the source text of a tuple."""
    return repr(tuple(map(int, values)))
