"""einsgrad in torch: an einsum whose backward is einsgrad's derived plan, run in torch ops.

>>> import torch, einsgrad.torch
>>> X = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
>>> W = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
>>> einsgrad.torch.einsum("ik,jk->ij", X, W).sum().backward()
>>> W.grad.shape
torch.Size([5, 3])

The forward keeps what the backward reads (the forward-saving plan); the backward runs the
pullback plan for the operands that need a gradient only. Both are generated torch code
(``Einsum.source(backend="torch")`` shows it), so they run on the tensors' device. When the
backward itself is recorded (``create_graph=True``: double backward, ``gradgradcheck``), it
runs the one-shot vjp plan from the operands instead, differentiable like any torch code.
"""

from __future__ import annotations

import torch

from .compiled import Einsum, as_einsum

__all__ = ["einsum"]


def einsum(spec: str | Einsum, *tensors: torch.Tensor) -> torch.Tensor:
    """``torch.einsum`` with einsgrad's derived backward.

    Args:
        spec: an einsum spec (compiled once and cached), or an :class:`einsgrad.Einsum`
            (for ``sizes=``, ``optimize=``, ``memory_limit=``).
        *tensors: the operands, on one device (numpy arrays and Python numbers are converted).

    Gradients follow torch's convention (for complex values, ``conj`` of einsgrad's
    non-conjugating vjp of ``conj(G)``), so they equal autograd of ``torch.einsum``.
    """
    return _EinsumFunction.apply(as_einsum(spec), *tensors)


class _EinsumFunction(torch.autograd.Function):
    """Forward: the forward-saving plan. Backward: the pullback plan, or under
    ``create_graph`` the vjp plan from the operands (so that it is differentiable)."""

    @staticmethod
    def forward(ctx, compiled: Einsum, *tensors):
        wrt = tuple(k for k, need in enumerate(ctx.needs_input_grad[1:]) if need)
        if not wrt:
            return compiled(*tensors)
        y, pullback = compiled.value_and_pullback(*tensors, wrt=wrt)
        ctx.compiled, ctx.wrt, ctx.count = compiled, wrt, len(tensors)
        ctx.pullback = pullback  # holds the operands and intermediates, not the output
        ctx.save_for_backward(*tensors)
        return y

    @staticmethod
    def backward(ctx, g):
        operands = ctx.saved_tensors
        conjugate = g.is_complex()
        if conjugate:
            g = g.conj()
        if torch.is_grad_enabled():  # the backward is recorded: run it from the operands
            grads = ctx.compiled.vjp(g, *operands, wrt=ctx.wrt)
        else:
            grads = ctx.pullback(g)
        result = [None] * (ctx.count + 1)
        for k, grad in zip(ctx.wrt, grads):
            result[k + 1] = grad.conj().resolve_conj() if conjugate and grad.is_complex() else grad
        return tuple(result)


# torch.compile puts the call in its graph as it is, and traces the autograd.Function's
# forward and backward (generated torch code) instead of einsgrad's Python that writes them.
einsum = torch.compiler.allow_in_graph(einsum)
