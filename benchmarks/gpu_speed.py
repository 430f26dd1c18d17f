"""The peer suite on the device: einsgrad's torch and jax glue against each framework's own einsum.

Per case of :mod:`benchmarks.cases` (GPU sizes on a GPU) and dtype, all gradients are computed
one-shot (forward included) and by the pullback of a stored forward: ``einsgrad.torch.einsum``
and ``torch.einsum`` under torch autograd, ``einsgrad.jax.einsum`` and ``jnp.einsum`` under
``jax.jit`` (compiled before timing). Each is first checked against torch autograd of
``torch.einsum`` in float64 on the same rounded values, then the four are timed in interleaved
rounds (:func:`benchmarks.gpu_device.medians`); a result off the reference by more than the
dtype's tolerance is timed too, and marked wrong. Rows run bfloat16 first, then float32, tf32
and float64; a row that would start after the phase's deadline is skipped and named.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping

import einsgrad
from benchmarks import limits
from benchmarks.cases import Case
from benchmarks.gpu_device import ITEMSIZE, STORAGE, Device, Timed, math_mode, medians, torch_dtype
from benchmarks.runner import Cell, message

SYSTEMS = ("einsgrad-torch", "torch", "einsgrad-jax", "jax")
OWN = {"einsgrad-torch": "torch", "einsgrad-jax": "jax"}  # einsgrad's system -> the framework's
MODES = ("oneshot", "pullback")
TOLERANCE = {"bfloat16": 5e-2, "tf32": 2e-2, "float32": 1e-3, "float64": 1e-9}  # x the largest value

# Sizes for a GPU: GEMM-shaped cases of 0.1-0.3 TFLOP per forward, memory-bound ones of
# 16384^2 (2 GiB in float64); the tiny cases keep their 3x3 (per-call overhead).
GPU_SHAPES = {
    "matmul": [(4096, 4096)] * 2,
    "linear": [(8192, 4096), (4096, 4096)],
    "attn scores": [(8, 16, 1024, 64)] * 2,
    "attn apply": [(8, 16, 1024, 1024), (8, 16, 1024, 64)],
    "bilinear": [(4096, 4096)] * 3,
    "scaled linear": [(4096, 4096), (4096, 4096), (4096,)],
    "chain": [(4096, 1024), (1024, 4096)] * 2,
    "tucker": [(384, 384, 384), (384, 128), (384, 128), (384, 128)],
    "mps norm": [(512, 4, 512)] * 8,
    "network": [(96, 96, 96)] * 3,
    "trace": [(16384, 16384)],
    "row sum": [(16384, 16384)],
    "diag scale": [(16384, 16384), (16384,)],
    "batched bcast": [(8, 1, 1024, 512), (1, 16, 512, 1024)],
}


@dataclass(frozen=True)
class Row:
    """One case in one dtype.

    Attributes:
        cells: system -> mode -> cell (ok or wrong, with seconds; error with a note).
        limit: per mode, ``(seconds, "flops" | "bytes")`` at the measured peaks; None for an
            overhead case.
        errors: system -> mode -> the largest difference from the float64 reference,
            relative to its largest value.
    """

    case: str
    spec: str
    shapes: tuple
    dtype: str
    cells: Mapping[str, Mapping[str, Cell]]
    limit: Mapping[str, tuple[float, str]] | None
    errors: Mapping[str, Mapping[str, float]]

    def ratio(self, system: str, mode: str) -> float | None:
        """einsgrad's time over the framework's own (``system`` is einsgrad's)."""
        mine, theirs = self.cells[system][mode], self.cells[OWN[system]][mode]
        return mine.seconds / theirs.seconds if mine.seconds and theirs.seconds else None

    def over_limit(self, system: str, mode: str) -> float | None:
        """The system's time over the limit at the measured peaks."""
        cell = self.cells[system][mode]
        return cell.seconds / self.limit[mode][0] if self.limit and cell.seconds else None


def gpu_cases(cases, device: Device, quick: bool) -> list[Case]:
    """The suite's cases, with the GPU sizes on a GPU (quick runs keep the quick sizes)."""
    if quick or not device.cuda:
        return list(cases)
    return [c._replace(shapes=tuple(map(tuple, GPU_SHAPES.get(c.name, c.shapes)))) for c in cases]


def run(cases, dtypes, device: Device, peaks: limits.Peaks, repeats: int, until: float,
        progress=None) -> tuple[list[Row], list[str]]:
    """Every case in every dtype (dtype by dtype) until the deadline ``until``
    (``perf_counter``); returns the rows and the ``"case dtype"`` of those skipped."""
    rows, skipped = [], []
    jobs = [(c, d) for d in dtypes for c in cases]
    for done, (case, dtype) in enumerate(jobs):
        if time.perf_counter() >= until:
            skipped.append(f"{case.name} {dtype}")
            continue
        if progress:
            progress(f"speed {done + 1}/{len(jobs)}: {case.name} {dtype}")
        try:
            rows.append(row(case, dtype, device, peaks, repeats))
        except Exception as e:  # noqa: BLE001 - making the operands or the reference failed (memory)
            failed = {m: Cell("error", note=f"the row's operands or reference: {message(e)}") for m in MODES}
            rows.append(Row(case.name, case.spec, case.shapes, dtype, {s: failed for s in SYSTEMS}, None, {}))
    return rows, skipped


def row(case: Case, dtype: str, device: Device, peaks: limits.Peaks, repeats: int) -> Row:
    """Checks and times the four systems on one case in one dtype."""
    import torch

    with math_mode(dtype):
        ops, g, reference = _problem(case, dtype, device)
        cells: dict = {s: {} for s in SYSTEMS}
        errors: dict = {s: {} for s in SYSTEMS}
        timed = {}
        for system in SYSTEMS:
            try:
                kernels = _PREPARE[system](case.spec, ops, g)
            except Exception as e:  # noqa: BLE001 - a failing system fails its own cells only
                cells[system] = {m: Cell("error", note=message(e)) for m in MODES}
                continue
            for mode, fn in kernels.items():
                try:
                    error = max(_difference(got, want) for got, want in zip(fn.fn(), reference))
                except Exception as e:  # noqa: BLE001
                    cells[system][mode] = Cell("error", note=message(e))
                    continue
                errors[system][mode] = error
                timed[(system, mode)] = fn
        times = medians(device, {f"{s} {m}": fn for (s, m), fn in timed.items()}, repeats) if timed else {}
        for (system, mode) in timed:
            seconds, error = times[f"{system} {mode}"], errors[system][mode]
            cells[system][mode] = Cell("ok", seconds) if error <= TOLERANCE[dtype] else Cell(
                "wrong", seconds, f"off by {error:.2g} relative to the largest value")
        out_shape = tuple(g.shape)
        del ops, g, reference, timed
    if device.cuda:
        torch.cuda.empty_cache()
    return Row(case.name, case.spec, case.shapes, dtype, cells, _limit(case, dtype, out_shape, peaks), errors)


def _limit(case: Case, dtype: str, out_shape, peaks: limits.Peaks) -> dict | None:
    """Per mode, the shortest time at the measured GEMM peak and copy bandwidth."""
    if case.overhead:
        return None
    costs = einsgrad.compile(case.spec).costs(*case.shapes)
    traffic = limits.traffic(case.spec, case.shapes, out_shape, ITEMSIZE[STORAGE[dtype]])
    return {"oneshot": limits.limit(costs.vjp, traffic.gradients, peaks, dtype),
            "pullback": limits.limit(costs.pullback, traffic.gradients, peaks, dtype)}


def _problem(case: Case, dtype: str, device: Device):
    """Operands and cotangent in ``dtype`` on the device (standard normal, seeded; the case's
    copies made), and the float64 gradients of ``torch.einsum`` on the same rounded values."""
    import torch

    generator = torch.Generator(device=device.torch).manual_seed(0)
    stored = torch_dtype(dtype)
    ops = [torch.randn(s, dtype=torch.float64, device=device.torch, generator=generator).to(stored)
           for s in case.shapes]
    for i, j in case.copies:
        ops[i] = ops[j].clone()
    wide = [o.to(torch.float64, copy=True).requires_grad_() for o in ops]
    y = torch.einsum(case.spec, *wide)
    g = torch.randn(y.shape, dtype=torch.float64, device=device.torch, generator=generator).to(stored)
    reference = torch.autograd.grad(y, wide, g.double())
    return ops, g, reference


def _difference(got, want) -> float:
    """The largest difference relative to the largest value of ``want`` (a float64 tensor)."""
    import torch

    got = _as_torch(got).to(want.device, torch.float64)
    return float((got - want).abs().max() / want.abs().max().clamp_min(1e-300)) if want.numel() else 0.0


def _as_torch(x):
    """A torch tensor or a jax array as a torch tensor (by DLPack, no copy to the host)."""
    if hasattr(x, "detach"):
        return x.detach()
    import jax.numpy as jnp
    import torch

    return torch.from_dlpack(x if x.dtype in (jnp.float32, jnp.float64) else x.astype(jnp.float32))


# -- the systems: each returns {mode: Timed} of zero-argument calls of all gradients -----------

def _torch_kernels(einsum, spec: str, ops, g) -> dict:
    import torch

    xs = [o.detach().requires_grad_() for o in ops]

    def oneshot():
        return torch.autograd.grad(einsum(spec, *xs), xs, g)

    y = einsum(spec, *xs)
    return {"oneshot": Timed(oneshot), "pullback": Timed(lambda: torch.autograd.grad(y, xs, g, retain_graph=True))}


def _jax_kernels(einsum, spec: str, ops, g) -> dict:
    """jit-compiled one-shot vjp and the pullback of a stored ``jax.vjp``, on jax copies of the
    operands (by DLPack; bfloat16 through float32, exactly)."""
    import jax

    xs = [_as_jax(o) for o in ops]
    gj = _as_jax(g)

    def f(*a):
        return einsum(spec, *a)

    oneshot = jax.jit(lambda g, *a: jax.vjp(f, *a)[1](g)).lower(gj, *xs).compile()
    _, back = jax.vjp(f, *xs)
    pullback = jax.jit(lambda back, g: back(g)).lower(back, gj).compile()
    return {"oneshot": Timed(lambda: jax.block_until_ready(oneshot(gj, *xs)), torch=False),
            "pullback": Timed(lambda: jax.block_until_ready(pullback(back, gj)), torch=False)}


def _as_jax(t):
    import jax.dlpack
    import jax.numpy as jnp
    import torch

    if t.dtype == torch.bfloat16:
        return jax.dlpack.from_dlpack(t.float().contiguous()).astype(jnp.bfloat16)
    return jnp.array(jax.dlpack.from_dlpack(t.contiguous()))  # a copy jax owns


def _einsgrad_torch(spec, ops, g):
    import einsgrad.torch

    return _torch_kernels(einsgrad.torch.einsum, spec, ops, g)


def _torch(spec, ops, g):
    import torch

    return _torch_kernels(torch.einsum, spec, ops, g)


def _einsgrad_jax(spec, ops, g):
    import einsgrad.jax

    return _jax_kernels(einsgrad.jax.einsum, spec, ops, g)


def _jax(spec, ops, g):
    import jax.numpy as jnp

    return _jax_kernels(jnp.einsum, spec, ops, g)


_PREPARE = {"einsgrad-torch": _einsgrad_torch, "torch": _torch, "einsgrad-jax": _einsgrad_jax, "jax": _jax}
