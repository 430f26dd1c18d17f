"""What exponent stripping costs: the stripped forward against the plain forward, and
``log_grad`` (the stripped value and every gradient of its logarithm) against
``value_and_pullback`` and its pullback (the plain value and every gradient), in numpy, torch,
jax and ``jax.jit``, float32.

Run: ``python -m benchmarks.stripping [--quick] [--rounds N] [--libraries numpy,torch,jax,jit]
[--json PATH]``. The networks are :mod:`benchmarks.network_cases`' (chains, MPS norms, grids,
trees, circuits), scaled so that the plain contraction does not overflow, so both sides compute
the same numbers: each row first checks that ``log_grad``'s gradients equal the plain ones over
the plain value (``check``, the largest error relative to the largest gradient). Both sides of
a ratio are timed interleaved, round by round (:func:`benchmarks.timing.medians`); a chain has
no scalar output, so it has the forward alone. ``jit`` runs on networks of up to
:data:`JIT_TENSORS` tensors: XLA compiles every step's rescaling (a reduction and a scaled
copy) as fusions of their own, and a 200-tensor MPS norm's ``log_grad`` did not compile in 10
minutes on a shared 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from dataclasses import asdict, dataclass

import numpy as np

import einsgrad
from benchmarks.network_cases import Network, chain, circuit, grid, mps_norm, tree
from benchmarks.report import duration, ratio_text
from benchmarks.timing import medians

LIBRARIES = ("numpy", "torch", "jax", "jit")
JIT_TENSORS = 64


@dataclass
class Row:
    """One network in one library, in seconds (None: not measured)."""

    network: str
    tensors: int
    library: str
    forward: float
    stripped: float
    gradients: float | None = None  # value_and_pullback, then its pullback from 1
    log_grad: float | None = None
    check: float | None = None

    @property
    def stripped_ratio(self) -> float:
        return self.stripped / self.forward

    @property
    def log_grad_ratio(self) -> float | None:
        return None if self.log_grad is None else self.log_grad / self.gradients


def networks(quick: bool = False, only: str | None = None) -> list[Network]:
    """The networks measured (``only``: those whose name starts so)."""
    found = _networks(quick)
    return [n for n in found if only is None or n.name.startswith(only)]


def _networks(quick: bool) -> list[Network]:
    if quick:
        return [chain(6, 4), mps_norm(4, 4)]
    return [chain(51, 64), mps_norm(20, 32), mps_norm(100, 16), grid(4, 4, 4), tree(63), circuit(10, 8)]


def functions(network: Network, library: str) -> tuple[dict, float | None]:
    """The functions timed for ``network`` in ``library`` (each returns when its result is
    computed), and the check of ``log_grad`` against the plain gradients."""
    e = einsgrad.compile(network.spec)
    arrays = network.operands("float32")
    ops, done, wrap = _library(library, arrays)
    fns = {"forward": wrap(lambda *xs: e(*xs)), "stripped": wrap(lambda *xs: e.stripped(*xs))}
    if network.output:
        return {name: (lambda f=f: done(f(*ops))) for name, f in fns.items()}, None

    def gradients(*xs):
        y, pullback = e.value_and_pullback(*xs)
        return y, pullback(_one(library, xs[0]))

    fns["gradients"] = wrap(gradients)
    fns["log_grad"] = wrap(lambda *xs: e.log_grad(*xs))
    y, plain = fns["gradients"](*ops)
    _, found = fns["log_grad"](*ops)
    expected = [np.asarray(_host(d), np.float64) / float(_host(y)) for d in plain]
    scale = max(float(np.max(np.abs(r))) for r in expected)
    check = max(float(np.max(np.abs(np.asarray(_host(d), np.float64) - r))) for d, r in zip(found, expected)) / scale
    return {name: (lambda f=f: done(f(*ops))) for name, f in fns.items()}, check


def measure(network: Network, library: str, rounds: int = 7) -> Row:
    fns, check = functions(network, library)
    times = medians(fns, repeats=rounds, min_seconds=0.02)
    return Row(network.name, network.tensors, library, times["forward"], times["stripped"],
               times.get("gradients"), times.get("log_grad"), check)


def table(rows: list[Row]) -> str:
    lines = ["network                tensors  library  forward   stripped  ratio  gradients  log_grad  ratio  check",
             "-" * 104]
    for r in rows:
        grads = "" if r.gradients is None else (f"{duration(r.gradients):>9}  {duration(r.log_grad):>8}  "
                                                f"{ratio_text(r.log_grad_ratio):>5}  {r.check:.1e}")
        lines.append(f"{r.network:<22} {r.tensors:>7}  {r.library:<7}  {duration(r.forward):>7}  "
                     f"{duration(r.stripped):>8}  {ratio_text(r.stripped_ratio):>5}  {grads}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stripping", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two tiny networks (a test)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--libraries", default=",".join(LIBRARIES))
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--only", help="the networks whose name starts with this (e.g. 'grid')")
    args = parser.parse_args(argv)
    libraries = [name.strip() for name in args.libraries.split(",") if name.strip()]
    unknown = sorted(set(libraries) - set(LIBRARIES))
    if unknown:
        parser.error(f"unknown libraries {unknown}: choose from {', '.join(LIBRARIES)}")
    rows = []
    for network in networks(args.quick, args.only):
        for library in libraries:
            if library == "jit" and network.tensors > JIT_TENSORS:
                continue
            rows.append(measure(network, library, args.rounds))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": platform.platform(), "python": sys.version.split()[0],
                       "rows": [asdict(r) | {"stripped_ratio": r.stripped_ratio, "log_grad_ratio": r.log_grad_ratio}
                                for r in rows]}, f, indent=1)
    return 0


# -- libraries -------------------------------------------------------------------------------


def _library(name: str, arrays):
    """The operands in library ``name``, a function that waits for a result, and how each
    timed function is wrapped (``jax.jit`` for ``jit``)."""
    if name == "numpy":
        return arrays, lambda result: result, lambda f: f
    if name == "torch":
        import torch

        return [torch.from_numpy(a) for a in arrays], lambda result: result, lambda f: f
    import jax
    import jax.numpy as jnp

    ops = [jnp.asarray(a) for a in arrays]
    return ops, jax.block_until_ready, (jax.jit if name == "jit" else (lambda f: f))


def _one(library: str, like):
    if library == "numpy":
        return np.ones((), like.dtype)
    if library == "torch":
        import torch

        return torch.ones((), dtype=like.dtype)
    import jax.numpy as jnp

    return jnp.ones((), like.dtype)


def _host(x) -> np.ndarray:
    return x.detach().numpy() if hasattr(x, "detach") else np.asarray(x)


if __name__ == "__main__":
    sys.exit(main())
