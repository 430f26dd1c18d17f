"""The tanh layer and its squared error: einsgrad's gradient programs against torch autograd.

Run: ``python -m benchmarks.layers [--quick] [--repeats N] [--dtypes float64,float32] [--json PATH]``.
The program is README's "Programs of statements" example::

    H[b,j] = X[b,k] * W[j,k] + c[j]
    A[b,j] = tanh(H[b,j])
    L = 0.5 * (A[b,j] - T[b,j])^2

at B = 256, 1024 -> 1024 (quick: 16, 24 -> 20). Timed, in interleaved rounds in one process:
einsgrad's forward ``p(...)``, its gradients by X, W and c in one reverse sweep
(``p.grad(["X", "W", "c"])``, a program that computes the forward again) and by W alone
(``p.grad("W")``), against torch on the same expression: the forward under ``no_grad``, and
the forward with ``torch.autograd.grad`` of the loss by the same tensors. The values are
checked against torch's first. The targets: einsgrad's gradients at most :data:`TARGET` times
torch's, and the backward (all gradients less the forward they compute again) about twice the
forward (issue 13). The forward's matrix product alone, in numpy's BLAS (which einsgrad runs
on) and in torch's, shows how much of a difference is the two BLAS libraries' (on a loaded
machine numpy's threaded OpenBLAS falls far behind torch's).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before anything imports torch

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402

import numpy as np  # noqa: E402

import einsgrad  # noqa: E402
from benchmarks.report import duration, ratio_text  # noqa: E402
from benchmarks.timing import medians  # noqa: E402

PROGRAM = """
    H[b,j] = X[b,k] * W[j,k] + c[j]
    A[b,j] = tanh(H[b,j])
    L = 0.5 * (A[b,j] - T[b,j])^2
"""
SIZES = {"B": 256, "in": 1024, "out": 1024}
QUICK = {"B": 16, "in": 24, "out": 20}
WRT = ("X", "W", "c")
TARGET = 1.2
"""einsgrad's gradients should take at most this many times torch autograd's."""
TOLERANCE = {"float64": 1e-9, "float32": 1e-4}  # the largest difference over the largest value
DTYPES = tuple(TOLERANCE)


@dataclass(frozen=True)
class Result:
    """One dtype measured.

    Attributes:
        dtype, sizes: which.
        seconds: median seconds of each variant: einsgrad ``forward``, ``all gradients``,
            ``W only``; torch ``torch forward``, ``torch all gradients``, ``torch W only``; and
            the forward's matrix product alone in each library's BLAS (``numpy X @ W.T``,
            ``torch X @ W.T``), whose ratio tells einsgrad's overhead from the two BLAS' speed.
        difference: einsgrad's largest difference from torch, relative to the largest value,
            over the loss and every gradient.
        program: einsgrad's program of all gradients, as it prints.
    """

    dtype: str
    sizes: dict
    seconds: dict
    difference: float
    program: str

    def ratio(self, a: str, b: str) -> float | None:
        return self.seconds[a] / self.seconds[b] if self.seconds.get(a) and self.seconds.get(b) else None

    def backward(self, everything: str, forward: str) -> float | None:
        """The backward's share of ``everything`` (which runs the forward too) over ``forward``."""
        ratio = self.ratio(everything, forward)
        return None if ratio is None else ratio - 1


def _arrays(sizes: dict, dtype: str) -> dict:
    rng = np.random.default_rng(0)
    B, n, m = sizes["B"], sizes["in"], sizes["out"]
    arrays = {"X": rng.standard_normal((B, n)), "W": rng.standard_normal((m, n)) / np.sqrt(n),
              "c": rng.standard_normal(m) * 0.1, "T": rng.uniform(-1, 1, (B, m))}
    return {k: v.astype(dtype) for k, v in arrays.items()}


def _torch_variants(arrays: dict):
    """torch's forward (no autograd), its gradients by WRT and by W alone, and the values."""
    import torch

    t = {k: torch.from_numpy(v) for k, v in arrays.items()}
    leaves = {k: t[k].clone().requires_grad_(True) for k in WRT}

    def loss(X, W, c):
        A = torch.tanh(X @ W.T + c)
        return 0.5 * ((A - t["T"]) ** 2).sum()

    def forward():
        with torch.no_grad():
            return loss(t["X"], t["W"], t["c"])

    def gradients():
        return torch.autograd.grad(loss(leaves["X"], leaves["W"], leaves["c"]), [leaves[k] for k in WRT])

    def w_only():
        return torch.autograd.grad(loss(t["X"], leaves["W"], t["c"]), [leaves["W"]])

    def matmul():
        return t["X"] @ t["W"].T

    return forward, gradients, w_only, matmul


def _difference(mine, theirs) -> float:
    worst = 0.0
    for a, b in zip(mine, theirs):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b.detach().numpy() if hasattr(b, "detach") else b,
                                                             dtype=np.float64)
        worst = max(worst, float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)))
    return worst


def measure(dtype: str, quick: bool, repeats: int) -> Result:
    sizes = QUICK if quick else SIZES
    arrays = _arrays(sizes, dtype)
    p = einsgrad.program(PROGRAM)
    everything, w = p.grad(list(WRT)), p.grad("W")
    forward, gradients, w_only, matmul = _torch_variants(arrays)
    mine = [p(**arrays), *everything(**arrays), w(**arrays)]
    theirs = [forward(), *gradients(), *w_only()]
    difference = _difference(mine, theirs)
    if not difference <= TOLERANCE[dtype]:
        raise AssertionError(f"einsgrad's layer gradients ({dtype}) differ from torch's by {difference:.1e}")
    variants = {"forward": lambda: p(**arrays), "all gradients": lambda: everything(**arrays),
                "W only": lambda: w(**arrays), "torch forward": forward,
                "torch all gradients": gradients, "torch W only": w_only,
                "numpy X @ W.T": lambda: arrays["X"] @ arrays["W"].T, "torch X @ W.T": matmul}
    seconds = medians(variants, repeats=repeats, min_seconds=0.0 if quick else 0.05)
    return Result(dtype, sizes, seconds, difference, str(everything))


def table(results, repeats: int, quick: bool) -> str:
    sizes = results[0].sizes if results else SIZES
    lines = [f"tanh layer + squared error, B={sizes['B']}, {sizes['in']} -> {sizes['out']}, medians of "
             f"{repeats} interleaved rounds{' (quick sizes)' if quick else ''}; target: einsgrad's gradients "
             f"<= {TARGET:g}x torch autograd's", "",
             "| dtype | einsgrad forward | einsgrad all gradients (X, W, c) | torch forward + backward "
             "| einsgrad / torch | einsgrad W only | torch W only | einsgrad / torch "
             "| einsgrad backward / forward | torch backward / forward | numpy GEMM / torch GEMM |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s = r.seconds
        cells = [r.dtype, duration(s["forward"]), duration(s["all gradients"]), duration(s["torch all gradients"]),
                 ratio_text(r.ratio("all gradients", "torch all gradients")), duration(s["W only"]),
                 duration(s["torch W only"]), ratio_text(r.ratio("W only", "torch W only")),
                 ratio_text(r.backward("all gradients", "forward")),
                 ratio_text(r.backward("torch all gradients", "torch forward")),
                 ratio_text(r.ratio("numpy X @ W.T", "torch X @ W.T"))]
        lines.append("| " + " | ".join(cells) + " |")
    if results:
        lines += ["", "einsgrad's program of all gradients (one reverse sweep):",
                  *("    " + line for line in results[0].program.splitlines())]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.layers", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few rounds")
    parser.add_argument("--repeats", type=int, help="interleaved rounds, at least 3 (default 9, quick 3)")
    parser.add_argument("--dtypes", default=",".join(DTYPES), help="comma-separated dtypes")
    parser.add_argument("--json", metavar="PATH", help="write the results here")
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 9)
    if repeats < 3:
        parser.error("--repeats must be at least 3: each time is a median")
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if bad := [d for d in dtypes if d not in TOLERANCE]:
        parser.error(f"unsupported dtype(s) {', '.join(bad)}; the benchmark runs {', '.join(DTYPES)}")
    start = time.perf_counter()
    results = [measure(d, args.quick, repeats) for d in dtypes]
    print(table(results, repeats, args.quick))
    print(f"# wall time {time.perf_counter() - start:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in results], f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
