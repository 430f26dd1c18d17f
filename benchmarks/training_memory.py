"""What autograd holds for the attention layer, and how many graphs torch.compile builds for it.

Memory is counted exactly, at the level of tensor storages: a ``TorchDispatchMode`` sees every
op that runs while it is active, in the forward, in the backward (which autograd runs with the
same thread-local modes) and in a checkpoint's recomputation. Each storage an op creates (one
that is none of the op's inputs' storages, so views and in-place results are not counted
again, and the weights and inputs made before are never counted) is remembered by a
``StorageWeakRef``; the bytes held at a moment are the sizes of those still alive then. That
counts what torch's allocator holds for the step, whoever keeps it (autograd's saved
variables, a Python closure on the ``ctx``, the output), and nothing else: no allocator
caching, no other thread's allocations, no page-level noise as an RSS delta has. The layer's
output is kept alive by the caller throughout, as a training loop that logs or reuses it does;
the output and the weight gradients are part of every figure after backward (the same bytes
for both systems).
"""

from __future__ import annotations

import contextlib
import functools

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.checkpoint import checkpoint

from benchmarks.runner import message
from benchmarks.training_models import MODELS, Ops, attention

MEASURES = ("after forward", "after backward, output kept", "checkpointed: after forward",
            "checkpointed: after backward, output kept",
            "after forward, hidden from saved-tensor hooks")
# No length equals another size of the layer: dynamo would take the two for one symbol
# (duck sizing) and recompile when they part.
LENGTHS, QUICK_LENGTHS = tuple(range(40, 200, 16)), (10, 12, 14)
_ATTENTION = next(m for m in MODELS if m.name == "attention")


def ops(einsum) -> Ops:
    """The torch functions a model's loss calls, around ``einsum``."""
    return Ops(einsum, torch.relu, functools.partial(torch.softmax, dim=-1),
               functools.partial(torch.logsumexp, dim=-1))


def systems() -> dict:
    """The einsums compared, by the name the tables show."""
    import einsgrad.torch

    return {"einsgrad.torch": einsgrad.torch.einsum, "torch.einsum": torch.einsum}


class _Storages(TorchDispatchMode):
    """Remembers the storages ops create while active; :meth:`held` sums those still alive."""

    def __init__(self):
        super().__init__()
        self._made: dict[int, tuple[StorageWeakRef, int]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs))
                  if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            pointer = storage.data_ptr()
            if pointer in inputs or storage.nbytes() == 0:
                continue
            known = self._made.get(pointer)
            if known is None or known[0].expired():  # an address freed and given out again
                self._made[pointer] = (StorageWeakRef(storage), storage.nbytes())
        return out

    def held(self, excluding=frozenset()) -> int:
        """Bytes of the storages made and still alive, but those at the ``excluding`` addresses."""
        return sum(nbytes for pointer, (ref, nbytes) in self._made.items()
                   if not ref.expired() and pointer not in excluding)


def _tensors(arrays: dict, dtype, grad: bool = False) -> dict:
    return {k: torch.from_numpy(v).to(dtype).requires_grad_(grad) for k, v in arrays.items()}


def _held(einsum, params0: dict, batch: dict, checkpointed: bool) -> dict[str, int]:
    """Bytes held after the forward and after the backward of one step, output kept; without
    checkpointing also the bytes held after the forward that are neither the output nor
    packed through saved-tensor hooks (what offloading or compression hooks cannot reach)."""
    params = _tensors(params0, torch.float32, grad=True)
    layer = functools.partial(attention, ops(einsum), params)
    storages, packed = _Storages(), set()

    def pack(t):
        packed.add(t.untyped_storage().data_ptr())
        return t

    hooks = contextlib.nullcontext() if checkpointed else torch.autograd.graph.saved_tensors_hooks(pack, _same)
    with storages:
        with hooks:
            y = checkpoint(layer, batch["x"], use_reentrant=False) if checkpointed else layer(batch["x"])
        forward = storages.held()
        hidden = storages.held(excluding=packed | {y.untyped_storage().data_ptr()})
        ((y - batch["target"]) ** 2).mean().backward()
        backward = storages.held()
    if checkpointed:
        return {"checkpointed: after forward": forward, "checkpointed: after backward, output kept": backward}
    return {"after forward": forward, "after backward, output kept": backward, MEASURES[-1]: hidden}


def _same(t):
    return t


def memory(quick: bool = False) -> dict:
    """Per system, bytes held by each of :data:`MEASURES` (or ``{"error": ...}``), float32."""
    params0, batch0 = _ATTENTION.make(_ATTENTION.sized(quick))
    batch = _tensors(batch0, torch.float32)
    found = {}
    for name, einsum in systems().items():
        try:
            held = {**_held(einsum, params0, batch, False), **_held(einsum, params0, batch, True)}
            found[name] = {m: held[m] for m in MEASURES}
        except Exception as e:  # noqa: BLE001 - a failing system fails its own figures only
            found[name] = {"error": message(e)}
    return found


def graphs(quick: bool = False) -> dict:
    """Per system, the graphs ``torch.compile(dynamic=True)`` builds for a training step of the
    attention layer (forward and loss compiled, backward run) over the sequence lengths.

    A backend that counts its calls and returns ``gm.forward`` sees every graph dynamo makes:
    the first, one per recompilation and one per graph break. Dynamo's recompile limit (8)
    is raised for the count, so that lengths past it are counted rather than run eagerly.
    """
    import torch._dynamo

    sizes = dict(_ATTENTION.sized(quick))
    lengths = QUICK_LENGTHS if quick else LENGTHS
    found = {}
    for name, einsum in systems().items():
        count = [0]

        def backend(gm, example_inputs, count=count):
            count[0] += 1
            return gm.forward

        def loss(params, x, target, layer=functools.partial(attention, ops(einsum))):
            return ((layer(params, x) - target) ** 2).mean()

        torch._dynamo.reset()
        step = torch.compile(loss, backend=backend, dynamic=True)
        error = None
        with torch._dynamo.config.patch(recompile_limit=64):
            for length in lengths:
                params0, batch0 = _ATTENTION.make({**sizes, "S": length})
                params, batch = _tensors(params0, torch.float32, grad=True), _tensors(batch0, torch.float32)
                try:
                    step(params, batch["x"], batch["target"]).backward()
                except Exception as e:  # noqa: BLE001
                    error = f"at S={length}: {message(e)}"
                    break
        found[name] = {"graphs": count[0], "lengths": list(lengths), "error": error}
    torch._dynamo.reset()
    return found
