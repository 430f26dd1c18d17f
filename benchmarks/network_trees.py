"""All gradients along greedy's tree against cotengra's, on networks where greedy is poor.

Run: ``python -m benchmarks.network_trees [--quick] [--rounds N] [--repeats N]`` (needs
cotengra: the ``networks`` extra). For each network of :func:`networks` (random regular graphs
and grids, where opt_einsum's greedy tree holds intermediates far wider than the best trees; a
chain as the control, where greedy's tree is already the best) it compiles one ``Einsum`` with
``optimize="greedy"`` and one with a cotengra ``ReusableHyperOptimizer``, and reports, float64:

* ``search``: the first call's seconds (path search, planning, code generation), each tree;
* the FLOPs of all gradients in one shot, the forward included (``Einsum.costs().vjp``), and
  the largest intermediate of the forward, in elements;
* ``vjp``: all gradients in one shot, the median of interleaved rounds
  (:func:`benchmarks.timing.medians`), and greedy's over cotengra's.

Both trees' gradients are checked against each other before anything is timed. cotengra is
asked without its optional graph partitioners (kahypar, igraph), which may be absent: its
greedy, random-greedy and label-propagation methods, ``max_repeats`` trials, single process.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

import einsgrad
from benchmarks.network_cases import Network, chain, grid, random_regular
from benchmarks.report import duration, ratio_text
from benchmarks.timing import medians

METHODS = ("greedy", "random-greedy", "labels")  # cotengra's, without optional dependencies


def networks(quick: bool = False) -> list[Network]:
    """Networks where greedy is poor (random regular graphs, grids), and a chain as control."""
    if quick:
        return [random_regular(16), grid(4, 4), chain(10, 4)]
    return [random_regular(60), random_regular(80), random_regular(100), grid(6, 6, bond=4), grid(8, 8, bond=4),
            chain(51)]


@dataclass
class Tree:
    """One tree's figures: first-call seconds, FLOPs, largest intermediate, vjp seconds."""

    search: float
    forward_flops: int
    all_flops: int  # every gradient in one shot, its forward included (the one-shot vjp's)
    largest: int
    vjp: float | None = None


@dataclass
class Row:
    name: str
    tensors: int
    greedy: Tree
    cotengra: Tree

    @property
    def speedup(self) -> float | None:
        """greedy's vjp time over cotengra's."""
        if self.greedy.vjp and self.cotengra.vjp:
            return self.greedy.vjp / self.cotengra.vjp
        return None


def cotengra_optimizer(repeats: int):
    import cotengra

    return cotengra.ReusableHyperOptimizer(methods=list(METHODS), max_repeats=repeats, minimize="flops",
                                          parallel=False, progbar=False)


def compiled(network: Network, optimize, operands, cotangent) -> tuple[einsgrad.Einsum, Tree, list]:
    """A fresh Einsum along ``optimize``'s tree, its first vjp timed, its costs and gradients."""
    start = time.perf_counter()
    e = einsgrad.Einsum(network.spec, optimize=optimize)
    grads = e.vjp(cotangent, *operands)
    search = time.perf_counter() - start
    costs = e.costs(*network.shapes)
    return e, Tree(search, costs.forward, costs.vjp, costs.largest), grads


def measure(network: Network, repeats: int, rounds: int) -> Row:
    operands = network.operands()
    cotangent = np.ones(np.shape(einsgrad.einsum(network.spec, *operands)))
    greedy, greedy_tree, expected = compiled(network, "greedy", operands, cotangent)
    tuned, tuned_tree, grads = compiled(network, cotengra_optimizer(repeats), operands, cotangent)
    for k, (g, x) in enumerate(zip(grads, expected)):
        error = float(np.max(np.abs(g - x)) / max(float(np.max(np.abs(x))), 1e-300))
        if error > 1e-8:
            raise AssertionError(f"{network.name}: operand {k}'s gradient differs between trees by {error:.2g}")
    times = medians({"greedy": lambda: greedy.vjp(cotangent, *operands),
                     "cotengra": lambda: tuned.vjp(cotangent, *operands)}, repeats=rounds, min_seconds=0.02)
    greedy_tree.vjp, tuned_tree.vjp = times["greedy"], times["cotengra"]
    return Row(network.name, network.tensors, greedy_tree, tuned_tree)


def table(rows: list[Row], repeats: int) -> str:
    head = (f"{'network':<22} {'tensors':>7} | {'greedy: search':>14} {'all flops':>10} {'largest':>10} "
            f"{'vjp':>9} | {'cotengra: search':>16} {'all flops':>10} {'largest':>10} {'vjp':>9} | "
            f"{'greedy/cotengra vjp':>19}")
    lines = [f"# float64; all flops: all gradients in one shot, the forward included (Einsum.costs().vjp); cotengra: ReusableHyperOptimizer"
             f"(methods={list(METHODS)}, max_repeats={repeats}, minimize='flops'); search: first vjp call", head]
    for r in rows:
        g, c = r.greedy, r.cotengra
        lines.append(f"{r.name:<22} {r.tensors:>7} | {duration(g.search):>14} {g.all_flops:>10.3g} "
                     f"{g.largest:>10,} {duration(g.vjp):>9} | {duration(c.search):>16} {c.all_flops:>10.3g} "
                     f"{c.largest:>10,} {duration(c.vjp):>9} | {ratio_text(r.speedup):>19}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.network_trees", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small networks, few trials and rounds")
    parser.add_argument("--repeats", type=int, help="cotengra's max_repeats (default 32, quick 8)")
    parser.add_argument("--rounds", type=int, help="interleaved timing rounds (default 9, quick 3)")
    parser.add_argument("--json", metavar="PATH", help="write machine-readable results here")
    args = parser.parse_args(argv)
    repeats = args.repeats or (8 if args.quick else 32)
    rounds = args.rounds or (3 if args.quick else 9)
    rows = []
    for i, network in enumerate(networks(args.quick), 1):
        print(f"[{i}] {network.name}", file=sys.stderr, flush=True)
        rows.append(measure(network, repeats, rounds))
    print(table(rows, repeats))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"machine": platform.processor() or platform.machine(), "repeats": repeats,
                       "rounds": rounds, "rows": [asdict(r) | {"speedup": r.speedup} for r in rows]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
