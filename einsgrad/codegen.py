"""Plan -> Python source, in the dialect of one array library.

The source is built only from value names the planner made (``x0``, ``t3``, ``dx1``),
integers, and the bound spec of each step in a comment (non-ASCII labels escaped,
:func:`einsgrad.spec.ascii_text`); no user text reaches it. einsgrad runs
this very source, so the code a user reads is the code that runs.

One plan is spelled in several dialects (:class:`Dialect`): numpy (the default, needing numpy
alone), torch, jax, dask and cupy. They differ only in how each primitive is written: a
transposition is ``.transpose(p)`` in numpy and ``.permute(p)`` in torch, a sum takes ``axis=``
or ``dim=``, a copy is ``np.array(x)`` or ``x.clone()`` (nothing for immutable jax and lazy dask
arrays).

A plan is written with its reshape and broadcast sizes as integers (exact-shape code, for the
shapes it was planned for) or, shape-generic, as products of sizes read once from the
arguments' ``.shape`` at the top of the function (:class:`Sizes`): then one function serves
every shape of the plan's shape class (:func:`einsgrad.shapes.shape_class`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Callable

from . import dask_dot, dot_pairs, fused_copies, gathers, scalars, torch_layout
from .spec import ascii_text
from .steps import Add, Copy, Dims, Einsum2, Layout, Matmul, Multiply, Plan, Regroup, Step, Unary

_STRIDED_PLACE = '''\
import {module} as {xp}
from {module}.lib.stride_tricks import as_strided


def _place(z, shape, axes):
    """Zeros of `shape` with z written on the diagonal that `axes` describes."""
    out = {xp}.zeros(shape, dtype=z.dtype)
    view = as_strided(out, shape=tuple(shape[g[0]] for g in axes),
                      strides=tuple(sum(out.strides[i] for i in g) for g in axes))
    view[...] = z
    return out
'''
"""``_place`` for a library with numpy's ``as_strided`` (numpy, cupy)."""

HELPERS = _STRIDED_PLACE.format(module="numpy", xp="np") + gathers.HELPER + '''\


def _sum(x, axes):
    """Sums `axes`. A large contiguous float array whose summed axes lead or trail is
    multiplied by a ones vector instead: BLAS reads it once, 2-3x faster than the reduction.
    Single precision does so only for short sums, to round about as well as numpy."""
    k, n = len(axes), x.ndim
    if x.size >= 65536 and x.dtype.char in "fdFD" and x.flags.c_contiguous:
        if axes == tuple(range(n - k, n)):
            kept = x.shape[:n - k]
            rows = int(np.prod(kept))
            if x.dtype.char in "dD" or x.size // rows <= 16384:
                return (x.reshape(rows, -1) @ np.ones(x.size // rows, x.dtype)).reshape(kept)
        if axes == tuple(range(k)):
            kept = x.shape[k:]
            cols = int(np.prod(kept))
            if x.dtype.char in "dD" or x.size // cols <= 16384:
                return (np.ones(x.size // cols, x.dtype) @ x.reshape(-1, cols)).reshape(kept)
    return x.sum(axis=axes)
'''

# Values on a diagonal of zeros without writing into an array: ``z`` reshaped so that each of its
# axes lies on the first output axis of its group, times a 0/1 mask per other axis of the group.
# Differentiable in torch and jax, lazy in dask. ``{arange}`` makes the mask's index vector.
_PLACE_BY_MASKS = '''

def _place(z, shape, axes):
    """Zeros of `shape` with z written on the diagonal that `axes` describes."""
    firsts = [g[0] for g in axes]
    out = z.reshape(tuple(n if i in firsts else 1 for i, n in enumerate(shape)))
    for g in axes:
        index = {arange}
        for axis in g[1:]:
            at = lambda k: tuple(-1 if i == k else 1 for i in range(len(shape)))  # noqa: E731
            out = out * (index.reshape(at(g[0])) == index.reshape(at(axis)))
    return out
'''


# torch: zeros, and z copied into the strided view of the diagonal (autograd follows copy_ into
# a view, and it writes only the diagonal: the mask product above costs 2-3x more).
_PLACE_IN_VIEW = '''

def _place(z, shape, axes):
    """Zeros of `shape` with z written on the diagonal that `axes` describes."""
    out = z.new_zeros(shape)
    strides = tuple(sum(out.stride(i) for i in g) for g in axes)
    out.as_strided(tuple(shape[g[0]] for g in axes), strides).copy_(z)
    return out
'''


@dataclass(frozen=True, eq=False)
class Dialect:
    """How one array library spells the primitives a plan is lowered to.

    Each dialect is one module constant, compared and hashed by identity (it is part of the
    key of every generated function, looked up on each call).

    Attributes:
        name: the backend's name (``numpy``, ``torch``, ``jax``, ``dask``, ``cupy``).
        xp: the module's name in generated code; its ``reshape``, ``multiply`` and ``einsum``
            are called.
        helpers: the source that imports ``xp`` and defines ``_place``.
        permute: the method permuting axes (``transpose`` or ``permute``).
        axis: the keyword of ``.sum`` (``axis`` or ``dim``).
        sum: the sum of ``{x}`` over the axes ``{axes}`` (numpy: the helper ``_sum``).
        copy: a copy of ``{x}`` that owns its memory; None where arrays are immutable or lazy.
        contiguous: ``{x}`` stored contiguously (``{x}`` itself where the library decides;
            numpy's ``ndarray.copy`` always copies, and costs a small array 20% less than
            ``np.ascontiguousarray``).
        diagonal: the diagonal of ``{x}`` over axes ``{a}`` and ``{b}``, moved last.
        cast: ``{x}`` as the dtype named ``{dtype}``.
        dot_by_sum: a batched dot product is a product and a sum, not the library's einsum.
        swap: ``{x}`` with its last two axes swapped (beyond two dimensions).
        broadcast: ``{x}`` broadcast to the shape ``{shape}``, as a view.
        result: how a returned output or gradient is finished (torch: made contiguous, as
            ``torch.einsum`` returns it, so that ``.view()`` works); None: as it is.
        products_in_order: a GEMM whose result the step then transposes (``(a @ b).T``) is
            spelled ``b.T @ a.T`` instead, which the library computes in place, contiguous;
            not where the result is returned as it is, a transposed view as the library's
            own einsum returns it, in the plan's orientation (torch's gradients, where that
            is the GEMM torch runs: :mod:`einsgrad.torch_layout` says where and why).
        dot_general: pairwise products (GEMMs, outer and Hadamard products, batched dots)
            are one ``_dot(a, b, dimension_numbers)`` over the step's labels, as
            ``jnp.einsum`` spells a pair: ``lax.dot_general`` after promoting to a common
            dtype, its dimension numbers reading each operand as stored (no GEMM reshape, no
            swap, no broadcast), and the transpose of a dot is a dot (jax's reverse mode of the
            jvp: an outer product's is a batched matrix-vector product, not a product and a sum).
            The dialect's helpers define ``_dot``: jax's is ``lax.dot_general``, dask's one
            blockwise product of blocks (no chunked axis is reshaped). How each pair is
            spelled: :mod:`einsgrad.dot_pairs`.
        jnp_pairs: the pairs are spelled as ``jnp.einsum`` spells them (its operand order and
            contracted labels; a single pair's plan reads its operands, not their transposed
            copies), so that jit-compiled gradients compile to ``jnp.einsum``'s program.
        gemm: the library's product ``{a}`` by ``{b}`` of two matrices and of two batches of
            matrices, used where both sides of a GEMM are read with that rank (a GEMM's sides
            share their batch labels, so their batch sizes are equal: nothing broadcasts);
            None: ``@``. torch's ``mm``/``bmm`` are what ``torch.einsum`` calls; ``@``
            (``aten::matmul``) adds an expand and reshapes of each side around the same
            ``bmm``. numpy's ``ndarray.dot`` of two matrices calls the same BLAS GEMM as
            ``@`` at half its fixed cost (0.3-0.6 µs against 0.9-1.4 µs for 2x2 to 8x8
            float64 matrices), which the small steps of a network pay hundreds of times.
        folds_copies: in straight-line code, a small transposed copy read by one GEMM is read
            in that GEMM instead (:mod:`einsgrad.fused_copies`): one call and one line fewer.
        gathers: in straight-line exact-shape code, a small transposed copy whose innermost run
            is short is one ``x.take(index)`` (:mod:`einsgrad.gathers`).
        right_transposed: the dtypes (by name) in which a tall GEMM reads its small right side
            from a transposed copy (NT), not as stored (NN): the library's BLAS runs NT faster
            there (:mod:`einsgrad.gemm_sides`).
        strided: ``bound -> bool``, whether the library's own einsum returns a strided view;
            then so does einsgrad's forward (no copy the library does not make); None: never.
        strided_gradient: ``(bound, k) -> bool``, the same of its gradient of operand ``k``;
            then such a gradient that a GEMM makes and transposes is returned as that view,
            the product in the plan's orientation (others stay contiguous: a permuted view
            would move its copy to the next pullback's reads, maybe two).
    """

    name: str
    xp: str
    helpers: str
    permute: str = "transpose"
    axis: str = "axis"
    sum: str = "{x}.sum({axis}={axes})"
    copy: str | None = None
    contiguous: str = "{x}"
    diagonal: str = "{x}.diagonal(0, {a}, {b})"
    cast: str = "{x}.astype({xp}.{dtype})"
    dot_by_sum: bool = False
    swap: str = "{x}.swapaxes(-1, -2)"
    broadcast: str = "{xp}.broadcast_to({x}, {shape})"
    result: str | None = None
    products_in_order: bool = False
    dot_general: bool = False
    jnp_pairs: bool = False
    gemm: tuple[str | None, str | None] | None = None
    folds_copies: bool = False
    gathers: bool = False
    right_transposed: tuple[str, ...] = ()
    strided: Callable[..., bool] | None = None
    strided_gradient: Callable[..., bool] | None = None


_DOT_GENERAL = '''import jax
import jax.numpy as jnp
from jax import lax

# The dtype each _dot returns and each _sum adds in where it is wider, as jnp.einsum's
# preferred_element_type (einsgrad.jax.einsum sets it while it traces); None: the operands'.
accumulation = jax.make_user_context(default_value=None)


def _dot(a, b, dimension_numbers):
    """lax.dot_general of a and b as they are, accumulated in `accumulation`'s dtype, else in
    their common one (jnp.einsum's dot)."""
    dtype = accumulation.value
    return lax.dot_general(a, b, dimension_numbers,
                           preferred_element_type=jnp.result_type(a, b) if dtype is None else dtype)


def _sum(x, axes):
    """x summed over axes, cast first to `accumulation`'s dtype where that is wider (jnp.einsum's sum)."""
    dtype = accumulation.value
    if dtype is not None and jnp.result_type(x, dtype) != x.dtype:
        x = x.astype(dtype)
    return x.sum(axis=axes)
'''


NUMPY = Dialect("numpy", "np", HELPERS, sum="_sum({x}, {axes})", copy="np.array({x})", contiguous="{x}.copy()",
                cast="np.array({x}, dtype=np.{dtype})", gemm=("{a}.dot({b})", None), folds_copies=True,
                gathers=True)
TORCH = Dialect("torch", "torch", "import torch\n" + _PLACE_IN_VIEW,
                # a copy or cast is stored contiguously (clone and to keep a view's strides)
                permute="permute", axis="dim", copy="{x}.clone(memory_format=torch.contiguous_format)",
                contiguous="{x}.contiguous()",
                cast="{x}.to(torch.{dtype}, copy=True, memory_format=torch.contiguous_format)", dot_by_sum=True,
                # transpose and expand, not swapaxes and broadcast_to: they have batching rules
                # in the vmap of autograd.grad(..., is_grads_batched=True)
                swap="{x}.transpose(-1, -2)", broadcast="{x}.expand({shape})",
                result="{x}.contiguous()", products_in_order=True, gemm=("torch.mm({a}, {b})", "torch.bmm({a}, {b})"),
                right_transposed=("float64",), strided=torch_layout.strided,
                strided_gradient=torch_layout.strided_gradient)
JAX = Dialect("jax", "jnp", _DOT_GENERAL + _PLACE_BY_MASKS.format(
                  arange="jnp.arange(shape[g[0]])"), sum="_sum({x}, {axes})", dot_general=True, jnp_pairs=True)
"""The jax dialect: pairs as one ``dot_general`` over the labels as stored, in every dtype.

Chosen by ``python -m benchmarks.jax_spellings`` (jit-compiled training steps of the training
benchmark's five models; interleaved medians on a shared, loaded 2-core CPU, December 2026;
GEMM/label is the numpy dialect's GEMM-shaped spelling over this one, median of 3 to 21 runs
of 21 or 31 rounds; two identical ``jnp.einsum`` programs differ by up to 0.76-1.45x in one
run there). The dtype does not decide which spelling is faster, the model does:

=============  ========  =======  ========
GEMM/label     float64   float32  bfloat16
=============  ========  =======  ========
mlp            0.99      1.00     1.02
attention      1.22      1.03     1.05
bilinear       1.13      0.81     1.51
tensor-train   1.31      1.50     1.30
grouped        0.96      0.62     1.00
=============  ========  =======  ========

The float32 gains come from GEMM blocks alone: merging each operand's side-by-side free and
summed labels into one axis by a reshape (XLA's CPU dot otherwise transposes the operand into
one free and one summed axis) measured 0.54 (grouped) and 0.78 (bilinear) of this spelling
in float32, but 1.34 for tensor-train (float32), 1.60 for bilinear (bfloat16) and 1.06 for
attention (float64), so no rule by dtype keeps it. For the mlp and the attention the compiled
HLO of a training step (``jax.jit(f).lower(...).compile().as_text()``, names and source
locations aside; ``python -m benchmarks.training --hlo``) is ``jnp.einsum``'s in all three
dtypes (:mod:`einsgrad.dot_pairs`, ``tests/test_jax_hlo.py``): their ratio to ``jnp.einsum``
(mlp: 0.97-1.05 float64, 0.87-1.50 float32, 0.98-1.34 bfloat16 over 7 runs) is the machine's
noise.

Each ``_dot`` is a ``dot_general`` of its operands as they are, whose ``preferred_element_type``
is the helpers' ``accumulation`` (``jnp.einsum``'s own rule: the type asked for, else the
operands' common one; :mod:`einsgrad.jax` sets it while it traces the forward and the jvp), and
``_sum`` casts to it first where it is wider, as ``jnp.einsum`` sums. So bfloat16 operands
accumulated in float32 are read as bfloat16, never copied to float32 first, and JAX's
transposes of the jvp's dots (the gradients) carry it too: the mlp's and the attention's steps
are then ``jnp.einsum``'s module in that case as well (``python -m benchmarks.training_hlo
--dtypes bfloat16 --preferred float32``).
"""

# cupy: numpy's spelling on a GPU. Its helpers are numpy's _place (zeros, z written into the
# strided view of the diagonal); sums are cupy's own reductions (numpy's ones-vector trick is
# for CPU BLAS).
_CUPY_HELPERS = _STRIDED_PLACE.format(module="cupy", xp="cp")

DASK = Dialect("dask", "da", dask_dot.HELPERS + _PLACE_BY_MASKS.format(arange="np.arange(shape[g[0]])"),
               diagonal="da.diagonal({x}, 0, {a}, {b})", cast="{x}.astype(np.{dtype})", dot_general=True)
CUPY = Dialect("cupy", "cp", _CUPY_HELPERS, copy="cp.array({x})", contiguous="cp.ascontiguousarray({x})",
               cast="cp.array({x}, dtype=cp.{dtype})")
DIALECTS = {d.name: d for d in (NUMPY, TORCH, JAX, DASK, CUPY)}
PROMOTING = (NUMPY, DASK, CUPY)  # their operations promote mixed dtypes; torch and jax are cast before the call


class Sizes:
    """How shape-generic code spells sizes: each label's size as a name (:func:`size_names`)
    read once from the first argument that holds the label, in argument order, else (a
    pullback, whose arguments may have lost a label the operands had) from the parameter
    ``shapes``, the operands' shapes; a label no operand holds (one only the output has, of a
    size fixed by ``sizes=``) as its integer.

    Rendering notes which names it used, so that :meth:`header` reads only those.
    """

    def __init__(self, plan: Plan, operands: tuple[tuple[str, ...], ...], shapes: bool):
        self.source: dict[str, tuple[str, int]] = {}  # label -> (a shape's expression, axis)
        known = {f"x{k}": term for k, term in enumerate(operands)}  # the planner's operand names
        for step in plan.steps:
            known.update((a, labels) for a, labels in zip(step.args, step.inputs) if a not in known)
        self.ranks: dict[str, int] = {}  # a shape's expression -> its length
        for arg in plan.args:
            self.ranks[f"{arg}.shape"] = len(known.get(arg, ()))
            for axis, label in enumerate(known.get(arg, ())):
                self.source.setdefault(label, (f"{arg}.shape", axis))
        held = {label for term in operands for label in term}
        for k, term in enumerate(operands):
            self.ranks[f"shapes[{k}]"] = len(term)
            for axis, label in enumerate(term):
                if label not in self.source and shapes:
                    self.source[label] = (f"shapes[{k}]", axis)
        self.names = {label: name for label, name in size_names(operands).items() if label in self.source}
        self.fixed = {l: n for step in plan.steps for l, n in zip(step.labels, step.shape) if l not in held}
        self.used: set[str] = set()

    def size(self, label: str) -> str:
        if label not in self.names:
            return str(int(self.fixed[label]))  # a KeyError: no operand's size was at hand
        self.used.add(label)
        return self.names[label]

    def shape(self, dims: Dims) -> str:
        """A tuple expression of the sizes of ``dims``."""
        parts = [" * ".join(self.size(l) for l in group) or "1" for group in dims]
        return f"({parts[0]},)" if len(parts) == 1 else f"({', '.join(parts)})"  # () for none

    def header(self) -> list[str]:
        """Lines reading the used sizes, one unpacking of each shape: ``n0, _, n2 = x0.shape``
        (torch makes a new ``torch.Size`` each time ``.shape`` is read: once is enough)."""
        lines: dict[str, list[str]] = {}
        for label, (arg, axis) in self.source.items():  # arg: x0.shape, or shapes[0]
            if label in self.used:
                lines.setdefault(arg, ["_"] * self.ranks[arg])[axis] = self.names[label]
        return [f"    {', '.join(names)}{',' * (len(names) == 1)} = {arg}" for arg, names in lines.items()]


def size_names(operands: tuple[tuple[str, ...], ...]) -> dict[str, str]:
    """The name of each operand label's size in shape-generic code: ``n0``, ``n1``... in order
    of first appearance, so that every function of a signature, and a module's docstring,
    call one size by one name."""
    return {label: f"n{i}" for i, label in enumerate(dict.fromkeys(l for term in operands for l in term))}


def _shape(shape, dims: Dims | None, sizes: Sizes | None) -> str:
    """A shape as integers, or (shape-generic code) as sizes read at run time."""
    if sizes is None:
        return _tuple(shape)
    assert dims is not None and len(dims) == len(shape)
    return sizes.shape(dims)


def _layout(expr: str, layout: Layout, ndim: int, dialect: Dialect, sizes: Sizes | None = None,
            labels: tuple[str, ...] = (), gathering: gathers.Gathers | None = None) -> str:
    """``expr`` (a value of ``labels``) read as ``layout`` says; by a gather where ``gathering``
    makes one (a small transposed copy: :mod:`einsgrad.gathers`)."""
    if gathering is not None and layout.perm is not None and layout.shape is not None:
        gathered = gathering.read(expr, labels, layout.perm, layout.shape, layout.swap)
        if gathered is not None:
            return gathered
    if layout.perm is not None:
        expr += _transpose(layout.perm, dialect)
    if layout.shape is not None:
        expr += f".reshape({_shape(layout.shape, layout.dims, sizes)})"
        ndim = len(layout.shape)
    if layout.swap:
        expr = expr + ".T" if ndim == 2 else dialect.swap.format(x=expr)
    return expr


def _product(a: tuple[str, Layout], b: tuple[str, Layout], ndims: dict[str, int], dialect: Dialect,
             sizes: Sizes | None, inputs: tuple = ((), ()), gathering: gathers.Gathers | None = None) -> str:
    """The GEMM of two sides, each (value, how it is read; ``inputs``: their labels):
    ``dialect.gemm`` where both are read as matrices or both as batches of them (of one batch
    size: see :class:`Dialect`), else ``@``."""
    ranks = {len(layout.shape) if layout.shape is not None else ndims[name] for name, layout in (a, b)}
    left, right = (_layout(name, layout, ndims[name], dialect, sizes, labels, gathering)
                   for (name, layout), labels in zip((a, b), inputs))
    gemm = dialect.gemm[ranks.pop() - 2] if dialect.gemm is not None and len(ranks) == 1 and ranks <= {2, 3} else None
    return f"({left} @ {right})" if gemm is None else gemm.format(a=left, b=right)


def _transposes_product(step: Step, op: Matmul, ndims: dict[str, int], args: tuple[str, ...]) -> bool:
    """Whether the step is ``(a @ b)``, perhaps its batch axis split by a reshape, then its
    last two axes swapped, both sides matrices or batches of them: then it equals
    ``b^T @ a^T`` (reshaped alike), computed in the step's order with no transposed copy."""
    n = len(op.shape) if op.shape is not None else len(step.perm or ())
    if n < 2 or step.perm != tuple(range(n - 2)) + (n - 1, n - 2):
        return False
    if not all(len(layout.shape) >= 2 if layout.shape is not None else ndims[name] >= 2
               for name, layout in zip(args, (op.a, op.b))):
        return False
    if op.shape is None:
        return True
    # the reshape may split the batch only: the product's rows and columns are its last two axes
    return op.dims is not None and op.dims[-2:] == (_side(op.a, step.inputs[0], rows=True),
                                                    _side(op.b, step.inputs[1], rows=False))


def _side(layout: Layout, labels: tuple[str, ...], rows: bool) -> tuple[str, ...] | None:
    """The labels of a GEMM operand's rows (``rows``) or columns, as it is read; None where
    its layout does not say (transposed, not reshaped)."""
    if layout.shape is None:
        if layout.perm is not None:
            return None
        dims = tuple((l,) for l in labels)  # read as stored
    elif layout.dims is None:
        return None
    else:
        dims = layout.dims
    return dims[-1] if rows == layout.swap else dims[-2]  # a swapped side is stored (cols, rows)


def _dot_by_sum(subscripts: str, a: str, b: str, dialect: Dialect) -> str:
    """A batched dot product (both operands hold the same labels) as a product and a sum:
    torch runs ``einsum("ab,ab->b")`` as a batch of 1 x n x 1 matrix products, 100x slower."""
    inputs, out = subscripts.split("->")
    sa, sb = inputs.split(",")
    perm = tuple(sb.index(c) for c in sa)
    if perm != tuple(range(len(sb))):
        b += _transpose(perm, dialect)
    summed = tuple(i for i, c in enumerate(sa) if c not in out)
    expr = dialect.sum.format(x=f"{dialect.xp}.multiply({a}, {b})", axis=dialect.axis, axes=_tuple(summed))
    kept = [c for c in sa if c in out]
    order = tuple(kept.index(c) for c in out)
    return expr + (_transpose(order, dialect) if order != tuple(range(len(out))) else "")


def _transpose(perm, dialect: Dialect) -> str:
    return ".T" if tuple(perm) == (1, 0) else f".{dialect.permute}({_tuple(perm)})"


def _tuple(values) -> str:
    return repr(tuple(map(int, values)))


def expression(step: Step, ndims: dict[str, int], dialect: Dialect = NUMPY, sizes: Sizes | None = None,
               args: tuple[str, ...] | None = None, strided: bool = False,
               gathering: gathers.Gathers | None = None) -> str:
    """The right-hand side of one step; ``ndims`` gives the rank of every value it reads;
    ``sizes`` (shape-generic code) spells the sizes it reshapes and broadcasts to; ``args``
    names the values it reads in the text, in place of the step's own names (a step table's
    kernel reads them from slots); ``strided``: the result is returned as it is, a view in
    any layout (no product is reordered to make it contiguous); ``gathering``: small
    transposed copies are made by gathers it names (:mod:`einsgrad.gathers`)."""
    op, xp = step.operation, dialect.xp
    args = step.args if args is None else args
    if isinstance(op, Unary):
        expr = args[0]
        for axis1, axis2 in op.diagonal or ():
            expr = dialect.diagonal.format(x=expr, a=int(axis1), b=int(axis2))
        if op.sum_axes:
            expr = dialect.sum.format(x=expr, axis=dialect.axis, axes=_tuple(op.sum_axes))
        if op.perm is not None:
            expr += _transpose(op.perm, dialect)
        if op.reshape is not None:
            expr = f"{xp}.reshape({expr}, {_shape(op.reshape, op.reshape_dims, sizes)})"
        if op.own and dialect.copy is not None:
            expr = dialect.copy.format(x=expr)
        if op.broadcast is not None:
            expr = dialect.broadcast.format(x=expr, xp=xp, shape=_shape(op.broadcast, op.broadcast_dims, sizes))
        if op.place is not None:
            labels = tuple((l,) for l in step.labels)
            expr = f"_place({expr}, {_shape(op.shape, labels, sizes)}, {op.place!r})"
    elif dialect.dot_general and isinstance(op, dot_pairs.PAIRS):
        expr, perm = dot_pairs.pair_by_dot(step, args, dialect.jnp_pairs)
        return expr if perm is None else expr + _transpose(perm, dialect)
    elif isinstance(op, Regroup):  # a dot_general reads the operand as stored: no reshape
        x = args[0]
        expr = x if dialect.dot_general else f"{x}.reshape({_shape(op.shape, op.dims, sizes)}).reshape({x}.shape)"
    elif isinstance(op, Copy):
        gathered = None if gathering is None else gathering.read(args[0], step.inputs[0], op.perm, op.shape)
        expr = f"{args[0]}.{dialect.permute}({_tuple(op.perm)})"
        if gathered is not None:
            expr = gathered
        elif op.shape is None:
            expr = dialect.contiguous.format(x=expr)
        else:  # numpy's reshape of a transposed array is one C-ordered copy
            expr += f".reshape({_shape(op.shape, op.dims, sizes)})"
    elif isinstance(op, Matmul):
        a, b = args
        if dialect.products_in_order and not strided and _transposes_product(step, op, ndims, args):
            expr = _product((b, replace(op.b, swap=not op.b.swap)), (a, replace(op.a, swap=not op.a.swap)),
                            ndims, dialect, sizes)
            if op.shape is None:
                return expr
            shape = op.shape[:-2] + (op.shape[-1], op.shape[-2])
            return expr + f".reshape({_shape(shape, op.dims[:-2] + (op.dims[-1], op.dims[-2]), sizes)})"
        expr = _product((a, op.a), (b, op.b), ndims, dialect, sizes, step.inputs or ((), ()), gathering)
        if op.shape is not None:
            expr += f".reshape({_shape(op.shape, op.dims, sizes)})"
    elif isinstance(op, Multiply):
        a, b = args
        left, right = (_layout(name, layout, ndims[name], dialect, sizes, labels, gathering)
                       for name, layout, labels in zip((a, b), (op.a, op.b), step.inputs or ((), ())))
        expr = f"{xp}.multiply({left}, {right})"
    elif isinstance(op, Add):
        expr = f"({args[0]} + {args[1]})"
    else:
        assert isinstance(op, Einsum2) and op.subscripts.replace(",", "").replace("->", "").isalpha()
        if dialect.dot_by_sum:
            expr = _dot_by_sum(op.subscripts, *args, dialect)
        else:
            expr = f"{xp}.einsum({op.subscripts!r}, {args[0]}, {args[1]})"
    if step.perm is not None:
        expr += _transpose(step.perm, dialect)
    return expr


def render(plan: Plan, name: str, finish: dict[str, tuple[bool, object]] | None = None,
           dialect: Dialect = NUMPY, casts: dict | None = None,
           operands: tuple[tuple[str, ...], ...] | None = None, shapes: bool = False,
           size_of: dict[str, int] | None = None) -> str:
    """One Python function for ``plan`` in ``dialect``; ``finish`` maps a returned value to
    (copy, dtype): copy it (it may alias an argument), cast it (its operand has a narrower
    dtype). A real dtype takes the real part first. ``casts`` maps an argument to the dtype
    it is cast to before the first step (mixed dtypes compute in the common one).
    Given ``operands`` (the bound operands' labels) the code is shape-generic: sizes are read
    from the arguments at run time (:class:`Sizes`), and each line's comment shows its
    result's shape in those sizes instead of its FLOPs. ``shapes``: the function takes the
    operands' shapes as the keyword ``shapes``, for sizes its other arguments lack (a
    generic pullback's). ``size_of``, the size of every label of exact-shape code, lets a
    dialect that gathers make small transposed copies so (:mod:`einsgrad.gathers`)."""
    finish = finish or {}
    if dialect.jnp_pairs:
        plan = dot_pairs.read_through_copies(plan)
    if dialect.folds_copies:
        plan = fused_copies.shaped(fused_copies.fused(plan))
    ndims = dict(zip(plan.args, plan.arg_ranks))
    ndims.update((step.target, len(step.shape)) for step in plan.steps)
    sizes = None if operands is None else Sizes(plan, operands, shapes)
    strided = set(plan.returns) - set(finish) if dialect.result is not None else set()  # returned as they are
    gathering = None
    if dialect.gathers and sizes is None and size_of is not None:
        gathering = gathers.Gathers(name, size_of, gathers.contiguous(plan))
        plan = gathers.unreshaped(plan, gathering)
    codes = [f"    {step.target} = "
             f"{expression(step, ndims, dialect, sizes, strided=step.target in strided, gathering=gathering)}"
             for step in plan.steps]
    width = max(map(len, codes), default=0)
    last_use = {name: i for i, step in enumerate(plan.steps) for name in step.args}
    lines = [f"def {name}({', '.join(plan.args + ('*', 'shapes') * shapes)}):"]
    lines += [cast_line(arg, dtype, dialect) for arg, dtype in (casts or {}).items()]
    if sizes is not None:
        lines += sizes.header()  # before the comments: the names they show need not be read
        comments = [f"# {ascii_text(step.spec):<14} -> {sizes.shape(tuple((l,) for l in step.labels))}"
                    for step in plan.steps]
    else:
        comments = [f"# {ascii_text(step.spec):<14} {step.flops:>12,} flops  -> {step.shape}"
                    for step in plan.steps]
    kept = set(plan.args) | set(plan.returns)
    for i, (step, code, comment) in enumerate(zip(plan.steps, codes, comments)):
        lines.append(f"{code:<{width}}  {comment}")
        done = [a for a in dict.fromkeys(step.args) if last_use[a] == i and a not in kept]
        if done:  # free intermediates as soon as nothing reads them: the peak memory drops
            lines.append(f"    del {', '.join(done)}")
    results = [finished(value, value, finish, dialect) for value in plan.returns]
    lines.append(f"    return ({''.join(r + ', ' for r in results).rstrip()})")
    if gathering is not None and gathering.names:
        lines = gathering.lines() + ["", ""] + lines
    return "\n".join(lines) + "\n"


def cast_line(arg: str, dtype, dialect: Dialect) -> str:
    """The line casting the argument ``arg`` to ``dtype`` on entry."""
    return f"    {arg} = {dialect.cast.format(x=arg, xp=dialect.xp, dtype=_dtype_name(dtype))}"


def finished(expr: str, value: str, finish: dict[str, tuple[bool, object]], dialect: Dialect) -> str:
    """``expr`` (the returned value ``value``) as it is returned: cast, copied or made as the
    library returns its results, as ``finish`` says (see :func:`render`)."""
    copy, dtype = finish.get(value, (False, None))
    if dtype is not None:
        kind = scalars.kind(dtype)
        assert kind in "biufc"
        expr = f"{expr}.real" if kind != "c" else expr
        return dialect.cast.format(x=expr, xp=dialect.xp, dtype=_dtype_name(dtype))  # numpy: a copy
    if copy and dialect.copy is not None:
        return dialect.copy.format(x=expr)
    if value in finish and dialect.result is not None:
        return dialect.result.format(x=expr)
    return expr


def _dtype_name(dtype) -> str:
    text = scalars.name(dtype)
    assert text.isidentifier(), text  # a scalar type's own name, never user text
    return text


def load(source: str, dialect: Dialect = NUMPY) -> dict:
    """Executes generated source after the dialect's helpers and returns its namespace (the
    helpers, run once per dialect, then ``source`` in a copy of their namespace: the same
    as running both, as :meth:`einsgrad.Einsum.source` shows them, without compiling the
    helpers for every function)."""
    namespace = dict(_helpers(dialect.helpers))
    exec(compile(source, "<einsgrad>", "exec"), namespace)
    return namespace


def helper(dialect: Dialect, name: str):
    """The object the dialect's helpers call ``name``: the one every function loaded in it
    reads (the jax dialect's ``accumulation``, which :mod:`einsgrad.jax` sets)."""
    return _helpers(dialect.helpers)[name]


@functools.cache
def _helpers(helpers: str) -> dict:
    """The namespace of a dialect's helpers, once per text (never mutated: copied), so that
    dialects that share their helpers share their objects."""
    namespace: dict = {}
    exec(compile(helpers, "<einsgrad helpers>", "exec"), namespace)
    return namespace
