"""The log-value of a scalar contraction as a ``jax.custom_jvp`` function (see
:meth:`einsgrad.Einsum.log_value`): ``log|y|`` from the stripped forward; its tangent is
``Re Σ_k <d log(y)/dx_k, dx_k>`` with the stripped log-gradients of the operands that have a
tangent (a symbolic zero gets no term). That tangent is linear in ``dx``, so JAX transposes it
for ``jax.grad``, in its own convention for complex values, and it traces under ``jax.jit``.
The log-gradients are themselves jax code, so a second derivative differentiates them.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero


def log_value(compiled, *operands) -> jax.Array:
    """``log|y|`` of ``compiled`` (a scalar :class:`einsgrad.Einsum`) at the jax arrays ``operands``."""
    return _log_value(compiled, *operands)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _log_value(compiled, *operands):
    return compiled.stripped(*operands).log()


def _tangent_rule(compiled, primals, tangents):
    wrt = tuple(k for k, t in enumerate(tangents) if not isinstance(t, SymbolicZero))
    if not wrt:
        y = _log_value(compiled, *primals)
        return y, SymbolicZero(jax.typeof(y).to_tangent_aval())
    value, grads = compiled.log_grad(*primals, wrt=wrt)
    y = value.log()
    tangent = sum(jnp.sum(d * tangents[k]) for k, d in zip(wrt, grads))
    return y, jnp.real(tangent).astype(y.dtype)


_log_value.defjvp(_tangent_rule, symbolic_zeros=True)
