"""Slicing under ``memory_limit`` against cotengra's ``SliceFinder``, on the same trees.

Run: ``python -m benchmarks.networks --slicing`` (or ``python -m benchmarks.network_slicing``).
For each network and limit: the slices and the FLOP overhead (sliced FLOPs over unsliced) of
einsgrad's greedy search, of ``SliceFinder`` (cotengra's whole-label cuts, sized on the forward
tree, completed where the backward's intermediates need more), and of the choice einsgrad
makes (the cheaper); the overhead counts the forward and every gradient. The tree is the
signature's forward tree (greedy) for all three. Then the peak memory of a forward and all
gradients, each figure in a fresh process (the kernel's peak-RSS counter reset just before
the run, the figure above what the process held then, gradients included): numpy unsliced
and sliced, torch's autograd through ``einsgrad.torch.einsum`` sliced, and dask arrays sliced.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field

from benchmarks.network_cases import Network, grid, mps_norm, random_regular

# (network, memory_limit): the 4x4 grid at bond 16 at two limits, a 5x5 grid of bond 3
# at 400 (ragged chunks compiled per combination before: 231 s a call), an MPS and a graph.
CASES = [
    (grid(4, 4, 16), 2**16),
    (grid(4, 4, 16), 2**14),
    (grid(5, 5, 3), 400),
    (mps_norm(20, 64), 2**12),
    (random_regular(30, 3, 4), 2**10),
]
PEAK_SYSTEMS = ("numpy unsliced", "numpy sliced", "torch sliced", "dask sliced")
DASK_SLICES = 4096  # dask's peak is measured up to this many slices (one graph, a task per slice)


@dataclass
class SliceRow:
    """One network and limit: (slices, overhead) of each finder, and peak MiB by system."""

    name: str
    limit: int
    largest: int  # the unsliced largest intermediate, elements
    einsgrad: tuple[int, float] | None = None
    cotengra: tuple[int, float] | None = None
    cotengra_forward: tuple[int, float] | None = None  # SliceFinder's own figures (forward only)
    chosen: tuple[int, float, str] | None = None
    peaks: dict = field(default_factory=dict)


def figures(network: Network, limit: int) -> SliceRow:
    """The slice counts and overheads of the three choices for one network (no run)."""
    from einsgrad import paths, plan, slicing
    from einsgrad.shapes import bind
    from einsgrad.spec import parse

    bound = bind(parse(network.spec), network.shapes)
    tree = plan.forward_path(bound, "greedy")
    model = slicing.Model(bound, tree)
    row = SliceRow(network.name, limit, model.measure({}).largest)
    ours = slicing.greedy(model, limit)
    row.einsgrad = (ours.slices, ours.overhead)
    chosen = slicing.choose(bound, limit, tree)
    row.chosen = (chosen.slices, chosen.overhead, chosen.finder)
    if paths.has_cotengra():
        terms, core = plan.forward_terms(bound)
        cut = paths.cotengra_slices(terms, core, bound.size_of, tree, limit)
        if cut is not None:
            theirs = slicing.greedy(model, limit, {l: 1 for l in cut})
            row.cotengra = (theirs.slices, theirs.overhead)
            row.cotengra_forward = _slicefinder_figures(terms, core, bound.size_of, tree, limit)
    return row


def _slicefinder_figures(terms, core, size, tree, limit) -> tuple[int, float]:
    """SliceFinder's own slice count and FLOP overhead (forward only), as cotengra reports it."""
    import cotengra

    ctree = cotengra.ContractionTree.from_path([tuple(t) for t in terms], tuple(core), dict(size),
                                               path=[tuple(s) for s in tree])
    _, cost = cotengra.SliceFinder(ctree, target_size=limit, seed=0).search()
    return int(cost.nslices), float(cost.overhead)


_CHILD = r"""
import json, os, sys
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np
terms, sizes, system, limit = json.loads(sys.argv[1])
spec = ",".join("".join(t) for t in terms) + "->"
size = dict(sizes)
rng = np.random.default_rng(0)
ops = [rng.standard_normal([size[l] for l in t]) * 0.5 for t in terms]

def rss(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) * 1024

import einsgrad
lin = einsgrad.compile(spec, optimize="greedy", memory_limit=None if system == "numpy unsliced" else limit)
if system == "torch sliced":
    import torch, einsgrad.torch
    tensors = [torch.from_numpy(o).requires_grad_() for o in ops]
    def run():
        return torch.autograd.grad(einsgrad.torch.einsum(lin, *tensors), tensors)
elif system == "dask sliced":
    import dask, dask.array as da
    dask.config.set(scheduler="synchronous")
    arrays = [da.from_array(o) for o in ops]
    def run():
        y, pullback = lin.value_and_pullback(*arrays)
        return dask.compute(y, *pullback(da.ones(())))
else:
    def run():
        y, pullback = lin.value_and_pullback(*ops)
        return pullback(np.ones(()))
run()  # compile once, outside the measurement
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")
before = rss("VmRSS:")
result = run()
print(json.dumps((rss("VmHWM:") - before) / 2**20))
"""


def peak_mib(network: Network, system: str, limit: int) -> float | str:
    """Peak MiB of a forward and all gradients above the baseline, in a fresh process, or the
    last line of the error it raised."""
    arguments = json.dumps([network.terms, network.sizes, system, limit])
    try:
        result = subprocess.run([sys.executable, "-c", _CHILD, arguments], capture_output=True, text=True,
                                env=os.environ.copy(), timeout=600)
    except subprocess.TimeoutExpired:
        return "timeout"
    if result.returncode:
        return (result.stderr.strip().splitlines() or ["failed"])[-1][:60]
    return json.loads(result.stdout)


def measure(cases=CASES, peaks: bool = True) -> list[SliceRow]:
    rows = []
    for network, limit in cases:
        print(f"slicing: {network.name} at {limit}", file=sys.stderr, flush=True)
        row = figures(network, limit)
        if peaks:
            row.peaks = {system: f"not run ({row.chosen[0]} slices)"
                         if system.startswith("dask") and row.chosen[0] > DASK_SLICES else peak_mib(network, system, limit)
                         for system in PEAK_SYSTEMS}
        rows.append(row)
    return rows


def _pair(figure) -> str:
    return "" if figure is None else f"{figure[0]} / {figure[1]:.3g}x"


def _mib(value) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value or "")


def table(rows: list[SliceRow]) -> str:
    lines = ["# slices / FLOP overhead (forward + all gradients) on one greedy tree; SliceFinder's own "
             "figures count the forward only; peak: MiB above the baseline, forward + all gradients, "
             "a fresh process each",
             f"{'network':<22} {'limit':>7} {'largest':>9} {'einsgrad':>15} {'SliceFinder':>15} "
             f"{'SF (fwd)':>15} {'chosen':>24} " + " ".join(f"{s:>15}" for s in PEAK_SYSTEMS)]
    for r in rows:
        chosen = "" if r.chosen is None else f"{r.chosen[0]} / {r.chosen[1]:.3g}x {r.chosen[2]}"
        lines.append(f"{r.name:<22} {r.limit:>7} {r.largest:>9} {_pair(r.einsgrad):>15} {_pair(r.cotengra):>15} "
                     f"{_pair(r.cotengra_forward):>15} {chosen:>24} "
                     + " ".join(f"{_mib(r.peaks.get(s)):>15}" for s in PEAK_SYSTEMS))
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(measure(peaks="--no-peaks" not in sys.argv)))
