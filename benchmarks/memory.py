"""Peak memory of forward + all gradients: einsgrad (stored, recomputed, sliced) and torch.

Run: ``python -m benchmarks.memory``. Each measurement runs in a fresh subprocess: it makes
the operands and the cotangent, resets the kernel's peak-RSS counter (``/proc/self/clear_refs``),
runs the forward and the backward once, and reports the peak resident memory above what the
process held before, in MiB. The gradients themselves (the size of the operands) are part
of every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CASES = {
    "chain": ("ab,bc,cd,de->ae", [(1024, 256), (256, 1024), (1024, 256), (256, 1024)]),
    "network": ("abc,cde,efa->bdf", [(48, 48, 48)] * 3),
}
SYSTEMS = ["einsgrad", "einsgrad-recompute", "einsgrad-limit", "torch"]

_CHILD = r"""
import json, os, sys
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np
spec, shapes, system, limit = json.loads(sys.argv[1])

def rss(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) * 1024

rng = np.random.default_rng(0)
ops = [rng.standard_normal(s) for s in shapes]
if system == "torch":
    import torch
    tensors = [torch.from_numpy(o).requires_grad_() for o in ops]
    run = lambda g: torch.autograd.grad(torch.einsum(spec, *tensors), tensors, g)
    g = torch.ones(torch.einsum(spec, *tensors).shape, dtype=torch.float64)
else:
    import einsgrad
    lin = einsgrad.compile(spec, memory_limit=limit if system == "einsgrad-limit" else None)
    recompute = system == "einsgrad-recompute"
    def run(g):
        y, pullback = lin.value_and_pullback(*ops, recompute=recompute)
        return pullback(g)
    g = np.ones(lin(*ops).shape)
    run(g)  # compile once, outside the measurement
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")
before = rss("VmRSS:")
grads = run(g)
print(json.dumps((rss("VmHWM:") - before) / 2**20))
"""


def peak_mib(spec: str, shapes, system: str, limit: int | None) -> float | str:
    """Peak MiB above the baseline, or the error a system raised."""
    result = subprocess.run([sys.executable, "-c", _CHILD, json.dumps([spec, shapes, system, limit])],
                            capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    if result.returncode:
        return result.stderr.strip().splitlines()[-1]
    return json.loads(result.stdout)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    results = {}
    print(f"{'case':<9} {'largest intermediate':>22} " + " ".join(f"{s:>19}" for s in SYSTEMS))
    import einsgrad
    for name, (spec, shapes) in CASES.items():
        costs = einsgrad.compile(spec).costs(*shapes)
        limit = max(costs.largest // 8, 1)
        row = {system: peak_mib(spec, shapes, system, limit) for system in SYSTEMS}
        results[name] = {"spec": spec, "shapes": shapes, "memory_limit": limit,
                         "largest_intermediate": costs.largest, "peak_mib": row}
        cells = " ".join(f"{v:>15.1f} MiB" if isinstance(v, float) else f"{v[:19]:>19}" for v in row.values())
        print(f"{name:<9} {costs.largest * 8 / 2**20:>18.1f} MiB {cells}")
    print("einsgrad-limit: memory_limit = largest intermediate / 8 (elements)")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)


if __name__ == "__main__":
    main()
