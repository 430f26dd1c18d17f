"""The array libraries generated code is written for, and how each spells a plan's primitives.

One plan is spelled in several dialects (:class:`Dialect`): numpy (the default, needing numpy
alone), torch, jax, dask and cupy. They differ only in how each primitive is written: a
transposition is ``.transpose(p)`` in numpy and ``.permute(p)`` in torch, a sum takes ``axis=``
or ``dim=``, a copy is ``np.array(x)`` or ``x.clone()`` (nothing for immutable jax and lazy dask
arrays). Each dialect's helpers are the source its generated functions are loaded with
(:func:`einsgrad.codegen.load`). :mod:`einsgrad.codegen` writes the code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import dask_dot, gathers, torch_layout

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
