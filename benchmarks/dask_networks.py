"""The chunked dask dialect against opt_einsum's dask backend, on chunked tensor networks.

Run: ``python -m benchmarks.dask_networks [--quick] [--rounds N] [--sliced]``. For each network (an MPS
norm of 8 tensors at bond 512 in chunks of 64, a 3x3 PEPS-like grid at bond 16 in chunks of 8
and of 4), every operand chunked along every axis, it reports the forward's graph (tasks), its
time computed on dask's threaded scheduler, and the largest value any task returns, for
einsgrad's forward and for ``opt_einsum.contract(..., backend="dask")`` along the same path;
and the tasks of the graph of all gradients that ``value_and_pullback``'s pullback builds (on
the forward's values, persisted). Times are interleaved medians (the two alternate round by
round). Both forwards are checked against numpy first.

``--sliced`` measures a sliced contraction of dask arrays instead (``memory_limit``: one graph
of the slices, tasks running the chunk's numpy program over their slices, the sums a tree in the
graph, :mod:`einsgrad.dask_slices`): for a
3x3 grid at bond 8 in chunks of 4 under limits that make 256 and 4,096 slices, the forward and
all gradients (one ``dask.compute`` of the value and the vjp), its tasks, the time to build the
graph and to compute it (threaded scheduler), against the unsliced dask run and numpy's sliced
and unsliced runs of the same einsum, all interleaved round by round (medians); and the
largest value a task of the sliced graph returns against the limit's bytes.
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


def largest_task(*values, given=()) -> int:
    """Bytes of the largest array a task returns while ``values`` are computed (synchronously,
    the graph as built: no task fused into another), each array of a tuple, list or dict a
    task returns counted alone (a chain's running sums: its blocks); the tasks of the dask
    arrays ``given`` (operands, as the caller made them) and compute's own concatenation of
    the results aside."""
    import dask
    from dask.callbacks import Callback

    sizes = [0]
    skipped = {key for x in given for key in x.__dask_graph__()}

    def largest(value) -> int:
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, (tuple, list)):
            return max([largest(v) for v in value] + [0])
        return getattr(value, "nbytes", 0)

    def posttask(key, result, dsk, state, worker_id):
        if key not in skipped and not str(key).startswith("finalize-"):
            sizes[0] = max(sizes[0], largest(result))

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


@dataclass(frozen=True)
class SlicedCase:
    """A network, the chunk size of its dask arrays, and the memory limit that slices it."""

    network: Network
    chunk: int
    limit: int


def sliced_cases(quick: bool = False) -> list[SlicedCase]:
    if quick:
        return [SlicedCase(grid(2, 3, 4), 2, 16)]
    return [SlicedCase(grid(3, 3, 8), 4, 256), SlicedCase(grid(3, 3, 8), 4, 64)]


def measure_sliced(case: SlicedCase, rounds: int) -> dict:
    import dask
    import dask.array as da

    import einsgrad

    network = case.network
    operands = network.operands()
    lazy = [da.from_array(x, chunks=case.chunk) for x in operands]
    sliced = einsgrad.Einsum(network.spec, optimize="greedy", memory_limit=case.limit)
    whole = einsgrad.Einsum(network.spec, optimize="greedy")
    g = np.ones(())
    size = dict(network.sizes)
    slices = 1
    for label, chunk in sliced.plan(*network.shapes).slices:
        slices *= -(-size[label] // chunk)
    build = {"sliced dask": lambda: (sliced(*lazy), *sliced.vjp(g, *lazy)),
             "dask": lambda: (whole(*lazy), *whole.vjp(g, *lazy))}
    for values in (build["sliced dask"](), build["dask"]()):  # checked (and compiled) first
        got = dask.compute(*values)
        for x, want in zip(got, (whole(*operands), *whole.vjp(g, *operands))):
            np.testing.assert_allclose(x, want, rtol=1e-9, atol=1e-12)
    runs = {"sliced dask": lambda: dask.compute(*build["sliced dask"]()),
            "dask": lambda: dask.compute(*build["dask"]()),
            "sliced numpy": lambda: (sliced(*operands), sliced.vjp(g, *operands)),
            "numpy": lambda: (whole(*operands), whole.vjp(g, *operands))}
    samples: dict[str, list[float]] = {name: [] for name in (*runs, "sliced dask build")}
    names = list(runs)
    with dask.config.set(scheduler="threads"):
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                start = time.perf_counter()
                runs[name]()
                samples[name].append(time.perf_counter() - start)
            start = time.perf_counter()
            build["sliced dask"]()
            samples["sliced dask build"].append(time.perf_counter() - start)
    values = build["sliced dask"]()
    return {"network": network.name, "chunk": case.chunk, "limit": case.limit, "slices": slices,
            "tasks": tasks(*values), "tasks_unsliced": tasks(*build["dask"]()),
            "largest": largest_task(*values, given=lazy), "limit_bytes": case.limit * operands[0].itemsize,
            **{name: statistics.median(times) for name, times in samples.items()}}


def sliced_table(rows: list[dict]) -> str:
    lines = ["# sliced dask: forward and all gradients, one dask.compute; threaded scheduler, interleaved medians; "
             "largest: the largest value a task returns (the operands' own aside)",
             f"{'network':<18} {'chunk':>5} {'limit':>6} {'slices':>6} {'tasks':>6} {'unsliced':>8} "
             f"{'build':>9} {'run':>9} {'dask':>9} {'np sliced':>9} {'numpy':>9} {'largest':>8} {'limit':>8}"]
    for r in rows:
        lines.append(f"{r['network']:<18} {r['chunk']:>5} {r['limit']:>6} {r['slices']:>6} {r['tasks']:>6} "
                     f"{r['tasks_unsliced']:>8} {duration(r['sliced dask build']):>9} "
                     f"{duration(r['sliced dask']):>9} {duration(r['dask']):>9} {duration(r['sliced numpy']):>9} "
                     f"{duration(r['numpy']):>9} {r['largest'] / 2**10:>6.1f}Ki {r['limit_bytes'] / 2**10:>6.1f}Ki")
    return "\n".join(lines)


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
    parser.add_argument("--sliced", action="store_true", help="a sliced contraction (memory_limit) instead")
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 7)
    if args.sliced:
        print(sliced_table([measure_sliced(case, rounds) for case in sliced_cases(args.quick)]))
        return 0
    rows = [measure(case, rounds) for case in cases(args.quick)]
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
