"""The log-value of a scalar contraction as a torch autograd function (see
:meth:`einsgrad.Einsum.log_value`): ``log|y|`` from the stripped forward, and for its backward
the stripped log-gradients, kept by the forward (one forward-saving run and one pullback, as
:meth:`einsgrad.Einsum.log_grad`).

torch's gradient of a real loss of complex tensors is the conjugate of the non-conjugating
one: ``x.grad = conj(d log(y) / dx)`` times the incoming gradient, as autograd of
``torch.log(torch.abs(torch.einsum(...)))`` gives where that does not overflow. A backward that
is itself recorded (``create_graph=True``, ``gradgradcheck``) computes the log-gradients again
from the operands, in torch operations autograd differentiates.
"""

from __future__ import annotations

import torch


def log_value(compiled, *operands) -> torch.Tensor:
    """``log|y|`` of ``compiled`` (a scalar :class:`einsgrad.Einsum`) at the tensors ``operands``."""
    return _LogValue.apply(compiled, *operands)


class _LogValue(torch.autograd.Function):
    @staticmethod
    def forward(ctx, compiled, *operands):
        wrt = tuple(k for k, wanted in enumerate(ctx.needs_input_grad[1:]) if wanted)
        ctx.compiled, ctx.wrt, ctx.count = compiled, wrt, len(operands)
        if not wrt:
            return compiled.stripped(*operands).log()
        value, grads = compiled.log_grad(*operands, wrt=wrt)
        ctx.save_for_backward(*operands, *grads)
        return value.log()

    @staticmethod
    def backward(ctx, g):
        saved = ctx.saved_tensors
        operands, grads = saved[:ctx.count], saved[ctx.count:]
        if torch.is_grad_enabled():  # a recorded backward: the log-gradients recorded too
            grads = ctx.compiled.log_grad(*operands, wrt=ctx.wrt).grads
        result = [None] * ctx.count
        for k, d in zip(ctx.wrt, grads):
            result[k] = g * (d.conj() if d.is_complex() else d)
        return (None, *result)
