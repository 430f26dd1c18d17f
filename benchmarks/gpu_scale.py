"""One tensor network whose intermediates need tens of GiB, against the peak torch reports.

``abc,cde,efa->bdf`` with every label of size 200 in float64: the forward's intermediate
``abde`` holds 200^4 values (11.9 GiB), and so does each of the backward's. Forward and all
gradients (``torch.autograd.grad``) run for ``torch.einsum``, for ``einsgrad.torch.einsum`` and
for an ``Einsum`` compiled with ``memory_limit`` = the largest intermediate / 8. Each figure is
``torch.cuda.max_memory_allocated`` above what was allocated before (operands and cotangent),
after a first run that compiled; its time is the median of three CUDA-event-timed runs.
(On torch arrays ``memory_limit`` bounds the contraction path but does not slice: slicing is
numpy's. The planned largest intermediate of each is reported beside its peak.)
"""

from __future__ import annotations

import time

import einsgrad
from benchmarks.gpu_device import Device, Timed, medians
from benchmarks.runner import message

SPEC = "abc,cde,efa->bdf"
SIZE = {"cuda": 200, "cpu": 40, "quick": 10}
SYSTEMS = ("torch.einsum", "einsgrad.torch", "einsgrad.torch memory_limit")


def run(device: Device, quick: bool, until: float, progress=None) -> dict:
    """Peak memory, time and accuracy of each system (those past ``until`` skipped)."""
    import torch

    import einsgrad.torch

    n = SIZE["quick" if quick else "cuda" if device.cuda else "cpu"]
    shapes = [(n, n, n)] * 3
    largest = einsgrad.compile(SPEC).costs(*shapes).largest
    limit = max(largest // 8, 1)
    limited = einsgrad.compile(SPEC, memory_limit=limit)
    einsums = {"torch.einsum": (torch.einsum, SPEC), "einsgrad.torch": (einsgrad.torch.einsum, SPEC),
               "einsgrad.torch memory_limit": (einsgrad.torch.einsum, limited)}
    planned = {"torch.einsum": None, "einsgrad.torch": largest,
               "einsgrad.torch memory_limit": limited.costs(*shapes).largest}
    generator = torch.Generator(device=device.torch).manual_seed(0)
    xs = [torch.randn(s, dtype=torch.float64, device=device.torch, generator=generator).requires_grad_()
          for s in shapes]
    g = torch.randn((n, n, n), dtype=torch.float64, device=device.torch, generator=generator)
    found = {"spec": SPEC, "shapes": shapes, "dtype": "float64", "memory_limit": limit,
             "largest_intermediate_bytes": largest * 8, "numpy_slices": limited.costs(*shapes).slices,
             "systems": {}, "skipped": []}
    reference = None
    for name in SYSTEMS:
        if time.perf_counter() >= until:
            found["skipped"].append(name)
            continue
        if progress:
            progress(f"scale: {name}")
        einsum, spec = einsums[name]

        def gradients():
            return torch.autograd.grad(einsum(spec, *xs), xs, g)

        entry = {"planned_largest_bytes": None if planned[name] is None else planned[name] * 8}
        try:
            grads = gradients()  # compiles, and warms the allocator's pools
            del grads
            device.sync()
            if device.cuda:
                torch.cuda.reset_peak_memory_stats(device.torch)
                before = torch.cuda.memory_allocated(device.torch)
            grads = gradients()
            device.sync()
            if device.cuda:
                entry["peak_bytes"] = torch.cuda.max_memory_allocated(device.torch) - before
            else:
                entry["peak_bytes"] = None
                entry["note"] = "no CUDA: torch reports no peak"
            if reference is None:
                reference = grads
                entry["error"] = 0.0
            else:
                entry["error"] = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(grads, reference))
            del grads
            entry["seconds"] = medians(device, {"": Timed(gradients)}, 3, warmup=0, min_seconds=0.0)[""]
        except Exception as e:  # noqa: BLE001 - out of memory, say: the figure names it
            entry["failure"] = message(e)
        found["systems"][name] = entry
        if device.cuda:
            torch.cuda.empty_cache()
    return found
