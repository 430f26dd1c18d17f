"""The distributed column of :mod:`benchmarks.networks`: a network sliced to a quarter of its
largest intermediate, run by :func:`einsgrad.distributed.value_and_grads` on a 2-worker
LocalCluster, against the same sliced forward and gradients in one process.

The cluster's workers are processes of one thread each (as on a real cluster, with no shared
GIL), on loopback. Both sides run the same tree, the same cuts and the same per-slice code;
they alternate round by round and each figure is the median. ``largest task`` is the largest
intermediate one slice creates, in elements (what ``memory_limit`` bounds).
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from typing import Callable

import numpy as np

import einsgrad
from einsgrad import distributed

MAX_TENSORS = 64  # past this, slicing's planning (not the run) dominates the figure
FRACTION = 4  # the memory limit: the unsliced largest intermediate over this
MAX_PIECES = 256  # more slices than this: not run (the local side alone would take minutes)


def cluster():
    """A 2-worker LocalCluster and its client (close both: ``client.close(); cluster.close()``)."""
    from distributed import Client, LocalCluster

    local = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                         dashboard_address=None)
    return local, Client(local)


def measure_with(client, rounds: int = 3) -> Callable:
    """The measure of one network (see :data:`benchmarks.networks.MEASURES`) on ``client``."""

    def measure(network, row) -> dict:
        if network.tensors > MAX_TENSORS:
            return {"distributed": f"not run: more than {MAX_TENSORS} tensors"}
        operands = network.operands()
        whole = einsgrad.Einsum(network.spec, optimize="greedy").costs(*network.shapes)
        limit = max(1, whole.largest // FRACTION)
        local = einsgrad.Einsum(network.spec, optimize="greedy", memory_limit=limit)
        size = dict(network.sizes)  # the networks' labels are the bound spec's (no ellipsis)
        pieces = math.prod(-(-size[label] // chunk) for label, chunk in local.plan(*network.shapes).slices)
        if pieces > MAX_PIECES:
            return {"distributed": f"not run: {pieces:,} slices at memory_limit={limit}"}
        cotangent = np.ones(np.shape(local(*operands)))

        def one_process():
            return local(*operands), local.vjp(cotangent, *operands)

        def on_cluster():
            return distributed.value_and_grads(network.spec, *operands, memory_limit=limit, client=client,
                                               optimize="greedy", cotangent=cotangent, timeout=600)

        expected, result = one_process(), on_cluster()  # warm: code compiled on both sides
        assert np.allclose(result.value, expected[0], rtol=1e-8)
        assert all(np.allclose(a, b, rtol=1e-8, atol=1e-12) for a, b in zip(result.grads, expected[1]))
        samples: dict[str, list[float]] = {"one process": [], "cluster": []}
        for r in range(rounds):
            for name, run in [("one process", one_process), ("cluster", on_cluster)][r % 2:] + \
                    [("one process", one_process), ("cluster", on_cluster)][:r % 2]:
                start = time.perf_counter()
                run()
                samples[name].append(time.perf_counter() - start)
        return {"memory_limit": limit, "slices": result.pieces,
                "tasks": result.tasks, "largest_task": result.largest,
                "one_process": statistics.median(samples["one process"]),
                "cluster": statistics.median(samples["cluster"])}

    return measure


def main(argv=None) -> int:
    """``python -m benchmarks.network_distributed [--rounds N] [--quick] [--scheduler ADDRESS]``:
    the distributed column alone, for the suite's networks of at most :data:`MAX_TENSORS`
    tensors and a 4x4 grid at bond 8 (a slice's work there outweighs a task's overhead).

    ``--scheduler tcp://HOST:8786`` runs the cluster side on that scheduler's workers instead of
    a local 2-worker cluster (the speed-up a real cluster gives: two cores shared by other jobs
    cannot show one); the one-process side runs here, on the machine that runs this."""
    import argparse

    import dataclasses

    from benchmarks.network_cases import grid, suite
    from benchmarks.networks import Measured, distributed_lines

    parser = argparse.ArgumentParser(prog="python -m benchmarks.network_distributed", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="the quick suite's networks")
    parser.add_argument("--scheduler", help="a running dask scheduler's address (default: a local 2-worker cluster)")
    args = parser.parse_args(argv)
    if args.scheduler:
        from distributed import Client

        local, client = None, Client(args.scheduler)
    else:
        local, client = cluster()
    try:
        measure, rows = measure_with(client, args.rounds), []
        heavier = [] if args.quick else [dataclasses.replace(grid(4, 4, 8), name="grid 4x4 bond 8")]
        for network in [n for n in suite(args.quick) if n.tensors <= MAX_TENSORS] + heavier:
            print(network.name, file=sys.stderr, flush=True)
            row = Measured(network.family, network.name, network.tensors)
            row.extra.update(measure(network, row))
            rows.append(row)
    finally:
        client.close()
        if local is not None:
            local.close()
    print("\n".join(distributed_lines(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
