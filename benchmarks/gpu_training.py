"""The five training models (:mod:`benchmarks.training_models`) on the device, in bfloat16.

A step is forward, loss, backward and an SGD update, as in :mod:`benchmarks.training`. In torch
the weights and batch live on the device and a step is timed by CUDA events there; jax runs
:func:`benchmarks.training.pair` as it is (jax's default device is the GPU where it has CUDA;
its step blocks until done). The first steps' loss and gradients of einsgrad and of the
framework's own einsum are compared before timing.
"""

from __future__ import annotations

import time

import numpy as np

import einsgrad
from benchmarks import training
from benchmarks.gpu_device import Device, Timed, medians
from benchmarks.runner import Cell, message
from benchmarks.training_models import MODELS, Model

DTYPE = "bfloat16"
FRAMEWORKS = ("torch", "jax")


def run(device: Device, quick: bool, repeats: int, until: float, progress=None):
    """Every model in both frameworks until ``until``; returns the pairs and the
    ``"model framework"`` of those skipped."""
    pairs, skipped = [], []
    for model in MODELS:
        for framework in FRAMEWORKS:
            if time.perf_counter() >= until:
                skipped.append(f"{model.name} {framework}")
                continue
            if progress:
                progress(f"training: {model.name} {framework}")
            if framework == "torch":
                pairs.append(torch_pair(model, device, quick, repeats))
            else:
                pairs.append(training.pair(model, "jax", DTYPE, quick, repeats))
    return pairs, skipped


def torch_pair(model: Model, device: Device, quick: bool, repeats: int, dtype: str = DTYPE) -> training.Pair:
    """einsgrad's torch step against torch.einsum's on the device."""
    import torch

    import einsgrad.torch
    from benchmarks.training_memory import ops

    params0, batch0 = model.make(model.sized(quick))
    torch_dtype = getattr(torch, dtype)
    batch = {k: torch.from_numpy(v).to(device.torch, torch_dtype) for k, v in batch0.items()}
    cells, firsts, steps = {}, {}, {}
    for name, einsum in (("einsgrad", einsgrad.torch.einsum), ("own", torch.einsum)):
        params = {k: torch.from_numpy(v).to(device.torch, torch_dtype).requires_grad_() for k, v in params0.items()}
        try:
            loss = model.loss(ops(einsum), params, batch)
            first = [loss, *torch.autograd.grad(loss, list(params.values()))]
            firsts[name] = [t.detach().to("cpu", torch.float64).numpy() for t in first]
            steps[name] = Timed(_step(model, ops(einsum), params, batch))
        except Exception as e:  # noqa: BLE001 - a failing variant fails its own cell only
            cells[name] = Cell("refused" if isinstance(e, einsgrad.EinsumSpecError) else "error", note=message(e))
    check = _difference(firsts["einsgrad"], firsts["own"]) if len(firsts) == 2 else None
    if check is not None and not check <= training.TOLERANCE[dtype]:
        cells["einsgrad"] = Cell("wrong", note=f"first step off by {check:.2g} relative to the largest value")
        del steps["einsgrad"]
    if steps:
        try:
            times = medians(device, steps, repeats)
        except Exception as e:  # noqa: BLE001
            cells.update({name: Cell("error", note=message(e)) for name in steps})
        else:
            cells.update({name: Cell("ok", seconds) for name, seconds in times.items()})
    return training.Pair(model.name, "torch", dtype, cells["einsgrad"], cells["own"], check, None)


def _step(model: Model, ops, params: dict, batch: dict):
    import torch

    def step():
        model.loss(ops, params, batch).backward()
        with torch.no_grad():
            for p in params.values():
                p.sub_(p.grad, alpha=training.LEARNING_RATE)
                p.grad = None

    return step


def _difference(mine, theirs) -> float:
    return max(float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)) for a, b in zip(mine, theirs))
