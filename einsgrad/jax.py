"""einsgrad in jax: an einsum whose vjp is einsgrad's derived plan, run in ``jax.numpy``.

>>> import jax, jax.numpy as jnp, einsgrad.jax
>>> f = lambda X, W: einsgrad.jax.einsum("ik,jk->ij", X, W).sum()
>>> jax.jit(jax.grad(f, argnums=1))(jnp.ones((4, 3)), jnp.ones((5, 3))).shape
(5, 3)

A ``jax.custom_vjp`` function: its forward runs the forward-saving plan and returns what the
backward reads as residuals, its backward runs the pullback plan. Both are generated
``jax.numpy`` code (``Einsum.source(backend="jax")`` shows it), so they trace under
``jax.jit`` and ``jax.vmap``, and the backward can be differentiated again (reverse over
reverse). As for any ``custom_vjp`` function, forward mode (``jax.jvp``, ``jax.jacfwd``) is
not available. Operands must be floating point or complex. Complex values follow jax's
convention, which is einsgrad's (no conjugation).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from .compiled import Einsum, as_einsum
from .errors import EinsumSpecError

__all__ = ["einsum"]


def einsum(spec: str | Einsum, *arrays) -> jax.Array:
    """``jnp.einsum`` with einsgrad's derived vjp.

    Args:
        spec: an einsum spec (compiled once and cached), or an :class:`einsgrad.Einsum`
            (for ``sizes=``, ``optimize=``, ``memory_limit=``).
        *arrays: the operands (jax arrays or tracers; numpy arrays are converted).
    """
    return _einsum(as_einsum(spec), *(_as_jax(a, i) for i, a in enumerate(arrays)))


def _as_jax(value, i: int):
    """An operand as a jax array; what cannot be one (a ragged list) is refused, named."""
    try:
        return jnp.asarray(value)
    except (TypeError, ValueError) as error:
        raise EinsumSpecError(f"operand {i} cannot be read as an array: {error}") from None


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _einsum(compiled: Einsum, *arrays):
    return compiled(*arrays)


def _forward(compiled: Einsum, *arrays):
    y, saved = compiled.forward_saving(*arrays)
    return y, (arrays, saved)


def _backward(compiled: Einsum, residuals, g):
    arrays, saved = residuals
    return tuple(compiled.pullback(g, arrays, saved))


_einsum.defvjp(_forward, _backward)
