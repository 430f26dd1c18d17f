"""The fixed cost of one ``einsgrad.torch.einsum`` call against ``torch.einsum``'s, on tiny operands.

Run: ``python -m benchmarks.torch_calls [--spec SPEC] [--dtypes float32,bfloat16] [--calls N]
[--evict 0,8,96]``. The grouped model's spec (:mod:`benchmarks.training_models`) on operands of a
few elements, one torch thread: what is timed is what a call costs besides its arithmetic. Each
call (one that records a node, as in a training step) and its backward is timed alone, by
``perf_counter``, after a buffer of ``--evict`` MiB has been streamed (0: warm caches; 8: what a
large GEMM leaves, the L2 cache emptied; 96: the L3 too), einsgrad, torch.einsum and a second
torch.einsum (the A/A control) in random order each round; each figure is the median over the
calls. The difference to torch.einsum is what einsgrad adds to a training step per einsum call.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

import torch

SPEC = "...ij,...jk->...ik"
SHAPES = ((2, 2, 3, 4), (2, 4, 5))
PARTS = ("call", "backward")


def measure(spec: str, shapes, dtype, calls: int, evict_mib: int) -> dict[str, list[float]]:
    """Median microseconds of the call and of its backward, per system (``einsgrad``,
    ``torch``, ``again``), each after ``evict_mib`` MiB streamed (none where 0)."""
    import einsgrad.torch

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shapes[0], generator=generator).to(dtype)
    w = torch.randn(shapes[1], generator=generator).to(dtype).requires_grad_()
    g = torch.ones(torch.einsum(spec, x, w).shape, dtype=dtype)
    buffer = torch.ones(evict_mib * 2**18) if evict_mib else None
    systems = [("einsgrad", einsgrad.torch.einsum), ("torch", torch.einsum), ("again", torch.einsum)]
    samples = {name: ([], []) for name, _ in systems}
    clock = time.perf_counter
    for done in range(calls + 20):  # the first 20 rounds warm up
        random.shuffle(systems)
        for name, einsum in systems:
            if buffer is not None:
                buffer.mul_(1.0)
            start = clock()
            y = einsum(spec, x, w)
            middle = clock()
            if buffer is not None:
                buffer.mul_(1.0)
            again = clock()
            y.backward(g)
            end = clock()
            w.grad = None
            if done >= 20:
                samples[name][0].append((middle - start) * 1e6)
                samples[name][1].append((end - again) * 1e6)
    return {name: [statistics.median(s) for s in found] for name, found in samples.items()}


def table(spec: str, dtype: str, evict_mib: int, medians: dict[str, list[float]]) -> str:
    mine, theirs, again = medians["einsgrad"], medians["torch"], medians["again"]
    caches = "warm" if not evict_mib else f"after {evict_mib} MiB streamed"
    lines = [f"## {spec} {dtype}, {caches}"]
    for i, part in enumerate(PARTS):
        lines.append(f"  {part:<9} torch.einsum {theirs[i]:7.1f} us  einsgrad.torch {mine[i]:7.1f} us  "
                     f"over {mine[i] - theirs[i]:+6.1f} us  ratio {mine[i] / theirs[i]:.3f}  A/A {again[i] / theirs[i]:.3f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.torch_calls", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=SPEC, help="a two-operand spec of the grouped model's shapes")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per system")
    parser.add_argument("--evict", default="0,8,96", help="MiB streamed before each timed call")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for dtype in [t.strip() for t in args.dtypes.split(",") if t.strip()]:
        for evict in [int(t) for t in args.evict.split(",") if t.strip()]:
            medians = measure(args.spec, SHAPES, getattr(torch, dtype), args.calls, evict)
            print(table(args.spec, dtype, evict, medians), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
