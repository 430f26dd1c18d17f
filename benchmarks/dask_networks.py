"""The chunked dask dialect against opt_einsum's dask backend, on chunked tensor networks.

Run: ``python -m benchmarks.dask_networks [--quick] [--rounds N]``. For each network (an MPS
norm of 8 tensors at bond 512 in chunks of 64, a 3x3 PEPS-like grid at bond 16 in chunks of 8
and of 4), every operand chunked along every axis, it reports the forward's graph (tasks), its
time computed on dask's threaded scheduler, and the largest value any task returns, for
einsgrad's forward and for ``opt_einsum.contract(..., backend="dask")`` along the same path;
and the tasks of the graph of all gradients that ``value_and_pullback``'s pullback builds (on
the forward's values, persisted). Times are interleaved medians (the two alternate round by
round). Both forwards are checked against numpy first.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np

from benchmarks.network_cases import Network, grid, mps_norm
from benchmarks.report import duration


@dataclass(frozen=True)
class Case:
    """A network and the chunk size of each of its axes (at most)."""

    network: Network
    chunk: int


def cases(quick: bool = False) -> list[Case]:
    if quick:
        return [Case(mps_norm(3, 16), 8), Case(grid(2, 3, 4), 2)]
    return [Case(mps_norm(4, 512), 64), Case(grid(3, 3, 16), 8), Case(grid(3, 3, 16), 4)]


def tasks(*values) -> int:
    """Tasks in the graph of ``values`` together, as built (not optimised)."""
    from dask.highlevelgraph import HighLevelGraph

    return len(HighLevelGraph.merge(*[v.__dask_graph__() for v in values]))


def largest_task(*values) -> int:
    """Bytes of the largest value a task returns while ``values`` are computed (synchronously,
    the graph as built: no task fused into another)."""
    import dask
    from dask.callbacks import Callback

    sizes = [0]

    def posttask(key, result, dsk, state, worker_id):
        sizes[0] = max(sizes[0], getattr(result, "nbytes", 0))

    with Callback(posttask=posttask), dask.config.set(scheduler="sync"):
        dask.compute(*values, optimize_graph=False)
    return sizes[0]


def measure(case: Case, rounds: int) -> dict:
    import dask
    import dask.array as da
    import opt_einsum

    import einsgrad

    network = case.network
    operands = network.operands()
    lazy = [da.from_array(x, chunks=case.chunk) for x in operands]
    path, _ = opt_einsum.contract_path(network.spec, *operands, optimize="greedy")
    e = einsgrad.Einsum(network.spec, optimize=path)
    expected = opt_einsum.contract(network.spec, *operands, optimize=path)
    ours = lambda: e(*lazy)  # noqa: E731
    theirs = lambda: opt_einsum.contract(network.spec, *lazy, optimize=path, backend="dask")  # noqa: E731
    for build in (ours, theirs):
        np.testing.assert_allclose(build().compute(), expected, rtol=1e-9)
    y, pullback = e.value_and_pullback(*lazy)
    grads = pullback(da.ones_like(y) if y.ndim else np.ones(()))
    samples: dict[str, list[float]] = {"einsgrad": [], "opt_einsum": []}
    with dask.config.set(scheduler="threads"):
        for r in range(rounds):
            for name, build in [("einsgrad", ours), ("opt_einsum", theirs)][r % 2:] + \
                    [("einsgrad", ours), ("opt_einsum", theirs)][:r % 2]:
                value = build()
                start = time.perf_counter()
                value.compute()
                samples[name].append(time.perf_counter() - start)
    return {"network": network.name, "chunk": case.chunk,
            "tasks": tasks(ours()), "tasks_opt_einsum": tasks(theirs()),
            "pullback_tasks": tasks(*grads),
            "seconds": statistics.median(samples["einsgrad"]),
            "seconds_opt_einsum": statistics.median(samples["opt_einsum"]),
            "largest": largest_task(ours()), "largest_opt_einsum": largest_task(theirs())}


def table(rows: list[dict]) -> str:
    lines = ["# dask forward: einsgrad's dialect against opt_einsum.contract(backend='dask'), same path; "
             "threaded scheduler, interleaved medians; largest: the largest value a task returns",
             f"{'network':<22} {'chunk':>5} {'tasks':>7} {'oe tasks':>8} {'time':>9} {'oe time':>9} "
             f"{'largest':>9} {'oe largest':>10} {'pullback tasks':>14}"]
    for r in rows:
        lines.append(f"{r['network']:<22} {r['chunk']:>5} {r['tasks']:>7} {r['tasks_opt_einsum']:>8} "
                     f"{duration(r['seconds']):>9} {duration(r['seconds_opt_einsum']):>9} "
                     f"{r['largest'] / 2**10:>7.1f}Ki {r['largest_opt_einsum'] / 2**10:>8.1f}Ki "
                     f"{r['pullback_tasks']:>14}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dask_networks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small networks")
    parser.add_argument("--rounds", type=int, default=0, help="timed rounds (default 7, quick 2)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 7)
    rows = [measure(case, rounds) for case in cases(args.quick)]
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
