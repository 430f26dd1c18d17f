"""The device of the GPU script: its clocks, its four dtypes and its measured peaks.

A torch function is timed with CUDA events on a GPU (the device's own clock, from the first
kernel queued to the last one finished) and with ``perf_counter`` on the CPU; a jax function
blocks until its result is ready and is timed with ``perf_counter`` everywhere. ``tf32`` is
float32 storage with TF32 matrix products allowed (torch's ``allow_tf32``, jax's
``tensorfloat32`` precision); ``float32`` forbids them (jax: ``float32`` precision).
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Mapping, NamedTuple

from benchmarks import limits

DTYPES = ("bfloat16", "float32", "tf32", "float64")  # the order the speed phase runs them in
STORAGE = {"bfloat16": "bfloat16", "float32": "float32", "tf32": "float32", "float64": "float64"}
ITEMSIZE = {"bfloat16": 2, "float32": 4, "float64": 8}
JAX_PRECISION = {"float32": "float32", "tf32": "tensorfloat32"}  # others: jax's default


class Timed(NamedTuple):
    """A zero-argument function to time, and whether it is torch's (timed by CUDA events on
    a GPU) or blocks until done itself (jax: wall clock)."""

    fn: Callable[[], object]
    torch: bool = True


@dataclass(frozen=True)
class Device:
    """The torch device the script runs on (``cuda``, ``cuda:1``, ``cpu``); jax uses its
    default device, which is the GPU where jax has CUDA."""

    name: str

    @property
    def torch(self):
        import torch

        return torch.device(self.name)

    @property
    def cuda(self) -> bool:
        return self.torch.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.torch)

    def describe(self) -> dict:
        """The device's name, and the versions of what the script uses."""
        import importlib.metadata

        found = {"device": self.name}
        if self.cuda:
            import torch

            props = torch.cuda.get_device_properties(self.torch)
            found.update(gpu=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                         multiprocessors=props.multi_processor_count, cuda=torch.version.cuda)
        for package in ("torch", "jax", "jaxlib", "cupy-cuda13x", "cupy-cuda12x", "opt_einsum", "numpy",
                        "pytest", "hypothesis"):
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                found[package] = importlib.metadata.version(package)
        with contextlib.suppress(Exception):
            import jax

            found["jax_backend"] = jax.default_backend()
        return found

    def seconds(self, timed: Timed, loops: int) -> float:
        """Seconds per call of ``loops`` calls in a row."""
        if timed.torch and self.cuda:
            import torch

            with torch.cuda.device(self.torch):  # the events go on this device's current stream
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(loops):
                    timed.fn()
                end.record()
                end.synchronize()
            return start.elapsed_time(end) / 1e3 / loops
        begin = time.perf_counter()
        for _ in range(loops):
            timed.fn()
        if timed.torch:
            self.sync()
        return (time.perf_counter() - begin) / loops


def medians(device: Device, functions: Mapping[str, Timed], repeats: int, warmup: int = 2,
            min_seconds: float = 0.002) -> dict[str, float]:
    """Median seconds per call of each function, timed in interleaved rounds (each round
    starts one function later), after ``warmup`` calls; a round loops a function until it has
    run ``min_seconds``."""
    loops = {}
    for name, timed in functions.items():
        for _ in range(warmup):
            timed.fn()
        device.sync()
        once = device.seconds(timed, 1)
        loops[name] = max(1, min(1000, math.ceil(min_seconds / max(once, 1e-9))))
    samples: dict[str, list[float]] = {name: [] for name in functions}
    order = list(functions.items())
    for r in range(repeats):
        for name, timed in order[r % len(order):] + order[:r % len(order)]:
            samples[name].append(device.seconds(timed, loops[name]))
    return {name: statistics.median(values) for name, values in samples.items()}


@contextlib.contextmanager
def math_mode(dtype: str):
    """torch's and jax's matrix-product precision for ``dtype`` (TF32 allowed only for
    ``tf32``), restored afterwards."""
    import torch

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = dtype == "tf32"
    try:
        with _jax_precision(JAX_PRECISION.get(dtype)):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@contextlib.contextmanager
def _jax_precision(precision: str | None):
    try:
        import jax
    except ImportError:
        jax = None
    if jax is None or precision is None:
        yield
        return
    saved = jax.config.jax_default_matmul_precision  # the config option the context manager sets
    jax.config.update("jax_default_matmul_precision", precision)
    try:
        yield
    finally:
        jax.config.update("jax_default_matmul_precision", saved)


def torch_dtype(dtype: str):
    """The torch dtype storing ``dtype``."""
    import torch

    return getattr(torch, STORAGE[dtype])


def measure_peaks(device: Device, dtypes, quick: bool, repeats: int = 5) -> limits.Peaks:
    """torch's matmul FLOP/s per dtype on square matrices (8192 on a GPU, 2048 on the CPU,
    256 quick) and the device-to-device copy bandwidth (1 GiB on a GPU, 256 MiB on the CPU,
    16 MiB quick), read plus written."""
    import torch

    n = 256 if quick else 8192 if device.cuda else 2048
    gemm = {}
    for dtype in dtypes:
        with math_mode(dtype):
            a, b = (torch.randn(n, n, device=device.torch).to(torch_dtype(dtype)) for _ in range(2))
            out = torch.empty_like(a)
            seconds = medians(device, {"": Timed(lambda: torch.matmul(a, b, out=out))}, repeats)[""]
        gemm[dtype] = 2 * n ** 3 / seconds
        del a, b, out
    count = (16 << 20 if quick else 1 << 30 if device.cuda else 256 << 20) // 4
    src = torch.ones(count, device=device.torch)
    dst = torch.empty_like(src)
    copy = 2 * src.numel() * 4 / medians(device, {"": Timed(lambda: dst.copy_(src))}, repeats)[""]
    return limits.Peaks(gemm, copy, (math.nan, math.nan), n, src.numel() * 4)
