"""What the compiler core costs: forward, pullback, one-shot vjp, per-operand recomputation.

Run: ``python -m benchmarks.core [--repeats N]``. Prints one row per case (float64): median
milliseconds of the forward, of all gradients by the pullback after a stored forward, of a
one-shot ``vjp``, and of all gradients as N separate contractions (one prebuilt opt_einsum
expression per backward spec), then the per-call time of a 3x3 vjp in microseconds.
"""

from __future__ import annotations

import argparse
import platform

import numpy as np
import opt_einsum

import einsgrad
from benchmarks.timing import medians

CASES = [
    ("ik,jk->ij", [(4096, 1024), (1024, 1024)]),
    ("ab,bc,cd,de->ae", [(1024, 256), (256, 1024), (1024, 256), (256, 1024)]),
    ("abc,cde,efa->bdf", [(48, 48, 48)] * 3),
    ("bhqd,bhkd->bhqk", [(4, 8, 512, 64)] * 2),
]


def case_row(spec: str, shapes, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    operands = [rng.standard_normal(s) for s in shapes]
    lin = einsgrad.compile(spec)
    y, pullback = lin.value_and_pullback(*operands)
    g = rng.standard_normal(y.shape)
    separate = [opt_einsum.contract_expression(s, g.shape, *(o.shape for j, o in enumerate(operands) if j != k))
                for k, s in enumerate(lin.grad_specs)]

    def per_operand():
        return [expr(g, *(o for j, o in enumerate(operands) if j != k)) for k, expr in enumerate(separate)]

    times = medians({
        "forward": lambda: lin(*operands),
        "pullback": lambda: pullback(g),
        "vjp": lambda: lin.vjp(g, *operands),
        "separate": per_operand,
    }, repeats=repeats)
    for mine, theirs in zip(lin.vjp(g, *operands), per_operand()):
        assert np.allclose(mine, theirs, rtol=1e-8, atol=1e-8 * np.abs(theirs).max())
    return {"spec": spec, **times}


def overhead_us(repeats: int) -> float:
    rng = np.random.default_rng(0)
    x, w, g = (rng.standard_normal((3, 3)) for _ in range(3))
    lin = einsgrad.compile("ik,jk->ij")
    return medians({"vjp": lambda: lin.vjp(g, x, w)}, repeats=repeats, min_seconds=0.05)["vjp"] * 1e6


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    print(f"# {platform.processor() or platform.machine()}, numpy {np.__version__}, "
          f"opt_einsum {opt_einsum.__version__}, float64, median of {args.repeats}")
    print(f"{'spec':<20} {'forward':>9} {'pullback':>9} {'vjp':>9} {'separate':>9}"
          f" {'pb/fwd':>7} {'vjp/fwd':>7} {'sep/vjp':>7}")
    for spec, shapes in CASES:
        r = case_row(spec, shapes, args.repeats)
        print(f"{spec:<20} {r['forward'] * 1e3:8.2f}ms {r['pullback'] * 1e3:8.2f}ms"
              f" {r['vjp'] * 1e3:8.2f}ms {r['separate'] * 1e3:8.2f}ms"
              f" {r['pullback'] / r['forward']:7.2f} {r['vjp'] / r['forward']:7.2f}"
              f" {r['separate'] / r['vjp']:7.2f}")
    print(f"vjp of 'ik,jk->ij' on 3x3 operands: {overhead_us(args.repeats):.1f} us per call")


if __name__ == "__main__":
    main()
