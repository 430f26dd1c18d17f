"""einsgrad in jax: an einsum whose derivatives are einsgrad's derived plans, run in ``jax.numpy``.

>>> import jax, jax.numpy as jnp, einsgrad.jax
>>> f = lambda X, W: einsgrad.jax.einsum("ik,jk->ij", X, W).sum()
>>> jax.jit(jax.grad(f, argnums=1))(jnp.ones((4, 3)), jnp.ones((5, 3))).shape
(5, 3)

A ``jax.custom_jvp`` function: its tangent rule is einsgrad's jvp plan (:meth:`Einsum.jvp`),
generated ``jax.numpy`` code that pushes the tangents along the forward's contraction tree.
That code is linear in the tangents, so JAX transposes it for reverse mode: one rule serves
``jax.jvp``, ``jax.jacfwd``, ``jax.grad``, ``jax.jacrev`` and ``jax.hessian``, all of it on
einsgrad's tree, traceable under ``jax.jit`` and ``jax.vmap`` and differentiable again. Zero
tangents stay symbolic: an operand that is not differentiated (``jax.grad(f, argnums=1)``)
gets no term, so its gradient is never computed. Complex values follow jax's convention,
which is einsgrad's (no conjugation). Integer operands are constants (their tangent is zero).
bfloat16 and float16 compute in their own dtype, as ``jnp.einsum`` does, or accumulate in the
``preferred_element_type`` given: every ``dot_general`` of the forward and of the jvp takes it,
on the operands as they are, so JAX's transposes (the gradients) take it too and cast each
gradient back to its operand's dtype, as in ``jnp.einsum``'s gradient.

JAX's transpose of the jvp plan is the reverse sweep over the same tree: the products of
einsgrad's own forward-saving plan and pullback, one for one (``tests/test_jax.py`` counts
them), and for the GEMM-shaped layers and attention the program ``jnp.einsum``'s gradient
compiles to (``tests/test_jax_hlo.py``: the pairs are spelled as ``jnp.einsum`` spells them,
:mod:`einsgrad.dot_pairs`). Handing
JAX the pullback itself would add nothing and cost the rest: a ``custom_vjp`` einsum has no
forward mode, a ``custom_vjp`` on the linear tangent map has no transpose rule, and
``jax.custom_derivatives.linear_call`` (a linear map with its own transpose) has no batching
rule (``vmap``, ``jacfwd``, ``jacrev``, ``hessian``) and cannot be differentiated in its
residuals (grad of grad).
"""

from __future__ import annotations

import contextlib
import functools

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from . import codegen, dialects
from .calls import as_call
from .compiled import Einsum
from .errors import EinsumSpecError

__all__ = ["einsum"]


def einsum(*args, precision=None, preferred_element_type=None) -> jax.Array:
    """``jnp.einsum`` with einsgrad's derived jvp (and, transposed, vjp).

    Args:
        *args: an einsum spec (compiled once and cached), or an :class:`einsgrad.Einsum`
            (for ``sizes=``, ``optimize=``, ``memory_limit=``), then the operands (jax arrays
            or tracers; numpy arrays are converted); or the interleaved form
            ``x0, [0, 1], x1, [1, 2], [0, 2]``.
        precision: as in ``jnp.einsum``: None, a ``jax.lax.Precision`` or its name, a
            ``jax.lax.DotAlgorithmPreset`` or its name, or a pair of equal ones; every matrix
            product of the forward and of its derivatives runs at it.
        preferred_element_type: as in ``jnp.einsum``, the type to accumulate in and return.
            Floating operands stay as they are: each product is a ``dot_general`` of them with
            this ``preferred_element_type`` (bfloat16 products summed in float32, no float32
            copy of an operand), in the forward and in every derivative, and an operand summed
            alone is first cast to it where it is wider, as ``jnp.einsum`` does; without it
            they accumulate in their common dtype. Where an operand is an integer or boolean,
            the operands are cast to it first where it is wider (the same values).
    """
    compiled, arrays = as_call(args)
    ops = tuple(_as_jax(a, i) for i, a in enumerate(arrays))
    preferred = None if preferred_element_type is None else _preferred(preferred_element_type)
    if all(jnp.issubdtype(a.dtype, jnp.inexact) for a in ops):
        accumulation = jnp.result_type(*ops) if preferred is None else preferred
    else:  # integer code sums in a wider type and casts its result to the operands': cast first
        accumulation = None
        if preferred is not None:
            ops = tuple(a if a.dtype == preferred or jnp.promote_types(a.dtype, preferred) != preferred
                        else a.astype(preferred) for a in ops)
    y = _einsum(compiled, _precision(precision), accumulation, *ops)
    out = preferred if accumulation is None else accumulation
    return y if out is None or y.dtype == out else y.astype(out)


def _as_jax(value, i: int):
    """An operand as a jax array; what cannot be one (a ragged list) is refused, named."""
    try:
        return jnp.asarray(value)
    except (TypeError, ValueError) as error:
        raise EinsumSpecError(f"operand {i} cannot be read as an array: {error}") from None


def _preferred(dtype):
    """``preferred_element_type`` as a dtype jax computes in, or an error naming it."""
    try:
        return jnp.dtype(dtype)
    except TypeError:
        raise EinsumSpecError(f"preferred_element_type must be a dtype, got {dtype!r}") from None


def _precision(precision) -> str | None:
    """``precision=`` as the name ``jax.default_matmul_precision`` takes (hashable, a static
    argument), or an error naming what it cannot be: the generated code's matrix products are
    traced under that setting, so each carries the precision into its transposes too."""
    if precision is None:
        return None
    if isinstance(precision, (tuple, list)):
        if len(precision) != 2 or precision[0] != precision[1]:
            raise EinsumSpecError(f"precision={precision!r}: einsgrad.jax.einsum takes one "
                                  "precision for both operands of every product")
        precision = precision[0]
    if isinstance(precision, (jax.lax.Precision, jax.lax.DotAlgorithmPreset)):
        return precision.name.lower() if isinstance(precision, jax.lax.Precision) else precision.name
    if isinstance(precision, str):
        with contextlib.suppress(ValueError):
            return jax.lax.Precision(precision).name.lower()
        if precision in jax.lax.DotAlgorithmPreset.__members__:
            return precision
    raise EinsumSpecError(f"precision={precision!r} is not a jax.lax.Precision or "
                          "DotAlgorithmPreset, nor the name of one")


@contextlib.contextmanager
def _traced(precision: str | None, accumulation):
    """The context the generated code is traced in: ``precision`` for every matrix product,
    and ``accumulation`` (a dtype or None) as every product's ``preferred_element_type``
    and the dtype a narrower operand is summed in (the jax dialect's ``accumulation``, a
    ``jax.make_user_context``: per thread, and part of jit's cache keys)."""
    precise = contextlib.nullcontext() if precision is None else jax.default_matmul_precision(precision)
    with precise, _ACCUMULATION(accumulation):
        yield


_ACCUMULATION = codegen.helper(dialects.JAX, "accumulation")


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2))
def _einsum(compiled: Einsum, precision: str | None, accumulation, *arrays):
    with _traced(precision, accumulation):
        return compiled(*arrays)


def _tangent_rule(compiled: Einsum, precision: str | None, accumulation, primals, tangents):
    """The value and the tangent from one plan, the forward's intermediates shared."""
    given = [None if isinstance(t, SymbolicZero) else t for t in tangents]
    if all(t is None for t in given):
        y = _einsum(compiled, precision, accumulation, *primals)
        return y, SymbolicZero(jax.typeof(y).to_tangent_aval())
    with _traced(precision, accumulation):
        return compiled.value_and_jvp(given, *primals)


_einsum.defjvp(_tangent_rule, symbolic_zeros=True)
