"""Peak memory of forward + all gradients: einsgrad (stored, recomputed, sliced) and torch.

Run: ``python -m benchmarks.memory``. Each measurement runs in a fresh subprocess: it makes
the operands and the cotangent, resets the kernel's peak-RSS counter (``/proc/self/clear_refs``),
runs the forward and the backward once, and reports the peak resident memory above what the
process held before, in MiB. The gradients themselves (the size of the operands) are part
of every figure. :func:`peak_above_baseline` and :func:`in_fresh_process` are how every
benchmark takes such a peak (``benchmarks.network_memory`` too).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import subprocess
import sys
from typing import Callable

CASES = {
    "chain": ("ab,bc,cd,de->ae", [(1024, 256), (256, 1024), (1024, 256), (256, 1024)]),
    "network": ("abc,cde,efa->bdf", [(48, 48, 48)] * 3),
}
SYSTEMS = ["einsgrad", "einsgrad-recompute", "einsgrad-limit", "torch"]

def _status_bytes(field: str) -> int:
    """A ``/proc/self/status`` figure (``VmRSS:``, ``VmHWM:``), in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise LookupError(field)


def _give_back_freed_heap() -> None:
    """Returns the heap's free pages to the system (glibc's ``malloc_trim``), so that what the
    warm-up run freed is not resident when the measured run starts: that run would reuse it
    without raising the peak, and read low."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def peak_above_baseline(run: Callable[[], object]) -> float:
    """Peak resident MiB of one ``run()`` above what the process held just before it, what
    ``run`` returns included (kept until the peak is read). ``run`` is called once before, to
    compile and load what it needs, outside the measurement; then the heap's free pages are
    given back and the kernel's peak-RSS counter is reset (``/proc/self/clear_refs``). Linux
    only; meant for a fresh process (:func:`in_fresh_process`), where nothing else runs."""
    run()
    _give_back_freed_heap()
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    before = _status_bytes("VmRSS:")
    result = run()  # held until the peak is read: the results are part of it
    peak = _status_bytes("VmHWM:") - before
    del result
    return peak / 2**20


def in_fresh_process(arguments: list[str], timeout: float = 300, unset=()) -> float | str:
    """The figure a fresh ``python *arguments`` prints (JSON, its last line of output), or the
    last line of the error it raised (``"timeout"`` past ``timeout`` seconds). The repository
    root leads the child's ``PYTHONPATH``, so it imports these benchmarks and this einsgrad;
    the variables named in ``unset`` are left out of its environment."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {name: value for name, value in os.environ.items() if name not in unset}
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    try:
        result = subprocess.run([sys.executable, *arguments], capture_output=True, text=True, env=env,
                                timeout=timeout, cwd=root)
    except subprocess.TimeoutExpired:
        return "timeout"
    if result.returncode:
        return (result.stderr.strip().splitlines() or ["failed"])[-1][:80]
    return json.loads(result.stdout.strip().splitlines()[-1])


_CHILD = r"""
import json, os, sys
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np
from benchmarks.memory import peak_above_baseline
spec, shapes, system, limit = json.loads(sys.argv[1])
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
print(json.dumps(peak_above_baseline(lambda: run(g))))
"""


def peak_mib(spec: str, shapes, system: str, limit: int | None) -> float | str:
    """Peak MiB above the baseline, or the error a system raised."""
    return in_fresh_process(["-c", _CHILD, json.dumps([spec, shapes, system, limit])])


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
