"""Memory through autograd (skipped without torch): everything ``einsgrad.torch.einsum``'s
backward reads goes through ``ctx.save_for_backward``, so autograd frees it after backward,
``torch.utils.checkpoint`` drops it, and saved-tensor hooks see it.

Memory is counted in bytes of tensor storage: a dispatch mode records the storage of every
tensor that an operation makes and reports those still alive, the same way for einsgrad and
for ``torch.einsum``. No timing."""

from __future__ import annotations

import gc

import pytest

torch = pytest.importorskip("torch")
import einsgrad.torch  # noqa: E402  (after the skip)
from torch.multiprocessing.reductions import StorageWeakRef  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils._pytree import tree_leaves  # noqa: E402

LIMIT = 1.1  # einsgrad may hold at most this much more than torch.einsum


class Storages(TorchDispatchMode):
    """Records the storage of every tensor an operation makes while the mode is on."""

    def __init__(self):
        super().__init__()
        self.made: dict[int, tuple[StorageWeakRef, int]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                self.made[storage.data_ptr()] = (StorageWeakRef(storage), storage.nbytes())
        return out

    def held(self) -> int:
        """Bytes of the recorded storages still alive."""
        gc.collect()
        return sum(n for ref, n in self.made.values() if not ref.expired())


def attention(einsum):
    def layer(q, k, v):
        scores = einsum("bhqd,bhkd->bhqk", q, k) * q.shape[-1] ** -0.5
        return einsum("bhqk,bhkd->bhqd", scores.softmax(-1), v)
    return layer


def chain(einsum):
    def layer(a, b, c, d):  # three contractions: the backward reads two intermediates
        return einsum("ab,bc,cd,de->ae", a, b, c, d).tanh()
    return layer


MODELS = [
    pytest.param(attention, [(2, 4, 64, 16)] * 3, id="attention"),
    pytest.param(chain, [(64, 32), (32, 96), (96, 48), (48, 64)], id="chain"),
]


def held_bytes(model, shapes, einsum, checkpoint: bool) -> tuple[int, int]:
    """Bytes held after the forward and after ``backward()``, the output kept."""
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.randn(s, generator=generator, requires_grad=True) for s in shapes]
    layer = model(einsum)
    with Storages() as storages:
        if checkpoint:
            out = torch.utils.checkpoint.checkpoint(layer, *inputs, use_reentrant=False)
        else:
            out = layer(*inputs)
        after_forward = storages.held()
        out.sum().backward()
        after_backward = storages.held()
    assert all(x.grad is not None for x in inputs)
    return after_forward, after_backward


@pytest.mark.parametrize("checkpoint", [False, True], ids=["plain", "checkpoint"])
@pytest.mark.parametrize("model, shapes", MODELS)
def test_memory_held_like_torch_einsum(model, shapes, checkpoint):
    """After the forward and after backward (output kept), no more than 1.1x torch.einsum's;
    under checkpointing, the forward holds no more than torch.einsum's either."""
    ours = held_bytes(model, shapes, einsgrad.torch.einsum, checkpoint)
    theirs = held_bytes(model, shapes, torch.einsum, checkpoint)
    assert theirs[1] > 0
    assert ours[0] <= LIMIT * theirs[0], (ours, theirs)
    assert ours[1] <= LIMIT * theirs[1], (ours, theirs)


@pytest.mark.parametrize("model, shapes", MODELS)
def test_saved_tensor_hooks_see_everything_the_backward_reads(model, shapes):
    """With hooks that hand back zeros in place of every saved tensor, the gradients are all
    zero: nothing the backward reads bypasses the hooks. Hooks that hand back the tensors
    (an offload round trip) give torch.einsum's gradients."""
    generator = torch.Generator().manual_seed(1)
    inputs = [torch.randn(s, dtype=torch.float64, generator=generator, requires_grad=True) for s in shapes]
    packed = []

    def pack(t):
        packed.append(t.shape)
        return t.detach().clone()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(einsgrad.torch.einsum)(*inputs)
    grads = torch.autograd.grad(out.sum(), inputs)
    expected = torch.autograd.grad(model(torch.einsum)(*inputs).sum(), inputs)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want)
    assert packed

    # einsums alone (a chain: the pullback reads an intermediate product): zeros in, zeros out
    xs = [torch.randn(s, dtype=torch.float64, generator=generator, requires_grad=True)
          for s in [(3, 4), (4, 5), (5, 6)]]
    with torch.autograd.graph.saved_tensors_hooks(torch.zeros_like, lambda t: t):
        out = einsgrad.torch.einsum("ab,bc,cd->ad", *xs)
    for g in torch.autograd.grad(out, xs, torch.ones_like(out)):
        assert torch.count_nonzero(g) == 0


def test_frozen_operand_keeps_no_activation():
    """A frozen weight: the activation that only its own gradient would read is not kept,
    as torch's matmul keeps only the other side; after the forward the graph holds what
    torch.einsum's holds."""
    def held_after_forward(einsum):
        generator = torch.Generator().manual_seed(2)
        x = torch.randn(256, 128, generator=generator, requires_grad=True)
        weight = torch.randn(64, 128, generator=generator)
        with Storages() as storages:
            out = einsum("bi,oi->bo", x * 2.0, weight)  # x * 2: an activation nothing else keeps
            held = storages.held()
        (dx,) = torch.autograd.grad(out.sum(), [x])
        return held, dx

    (ours, dx), (theirs, dx_ref) = held_after_forward(einsgrad.torch.einsum), held_after_forward(torch.einsum)
    torch.testing.assert_close(dx, dx_ref)
    assert ours <= LIMIT * theirs, (ours, theirs)
