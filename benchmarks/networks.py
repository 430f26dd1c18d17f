"""Tensor networks of 10 to 1000 tensors: what compiling costs against a path search, and
what all gradients cost against the forward.

Run: ``python -m benchmarks.networks [--quick] [--families a,b] [--optimize greedy]
[--rounds N] [--compile-only] [--distributed] [--json PATH] [--plot PATH] [--slicing]``. For each network of :mod:`benchmarks.network_cases`
(MPS/TT norms, PEPS-like grids, random regular graphs, tree tensor networks, circuit-like
networks, chains) it reports, float64:

* ``path``: opt_einsum's ``contract_path`` with the same optimizer; ``cotengra``: cotengra's
  ``array_contract_path`` with it (where cotengra is installed);
* ``compile``: a fresh ``Einsum``'s path search, planning and code generation of the four
  functions its first forward, vjp, ``value_and_pullback`` and pullback load (``source``), and
  compiling that source, not running it; ``ratio``: compile over ``path``;
* ``forward``, ``vjp`` (all gradients in one shot) and ``pullback`` (all gradients after a
  stored forward), and the two gradients' ratio to the forward;
* ``jax/vjp``, ``torch/vjp``: jax's and torch autograd's one-shot vjp on the same path, over
  einsgrad's, timed interleaved with it (:func:`peer_vjps`);
* ``operands``, ``fwd peak``, ``vjp peak``, ``torch fwd``, ``torch vjp``: the operands' MiB, and
  the peak resident memory above them of the forward and of the one-shot vjp, einsgrad's and
  torch autograd's on the same path, a fresh process per figure (:mod:`benchmarks.network_memory`);
* with ``--distributed``: each network (up to 64 tensors, 256 slices) sliced to a quarter of its
  largest intermediate, its forward and all gradients on a 2-worker dask LocalCluster
  (:func:`einsgrad.distributed.value_and_grads`) against one process, and the largest task
  (:mod:`benchmarks.network_distributed`).

``--slicing`` adds the slicing table of :mod:`benchmarks.network_slicing`: slices, FLOP overhead
and peak memory under ``memory_limit``, against cotengra's ``SliceFinder`` on the same trees.

The command runs under the glibc malloc settings of :data:`benchmarks.malloc.MALLOC` (it
re-executes itself to set them; ``--default-malloc`` keeps glibc's defaults): under the
defaults a one-shot vjp that frees and allocates tens of MiB a call (a 16x16 grid's) faults
its pages in again on every call, which its FLOPs do not count. Compile times and path searches alternate round by round, and each figure is the median over
the rounds (the machine may be shared). Every network's gradients are checked first by Euler's
identity for multilinear functions, ``<dL/dX_k, X_k> = <G, Y>`` for every operand ``k``, with no
einsgrad code in the check.

Measures to come plug in as :data:`LATER` says: each is a function of a :class:`Measured`
network returning named figures, added to :data:`MEASURES`; none is faked meanwhile.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import opt_einsum

import einsgrad
from benchmarks import malloc, network_memory
from benchmarks.network_cases import Network, suite
from benchmarks.report import duration, ratio_text
from benchmarks.timing import medians

LATER: dict[str, str] = {}  # measures the issue asks for next, and where each plugs in (MEASURES)


@dataclass
class Measured:
    """One network's figures, in seconds (None: not measured; ``note`` says why)."""

    family: str
    name: str
    tensors: int
    path: float | None = None
    cotengra: float | None = None
    compile: float | None = None
    forward: float | None = None
    vjp: float | None = None
    pullback: float | None = None
    check: float | None = None  # the largest relative error of Euler's identity
    note: str = ""
    optimize: str = "greedy"  # the path optimizer of every column
    extra: dict = field(default_factory=dict)  # figures of MEASURES, by name

    @property
    def ratio(self) -> float | None:
        return self.compile / self.path if self.compile and self.path else None


MEASURES: list[Callable[[Network, Measured], dict]] = []  # see LATER


def einsum_of(network: Network, optimize) -> einsgrad.Einsum:
    """The network's einsum, from its spec text (opt_einsum's symbols: unicode past ``Z``)."""
    return einsgrad.Einsum(network.spec, optimize=optimize)


def compile_seconds(network: Network, optimize) -> float:
    """Seconds to compile a fresh Einsum's forward, vjp, forward-saving and pullback for the
    network's shapes: the path search, planning, code generation (``source``, the four
    functions the first calls make) and compiling that source, without running it."""
    spec, shapes = network.spec, network.shapes  # made before the clock starts, as for path_seconds
    start = time.perf_counter()
    e = einsgrad.Einsum(spec, optimize=optimize)
    source = e.source(*shapes)
    collecting = gc.isenabled()
    gc.disable()  # as einsgrad loads its functions: the cyclic collector paused
    try:
        exec(compile(source, "<networks>", "exec"), {})
    finally:
        if collecting:
            gc.enable()
    return time.perf_counter() - start


def path_seconds(network: Network, optimize) -> float:
    """Seconds of opt_einsum's ``contract_path`` for the network's spec text and shapes."""
    spec, shapes = network.spec, network.shapes
    start = time.perf_counter()
    opt_einsum.contract_path(spec, *shapes, shapes=True, optimize=optimize)
    return time.perf_counter() - start


def cotengra_seconds(network: Network, optimize) -> float:
    import cotengra

    shapes = network.shapes
    start = time.perf_counter()
    cotengra.array_contract_path(network.terms, network.output, shapes=shapes, optimize=optimize, cache=False)
    return time.perf_counter() - start


def euler_error(operands, cotangent, y, grads) -> float:
    """The largest ``|<g_k, x_k> - <G, y>|`` relative to ``|g_k| |x_k|`` (Cauchy-Schwarz
    bounds the rounding of both sides by it)."""
    total = float(np.vdot(cotangent, y).real)
    return max(abs(float(np.vdot(g, x).real) - total) / max(np.linalg.norm(g) * np.linalg.norm(x), 1e-300)
               for g, x in zip(grads, operands))


def measure(network: Network, optimize="greedy", rounds: int = 5, repeats: int = 5) -> Measured:
    """Every figure of one network (see the module); ``repeats`` 0: the compile columns only."""
    row = Measured(network.family, network.name, network.tensors, optimize=str(optimize))
    operands = network.operands()
    try:
        e = einsum_of(network, optimize)
        y = e(*operands)
        cotangent = np.random.default_rng(1).standard_normal(np.shape(y))
        grads = e.vjp(cotangent, *operands)
        _, pullback = e.value_and_pullback(*operands)
    except (einsgrad.EinsumSpecError, MemoryError) as error:
        row.note = f"{type(error).__name__}: {error}"[:120]
        return row
    row.check = euler_error(operands, cotangent, y, grads)
    pulled = euler_error(operands, cotangent, y, pullback(cotangent))
    row.check = max(row.check, pulled)
    if row.check > 1e-8:
        row.note = f"WRONG: Euler's identity off by {row.check:.2g}"
        return row
    if repeats:
        steady = medians({"forward": lambda: e(*operands), "vjp": lambda: e.vjp(cotangent, *operands),
                          "pullback": lambda: pullback(cotangent)}, repeats=repeats, min_seconds=0.01)
        row.forward, row.vjp, row.pullback = steady["forward"], steady["vjp"], steady["pullback"]
    has_cotengra = importlib.util.find_spec("cotengra") is not None
    samples: dict[str, list[float]] = {"path": [], "cotengra": [], "compile": []}
    for r in range(rounds):  # alternate the three, each round starting with the next one
        order = ["path", "cotengra", "compile"][r % 3:] + ["path", "cotengra", "compile"][:r % 3]
        for name in order:
            if name == "path":
                samples[name].append(path_seconds(network, optimize))
            elif name == "cotengra" and has_cotengra:
                samples[name].append(cotengra_seconds(network, optimize))
            elif name == "compile":
                samples[name].append(compile_seconds(network, optimize))
    row.path = statistics.median(samples["path"])
    row.cotengra = statistics.median(samples["cotengra"]) if samples["cotengra"] else None
    row.compile = statistics.median(samples["compile"])
    for extra in MEASURES:
        row.extra.update(extra(network, row))
    return row


PEER_LIMIT = 200  # tensors: past this, jax's jit of one vjp takes minutes (18 s at 100-200)


def peer_vjps(network: Network, row: Measured) -> dict:
    """All gradients in one shot in jax and torch autograd against einsgrad's vjp, on one path:
    opt_einsum's for the row's optimizer, which einsgrad is given as its tree. jax: ``jax.vjp``
    of ``jnp.einsum(..., optimize=path)``, jit-compiled before timing; torch: autograd of
    ``opt_einsum.contract(..., backend="torch")`` along the path. The three are timed
    interleaved (:func:`benchmarks.timing.medians`), float64; the peers' gradients are checked
    against einsgrad's (themselves checked by Euler's identity) first. Networks of more than
    :data:`PEER_LIMIT` tensors, and rows without timings, are left out."""
    if row.forward is None or network.tensors > PEER_LIMIT:
        return {}
    figures, kernels = {}, {}
    operands = network.operands()
    path, _ = opt_einsum.contract_path(network.spec, *network.shapes, shapes=True, optimize=row.optimize)
    e = einsgrad.Einsum(network.spec, optimize=list(path))
    cotangent = np.random.default_rng(1).standard_normal(np.shape(e(*operands)))
    expected = e.vjp(cotangent, *operands)
    kernels["einsgrad"] = lambda: e.vjp(cotangent, *operands)
    for name, make in (("jax", _jax_vjp), ("torch", _torch_vjp)):
        if importlib.util.find_spec(name) is None:
            continue
        run, grads = make(network.spec, path, operands, cotangent)
        error = max(float(np.max(np.abs(g - x)) / max(np.max(np.abs(x)), 1e-300))
                    for g, x in zip(grads, expected))
        if error > 1e-8:
            row.note = (row.note + f" {name}'s gradients off by {error:.2g}").strip()
            continue
        kernels[name] = run
    steady = medians(kernels, repeats=5, min_seconds=0.01)
    figures["vjp with peers"] = steady.pop("einsgrad")
    figures.update((f"{name} vjp", seconds) for name, seconds in steady.items())
    return figures


def _jax_vjp(spec: str, path, operands, cotangent):
    """A timed call of jax's jit-compiled one-shot vjp, and its gradients as numpy arrays."""
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    xs, g = [jnp.asarray(x) for x in operands], jnp.asarray(cotangent)

    def forward(*arrays):
        return jnp.einsum(spec, *arrays, optimize=list(path))

    oneshot = jax.jit(lambda g, *a: jax.vjp(forward, *a)[1](g)).lower(g, *xs).compile()
    return (lambda: jax.block_until_ready(oneshot(g, *xs)),
            [np.asarray(d) for d in oneshot(g, *xs)])


def _torch_vjp(spec: str, path, operands, cotangent):
    """A timed call of torch autograd's one-shot vjp along the path, and its gradients."""
    import torch

    xs = [torch.tensor(x, requires_grad=True) for x in operands]
    g = torch.tensor(cotangent)

    def oneshot():
        return torch.autograd.grad(opt_einsum.contract(spec, *xs, optimize=list(path), backend="torch"), xs, g)

    return oneshot, [d.numpy() for d in oneshot()]


MEASURES.append(peer_vjps)
MEASURES.append(network_memory.peaks)


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else duration(seconds)


def _mib(figure) -> str:
    """A peak in MiB, or the first word of why it is missing."""
    if figure is None:
        return ""
    return f"{figure:.2f}" if isinstance(figure, float) else str(figure).split()[0][:9]


PEAK_COLUMNS = (("operands", "operands"), ("fwd peak", "peak forward"), ("vjp peak", "peak vjp"),
                ("torch fwd", "peak torch forward"), ("torch vjp", "peak torch vjp"))


def table(rows: list[Measured], optimize) -> str:
    lines = [f"# float64, optimize={optimize!r}; compile: a fresh Einsum's path, plans and source of forward, vjp, "
             "forward_saving and pullback, compiled; ratio: compile / opt_einsum's contract_path",
             f"{'network':<24} {'tensors':>7} {'path':>9} {'cotengra':>9} {'compile':>9} {'ratio':>7} "
             f"{'forward':>9} {'vjp':>9} {'pullback':>9} {'vjp/fwd':>7} {'pb/fwd':>7} "
             f"{'jax/vjp':>7} {'torch/vjp':>9} " + " ".join(f"{h:>9}" for h, _ in PEAK_COLUMNS) + "  note"]
    for r in rows:
        vjp = r.vjp / r.forward if r.vjp and r.forward else None
        pb = r.pullback / r.forward if r.pullback and r.forward else None
        peers = [r.extra[f"{name} vjp"] / r.extra["vjp with peers"] if f"{name} vjp" in r.extra else None
                 for name in ("jax", "torch")]
        lines.append(f"{r.name:<24} {r.tensors:>7} {_ms(r.path):>9} {_ms(r.cotengra):>9} {_ms(r.compile):>9} "
                     f"{ratio_text(r.ratio):>7} {_ms(r.forward):>9} {_ms(r.vjp):>9} {_ms(r.pullback):>9} "
                     f"{ratio_text(vjp):>7} {ratio_text(pb):>7} {ratio_text(peers[0]):>7} "
                     f"{ratio_text(peers[1]):>9} " + " ".join(f"{_mib(r.extra.get(k)):>9}" for _, k in PEAK_COLUMNS)
                     + f"  {r.note}")
    lines.append(f"# jax/vjp, torch/vjp: jax's and torch autograd's one-shot vjp over einsgrad's, timed interleaved "
                 f"on one path (opt_einsum's), networks of at most {PEER_LIMIT} tensors (peer_vjps)")
    lines.append("# MiB, a fresh process per figure: operands (float64; the gradients' size too); fwd peak, "
                 "vjp peak: the peak resident memory of einsgrad's forward, and of its one-shot vjp (forward and "
                 "all gradients, the gradients included), above the operands; torch fwd, torch vjp: the same for "
                 "torch autograd on the same path (the forward records the graph), networks of at most "
                 f"{network_memory.TORCH_LIMIT} tensors (benchmarks.network_memory)")
    lines += distributed_lines(rows)
    if LATER:
        lines.append("# not measured yet: " + "; ".join(f"{k} ({v})" for k, v in LATER.items()))
    return "\n".join(lines)


def distributed_lines(rows: list[Measured]) -> list[str]:
    """The distributed column (``--distributed``, :mod:`benchmarks.network_distributed`)."""
    done = [r for r in rows if isinstance(r.extra.get("cluster"), float)]
    skipped = [f"{r.name} ({r.extra['distributed']})" for r in rows if "distributed" in r.extra]
    if not done:
        return ["# distributed, not run: " + "; ".join(skipped)] if skipped else []
    lines = ["# distributed (--distributed): sliced to a quarter of the largest intermediate; forward and all "
             "gradients on a 2-worker LocalCluster (processes, loopback) against one process; largest task: "
             "the largest intermediate of one slice, elements",
             f"{'network':<24} {'limit':>9} {'slices':>7} {'tasks':>5} {'1 process':>9} {'cluster':>9} "
             f"{'ratio':>7} {'largest task':>12}"]
    for r in done:
        x = r.extra
        lines.append(f"{r.name:<24} {x['memory_limit']:>9,} {x['slices']:>7} {x['tasks']:>5} "
                     f"{_ms(x['one_process']):>9} {_ms(x['cluster']):>9} "
                     f"{ratio_text(x['cluster'] / x['one_process']):>7} {x['largest_task']:>12,}")
    return lines + (["# distributed, not run: " + "; ".join(skipped)] if skipped else [])


TARGET_RATIO = 3.0  # issue 14: compile at most 3x opt_einsum's contract_path at 1000 tensors


def plot(rows: list[Measured], path: str, title: str = "") -> None:
    """Two panels against the number of tensors, one line per family: the compile time and
    opt_einsum's path search (log-log), and their ratio with the target (:data:`TARGET_RATIO`).
    matplotlib is imported here only (the ``bench`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (times, ratios) = plt.subplots(1, 2, figsize=(11, 4.5))
    families = dict.fromkeys(r.family for r in rows)
    for i, family in enumerate(families):
        mine = sorted((r.tensors, r.compile, r.path) for r in rows if r.family == family and r.compile and r.path)
        if not mine:
            continue
        n, compiled, searched = zip(*mine)
        color = f"C{i}"
        times.plot(n, [c * 1e3 for c in compiled], "o-", color=color, label=f"{family}: einsgrad compile")
        times.plot(n, [s * 1e3 for s in searched], "x--", color=color, alpha=0.6, label=f"{family}: contract_path")
        ratios.plot(n, [c / s for c, s in zip(compiled, searched)], "o-", color=color, label=family)
    times.set(xscale="log", yscale="log", xlabel="tensors", ylabel="milliseconds (median)",
              title="forward + all gradients compiled, against the path search")
    times.legend(fontsize=6, ncol=2)
    ratios.axhline(TARGET_RATIO, color="k", linestyle=":", linewidth=1, label=f"target {TARGET_RATIO:g}x")
    ratios.set(xscale="log", yscale="log", xlabel="tensors", ylabel="compile / contract_path",
               title="ratio (the same optimizer)")
    low, high = ratios.get_ylim()
    ratios.set_yticks([t for t in (1, 2, 3, 5, 10, 20, 50, 100, 200, 500) if low <= t <= high])
    ratios.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda y, _: f"{y:g}x"))
    ratios.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ratios.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.networks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small networks, two rounds")
    parser.add_argument("--families", default="", help="comma-separated families (chain, mps, grid, ...)")
    parser.add_argument("--optimize", default="greedy", help="the path optimizer of every column")
    parser.add_argument("--rounds", type=int, help="compile rounds (default 5, quick 2)")
    parser.add_argument("--compile-only", action="store_true", help="no forward or gradient timings")
    parser.add_argument("--distributed", action="store_true",
                        help="also run each network's slices on a 2-worker dask LocalCluster (needs dask.distributed)")
    parser.add_argument("--json", metavar="PATH", help="write machine-readable results here")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG of compile times here (needs matplotlib)")
    parser.add_argument("--slicing", action="store_true", help="the slicing table against cotengra's SliceFinder")
    parser.add_argument("--default-malloc", action="store_true",
                        help="keep glibc's malloc settings (else the command runs under benchmarks.malloc.MALLOC's)")
    args = parser.parse_args(argv)
    wanted = {f.strip() for f in args.families.split(",") if f.strip()}
    networks = [n for n in suite(args.quick) if not wanted or n.family in wanted]
    if not networks:
        parser.error(f"no network of the families {args.families!r}")
    rounds = args.rounds or (2 if args.quick else 5)
    rows = []
    cluster = None
    if args.distributed:
        from benchmarks import network_distributed

        cluster, client = network_distributed.cluster()
        MEASURES.append(network_distributed.measure_with(client, rounds))
    try:
        for i, network in enumerate(networks, 1):
            print(f"[{i}/{len(networks)}] {network.name}", file=sys.stderr, flush=True)
            repeats = 0 if args.compile_only else 3 if args.quick else 5
            rows.append(measure(network, args.optimize, rounds, repeats))
    finally:
        if cluster is not None:
            MEASURES.pop()
            client.close()
            cluster.close()
    print(table(rows, args.optimize))
    print(f"# malloc: {malloc.settings_text()} (timings; the peaks run under glibc's defaults)")
    sliced = []
    if args.slicing:
        from benchmarks import network_slicing

        sliced = network_slicing.measure()
        print(network_slicing.table(sliced))
    if args.json:
        doc = {"machine": platform.processor() or platform.machine(), "optimize": args.optimize,
               "numpy": np.__version__, "opt_einsum": opt_einsum.__version__, "rounds": rounds,
               "malloc": malloc.settings(),
               "later": LATER, "rows": [asdict(r) | {"ratio": r.ratio} for r in rows],
               "slicing": [asdict(r) for r in sliced]}
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
    if args.plot:
        plot(rows, args.plot, f"optimize={args.optimize!r}, float64, medians of {rounds} interleaved rounds; "
                              f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    return 1 if any(r.note.startswith("WRONG") for r in rows) else 0


if __name__ == "__main__":
    malloc.reexecute_under("benchmarks.networks", sys.argv[1:])
    sys.exit(main())
