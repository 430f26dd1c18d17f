"""What this machine can do (GEMM peak, copy bandwidth) and how busy other processes keep it."""

from __future__ import annotations

import math
import os
import platform
import re
import time
from typing import Mapping, NamedTuple

import numpy as np

from benchmarks.timing import medians

ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY",
            "MKL_NUM_THREADS", "XLA_FLAGS")


class Peaks(NamedTuple):
    """Rates measured in this run.

    Attributes:
        gemm: FLOP/s of ``numpy.matmul`` on square matrices of ``gemm_size``, per dtype name.
        copy: bytes/s (read plus written) of ``numpy.copyto`` between arrays of ``copy_bytes``.
        naive: FLOP/s of ``numpy.einsum(optimize=False)`` in float64 on two operands (a
            matmul) and on three (a chain), to tell ahead which unoptimized einsum loops
            would take too long.
    """

    gemm: Mapping[str, float]
    copy: float
    naive: tuple[float, float]
    gemm_size: int
    copy_bytes: int


def measure(dtypes, quick: bool = False, repeats: int = 5) -> Peaks:
    """Measures the peaks: a 2048^3 GEMM (1024^3 if quick) and a 256 MiB copy (64 MiB)."""
    rng = np.random.default_rng(0)
    n = 1024 if quick else 2048
    gemm = {}
    for dtype in dtypes:
        a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
        out = np.empty((n, n), dtype)
        gemm[np.dtype(dtype).name] = 2 * n ** 3 / medians({"": lambda: np.matmul(a, b, out=out)},
                                                          repeats)[""]
    src = np.ones((64 if quick else 256) << 17)  # MiB of float64
    dst = np.empty_like(src)
    copy = 2 * src.nbytes / medians({"": lambda: np.copyto(dst, src)}, repeats)[""]
    naive = []
    for spec, m in (("ij,jk->ik", 128), ("ij,jk,kl->il", 40)):
        ops = [rng.standard_normal((m, m)) for _ in range(spec.count(",") + 1)]
        flops = naive_flops(spec, [(m, m)] * len(ops))
        naive.append(flops / medians({"": lambda: np.einsum(spec, *ops)}, repeats)[""])
    return Peaks(gemm, copy, tuple(naive), n, src.nbytes)


def limit(flops: int, nbytes: int, peaks: Peaks, dtype: str) -> tuple[float, str]:
    """The shortest time for this work here, and what bounds it (``"flops"`` or ``"bytes"``)."""
    compute, memory = flops / peaks.gemm[dtype], nbytes / peaks.copy
    return (compute, "flops") if compute >= memory else (memory, "bytes")


# -- what a contraction must move and compute ---------------------------------------------

def _terms(spec: str) -> tuple[list[str], str]:
    inputs, output = spec.replace(" ", "").split("->")
    return inputs.split(","), output


def _tokens(term: str) -> list[str]:
    return re.findall(r"\.\.\.|\w", term)


def _read(term: str, shape) -> int:
    """Elements that must be read of an operand: of a repeated label, only the diagonal."""
    if "..." in term or len(set(term)) == len(term):
        return math.prod(shape)
    return math.prod(dict(zip(term, shape)).values())


class Traffic(NamedTuple):
    """Bytes that must be read and written: forward, and all gradients from the cotangent."""

    forward: int
    gradients: int


def traffic(spec: str, shapes, output_shape, itemsize: int) -> Traffic:
    """Forward: operands read, output written. Gradients: cotangent read, the operands some
    gradient reads read (all, unless there is one), gradients written in full (dense arrays,
    zeros included: a fresh page is zeroed by the kernel when first touched)."""
    inputs, _ = _terms(spec)
    read = sum(_read(t, s) for t, s in zip(inputs, shapes))
    out, written = math.prod(output_shape), sum(math.prod(s) for s in shapes)
    return Traffic((read + out) * itemsize, (out + read * (len(shapes) > 1) + written) * itemsize)


def naive_flops(spec: str, shapes) -> int:
    """FLOPs of ``numpy.einsum(optimize=False)``: one loop over every label, n-1 products and a
    sum per point."""
    inputs, _ = _terms(spec)
    sizes, batch = {}, []
    for term, shape in zip(inputs, shapes):
        tokens = _tokens(term)
        if "..." in tokens:
            at, width = tokens.index("..."), len(shape) - len(tokens) + 1
            batch.append(shape[at:at + width])
            shape = shape[:at] + (1,) + shape[at + width:]
        sizes.update((t, max(sizes.get(t, 1), d)) for t, d in zip(tokens, shape) if t != "...")
    points = math.prod(sizes.values()) * math.prod(np.broadcast_shapes(*batch) if batch else ())
    return points * len(shapes)


def numpy_path_loops(spec: str, shapes) -> int:
    """FLOPs of ``numpy.einsum(spec, optimize=True)`` in steps of more than two operands, which
    numpy runs as unoptimized loops (its path keeps intermediates below the largest operand)."""
    import opt_einsum

    views = [np.broadcast_to(np.empty(()), s) for s in shapes]
    path = np.einsum_path(spec, *views, optimize=True)[0][1:]
    info = opt_einsum.contract_path(spec, *shapes, shapes=True, optimize=path)[1]
    return sum(math.prod(info.size_dict[c] for c in set(step[2]) - set(",->")) * len(step[0])
               for step in info.contraction_list if len(step[0]) > 2)


def naive_seconds(flops: int, operands: int, peaks: Peaks) -> float:
    """Estimated seconds of unoptimized einsum loops over this many operands."""
    return flops / peaks.naive[operands > 2]


# -- the machine and its load ----------------------------------------------------------------

def machine() -> dict:
    """CPU model, cores, platform, numpy's BLAS and the environment variables that tune them."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        model = names[0] if names else model
    except OSError:
        pass
    try:  # numpy >= 1.26
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{blas['name']} {blas['version']}"
    except (TypeError, KeyError):
        blas = None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": model, "cores": os.cpu_count(), "usable_cores": usable, "blas": blas,
            "platform": platform.platform(), "python": platform.python_version(),
            "env": {name: os.environ.get(name) for name in ENV_VARS}}


class CpuClock(NamedTuple):
    """Wall time, all CPUs' busy time and this process's CPU time, in seconds."""

    wall: float
    busy: float
    own: float


def cpu_clock() -> CpuClock | None:
    """Now, per :class:`CpuClock`; None where /proc/stat is missing."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle and iowait
    busy = (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # up to steal; guests are in user
    t = os.times()
    return CpuClock(time.perf_counter(), busy, t.user + t.system)


def others_load(start: CpuClock | None, end: CpuClock | None) -> float | None:
    """The share of the machine's CPUs that other processes kept busy between two clocks."""
    if start is None or end is None or end.wall <= start.wall:
        return None
    others = (end.busy - start.busy) - (end.own - start.own)
    return min(max(others / ((end.wall - start.wall) * os.cpu_count()), 0.0), 1.0)
