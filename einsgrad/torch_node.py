"""The autograd Function of one call signature of :func:`einsgrad.torch.einsum`, and what its
backward shares with the general Function there (placeholders for operands not kept, torch's
conjugation of complex gradients).

A repeat call runs this Function's forward and backward and nothing else of einsgrad's Python,
so everything that does not change between calls of a signature (which operands and
intermediates are saved, what the pullback reads, where each gradient goes) is settled once,
when the Function is made, and taken on each call by ``operator.itemgetter`` (C code: no Python
frame, no list built).
"""

from __future__ import annotations

import operator
from typing import Callable

import torch

from .compiled import Einsum
from .signature import SavingPair

_grad_enabled = torch.is_grad_enabled  # read by every backward: bound once


def with_placeholders(saved: tuple, placeholders: dict | None) -> tuple:
    """The operands a recorded backward reads: those saved, a placeholder for each not kept."""
    if not placeholders:
        return saved
    return tuple(placeholder(*placeholders[j]) if j in placeholders else t for j, t in enumerate(saved))


def conjugated(grads) -> list:
    """torch's gradients of complex operands from einsgrad's non-conjugating ones of ``conj(G)``."""
    return [grad.conj().resolve_conj() if grad.is_complex() else grad for grad in grads]


def placeholder(shape, dtype, device) -> torch.Tensor:
    """A tensor of this shape and dtype that holds no memory (its values are never read)."""
    return torch.zeros((), dtype=dtype, device=device).expand(shape)


def take(indices: list[int]) -> Callable:
    """``values -> a tuple of values[i] for i in indices`` (a list where ``values`` is one and
    at most one index is given), run as C code: no Python frame a call."""
    if len(indices) > 1:
        return operator.itemgetter(*indices)
    return operator.itemgetter(slice(indices[0], indices[0] + 1) if indices else slice(0, 0))


def signature_function(compiled: Einsum, wrt: tuple, pair: SavingPair, placeholders: dict | None,
                       count: int, conjugate: bool) -> type:
    """The autograd Function of one call signature, run outside ``torch.func``'s transforms:
    its forward runs the pair's forward-saving function and saves what it returns, its
    backward hands those to the pullback as they are. It has no ``setup_context``, so
    ``apply`` neither binds arguments nor calls one. In a training step, where caches are cold
    after each GEMM, every line of Python around the GEMMs counts: with these worked out on
    each call, a grouped bf16 step (2.6 ms) measured 1.03-1.04x ``torch.einsum``'s, with this
    Function 1.015-1.02x, and a hand-written one 0.99-1.02x (issue 11).

    Saved, each tensor once (saved-tensor hooks that offload or compress see each once), in
    order: the operands a recorded backward (``create_graph``) reads from (None for those it
    does not: ``placeholders``, by index, each ``(shape, dtype, device)``), then the
    intermediates the pullback reads. ``conjugate``: whether the result is complex (then so
    is every cotangent autograd hands the backward: it casts each to the result's dtype)."""
    saving, pullback = pair.saving, pair.pullback
    # what each call takes from its values, taken by C code (operator.itemgetter) alone
    keep = None if placeholders is None else take([count if j in placeholders else j for j in range(count)])
    fresh = [j for j, k in enumerate(pair.read) if k is None]
    intermediates = None if len(fresh) == len(pair.read) else take(fresh)  # None: as returned
    where = iter(range(count, count + len(fresh)))
    arguments = take([next(where) if k is None else k for k in pair.read])  # the pullback's arguments
    whole = wrt == tuple(range(count))
    slot = {k: j for j, k in enumerate(wrt)}
    spread = None if whole else take([slot.get(k, len(wrt)) for k in range(count)])  # None: no gradient

    class Node(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *tensors):
            y, *saved = saving(*tensors)
            ctx.save_for_backward(*(tensors if keep is None else keep((*tensors, None))),
                                  *(saved if intermediates is None else intermediates(saved)))
            ctx.save_for_forward(*tensors)
            # a result left strided (as torch.einsum leaves it) is a view of the product: detached,
            # it is a tensor of its own, which in-place ops and forward mode's tangent may take
            return y.detach()

        @staticmethod
        def backward(ctx, g):
            if conjugate:
                g = g.conj()
            if _grad_enabled():  # recorded: the vjp from the operands, differentiable
                grads = compiled.vjp(g, *with_placeholders(ctx.saved_tensors[:count], placeholders), wrt=wrt)
            else:
                grads = pullback(g, *arguments(ctx.saved_tensors))
            if conjugate:
                grads = conjugated(grads)
            return tuple(grads) if whole else spread((*grads, None))

        @staticmethod
        def jvp(ctx, *tangents):
            return compiled.jvp(list(tangents), *ctx.saved_tensors[:count])

    return Node
