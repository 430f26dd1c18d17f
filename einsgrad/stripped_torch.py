"""The log-value of a scalar contraction as a torch autograd function (see
:meth:`einsgrad.Einsum.log_value`): ``log|y|`` from the stripped forward, and for its backward
the stripped log-gradients, kept by the forward (one forward-saving run and one pullback, as
:meth:`einsgrad.Einsum.log_grad`).

torch's gradient of a real loss of complex tensors is the conjugate of the non-conjugating
one: ``x.grad = conj(d log(y) / dx)`` times the incoming gradient, as autograd of
``torch.log(torch.abs(torch.einsum(...)))`` gives where that does not overflow. The backward is
not differentiable again (``create_graph=True`` raises).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


def log_value(compiled, *operands) -> torch.Tensor:
    """``log|y|`` of ``compiled`` (a scalar :class:`einsgrad.Einsum`) at the tensors ``operands``."""
    return _LogValue.apply(compiled, *operands)


class _LogValue(torch.autograd.Function):
    @staticmethod
    def forward(ctx, compiled, *operands):
        wrt = tuple(k for k, wanted in enumerate(ctx.needs_input_grad[1:]) if wanted)
        ctx.wrt, ctx.count = wrt, len(operands)
        if not wrt:
            return compiled.stripped(*operands).log()
        value, grads = compiled.log_grad(*operands, wrt=wrt)
        ctx.save_for_backward(*grads)
        return value.log()

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        grads = [None] * ctx.count
        for k, d in zip(ctx.wrt, ctx.saved_tensors):
            grads[k] = g * (d.conj() if d.is_complex() else d)
        return (None, *grads)
