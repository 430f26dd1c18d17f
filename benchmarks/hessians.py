"""Symbolic Hessians against autodiff: Laue, Mitterreiter and Giesen's three cases.

Run: ``python -m benchmarks.hessians [--quick] [--repeats N] [--cases SUBSTRING] [--json PATH]``.
For the quadratic form ``xᵀAx`` (n = 1000), logistic regression (2000 × 300) and matrix
factorization ``‖T − U Vᵀ‖²`` by ``U`` (200 × 150, k = 10), einsgrad's Hessian program
(``program(text).hessian(wrt)``, evaluated) is timed against ``jax.jit(jax.hessian(f))`` (after
its compile) and ``torch.func.hessian``, and against the formula written by hand in numpy (the
floor: ``A + Aᵀ``, ``Xᵀ diag(s) X``, ``2 δ ⊗ VᵀV``), all in float64. einsgrad's derivation and
its first call (planning and compiling its einsums) are reported apart from its evaluation.
Every system's Hessian is checked against einsgrad's before anything is timed (a wrong one is
reported, not timed); then all are timed in interleaved rounds in one process and each time is
the median. The target: einsgrad at least :data:`TARGET` times faster than the faster of jax
and torch.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before anything imports torch

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402

import einsgrad  # noqa: E402
from benchmarks.report import duration, ratio_text  # noqa: E402
from benchmarks.timing import medians  # noqa: E402

TARGET = 10.0
"""einsgrad's Hessian should be at least this many times faster than the faster autodiff."""

TOLERANCE = 1e-9
"""The largest difference between two Hessians, relative to the largest entry, that agrees."""

AUTODIFF = ("jax", "torch")


@dataclass(frozen=True)
class Case:
    """A scalar function, its Hessian by ``wrt`` in each system.

    Attributes:
        name: the case as the table shows it.
        text: the einsgrad program.
        wrt: the tensor the Hessian is by.
        sizes: the sizes of the paper's case, and ``quick`` ones for a test run.
        inputs: sizes, a random generator -> the arrays, by the program's names.
        jax, torch: the function, in that library's numpy, of the arrays by name (``wrt`` first).
        by_hand: the Hessian's formula written in numpy, of the arrays by name.
    """

    name: str
    text: str
    wrt: str
    sizes: dict
    quick: dict
    inputs: Callable[[dict, np.random.Generator], dict]
    jax: Callable
    torch: Callable
    by_hand: Callable


def _quadratic(s, rng):
    return {"x": rng.standard_normal(s["n"]), "A": rng.standard_normal((s["n"], s["n"]))}


def _logistic(s, rng):
    X = rng.standard_normal((s["m"], s["n"]))
    return {"w": rng.standard_normal(s["n"]) / np.sqrt(s["n"]), "X": X,
            "y": (rng.standard_normal(s["m"]) > 0).astype(float)}


def _factorization(s, rng):
    return {"U": rng.standard_normal((s["m"], s["k"])), "T": rng.standard_normal((s["m"], s["n"])),
            "V": rng.standard_normal((s["n"], s["k"]))}


def _logistic_by_hand(w, X, y):
    s = 1 / (1 + np.exp(-(X @ w)))  # sigmoid(X w)
    return X.T @ (X * (s * (1 - s))[:, None])


def _factorization_by_hand(U, T, V):
    H = np.zeros(U.shape + U.shape)
    np.einsum("iaib->iab", H)[...] = 2 * (V.T @ V)
    return H


def _torch_softplus(u):
    import torch
    return torch.nn.functional.softplus(u, threshold=1e9)  # no linear piece: softplus everywhere


CASES = (
    Case("quadratic form xᵀAx", "f = x[i] * A[i,j] * x[j]", "x", {"n": 1000}, {"n": 40}, _quadratic,
         jax=lambda x, A: x @ A @ x, torch=lambda x, A: x @ A @ x, by_hand=lambda x, A: A + A.T),
    Case("logistic regression", "z[i] = X[i,k] * w[k]\nL = softplus(z[i]) - y[i] * z[i]", "w",
         {"m": 2000, "n": 300}, {"m": 50, "n": 7}, _logistic,
         jax=lambda w, X, y: _jax().numpy.sum(_jax().nn.softplus(X @ w) - y * (X @ w)),
         torch=lambda w, X, y: (_torch_softplus(X @ w) - y * (X @ w)).sum(), by_hand=_logistic_by_hand),
    Case("matrix factorization ‖T − UVᵀ‖² by U", "R[i,j] = T[i,j] - U[i,a] * V[j,a]\nL = R[i,j]^2", "U",
         {"m": 200, "n": 150, "k": 10}, {"m": 9, "n": 7, "k": 3}, _factorization,
         jax=lambda U, T, V: _jax().numpy.sum((T - U @ V.T) ** 2),
         torch=lambda U, T, V: ((T - U @ V.T) ** 2).sum(), by_hand=_factorization_by_hand),
)


def _jax():
    import jax
    jax.config.update("jax_enable_x64", True)
    return jax


@dataclass(frozen=True)
class Result:
    """One case measured.

    Attributes:
        case, sizes: which, at which sizes.
        derive: seconds to parse the program and derive its Hessian (the first time).
        first_call: seconds of the Hessian program's first call (plans and compiles its einsums).
        program: the Hessian program, as it prints.
        seconds: each system's median seconds per Hessian (``einsgrad``, ``jax``, ``torch``,
            ``by hand``); None where it is not installed, failed or disagreed.
        compile: seconds of jax's first (compiling) call.
        notes: why a system has no time.
        difference: each system's largest difference from einsgrad, relative to the largest entry.
    """

    case: str
    sizes: dict
    derive: float
    first_call: float
    program: str
    seconds: dict
    compile: float | None
    notes: dict
    difference: dict

    @property
    def speedup(self) -> float | None:
        """The faster autodiff's time over einsgrad's."""
        times = [self.seconds.get(s) for s in AUTODIFF if self.seconds.get(s)]
        mine = self.seconds.get("einsgrad")
        return min(times) / mine if times and mine else None


def _systems(case: Case, arrays: dict) -> tuple[dict, dict, float | None]:
    """Each autodiff system's Hessian as a function of no arguments (its inputs on its side),
    and why a system is missing; jax's compile seconds."""
    names = [case.wrt] + [n for n in arrays if n != case.wrt]
    calls, notes, compiled = {}, {}, None
    try:
        jax = _jax()
        args = [jax.numpy.asarray(arrays[n]) for n in names]
        hessian = jax.jit(jax.hessian(case.jax))
        start = time.perf_counter()
        hessian(*args).block_until_ready()
        compiled = time.perf_counter() - start
        calls["jax"] = lambda: hessian(*args).block_until_ready()
    except ImportError as error:
        notes["jax"] = f"not installed ({error.name})"
    try:
        import torch
        from torch.func import hessian as torch_hessian
        first, *rest = [torch.from_numpy(arrays[n]) for n in names]
        calls["torch"] = lambda: torch_hessian(lambda u: case.torch(u, *rest))(first)
    except ImportError as error:
        notes["torch"] = f"not installed ({error.name})"
    calls["by hand"] = lambda: case.by_hand(*(arrays[n] for n in names))
    return calls, notes, compiled


def _difference(mine: np.ndarray, theirs) -> float:
    theirs = np.asarray(theirs)
    if theirs.shape != mine.shape:
        return float("inf")
    return float(np.max(np.abs(mine - theirs)) / max(np.max(np.abs(mine)), 1e-300))


def measure(case: Case, quick: bool, repeats: int) -> Result:
    sizes = case.quick if quick else case.sizes
    arrays = case.inputs(sizes, np.random.default_rng(0))
    start = time.perf_counter()
    H = einsgrad.program(case.text).hessian(case.wrt)
    derive = time.perf_counter() - start
    start = time.perf_counter()
    mine = H(**arrays)
    first_call = time.perf_counter() - start
    calls, notes, compiled = _systems(case, arrays)
    timed = {"einsgrad": lambda: H(**arrays)}
    difference = {}
    for name, call in calls.items():
        try:
            difference[name] = _difference(mine, call())
        except Exception as error:  # a system that fails is reported, and the others still run
            notes[name] = f"{type(error).__name__}: {error}"[:120]
            continue
        if difference[name] <= TOLERANCE:
            timed[name] = call
        else:
            notes[name] = f"disagrees with einsgrad by {difference[name]:.1e} (relative)"
    seconds = medians(timed, repeats=repeats, min_seconds=0.0 if quick else 0.05)
    return Result(case.name, sizes, derive, first_call, str(H), seconds, compiled, notes, difference)


def table(results, repeats: int, quick: bool) -> str:
    head = ("| case | sizes | einsgrad derive | einsgrad first call | einsgrad | jax.jit(jax.hessian) "
            "(compile) | torch.func.hessian | by hand (numpy) | faster autodiff / einsgrad |")
    lines = [f"Hessians, float64, medians of {repeats} interleaved rounds{' (quick sizes)' if quick else ''}; "
             f"target: einsgrad >= {TARGET:g}x faster than the faster of jax and torch", "",
             head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        def cell(name):
            s = r.seconds.get(name)
            return duration(s) if s else r.notes.get(name, "")
        jax = cell("jax") + (f" ({duration(r.compile)})" if r.compile and r.seconds.get("jax") else "")
        met = "" if r.speedup is None else (" (met)" if r.speedup >= TARGET else " (not met)")
        sizes = ", ".join(f"{k}={v}" for k, v in r.sizes.items())
        lines.append(f"| {r.case} | {sizes} | {duration(r.derive)} | {duration(r.first_call)} | {cell('einsgrad')} "
                     f"| {jax} | {cell('torch')} | {cell('by hand')} | {ratio_text(r.speedup)}{met} |")
    lines.append("")
    for r in results:
        lines.append(f"{r.case}: the Hessian program\n" + "\n".join("    " + line for line in r.program.splitlines()))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hessians", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few rounds")
    parser.add_argument("--repeats", type=int, help="interleaved rounds, at least 3 (default 9, quick 3)")
    parser.add_argument("--cases", default="", help="only cases whose name contains this")
    parser.add_argument("--json", metavar="PATH", help="write the results here")
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 9)
    if repeats < 3:
        parser.error("--repeats must be at least 3: each time is a median")
    cases = [c for c in CASES if args.cases in c.name]
    if not cases:
        parser.error(f"no case matches {args.cases!r}; the cases are {', '.join(c.name for c in CASES)}")
    start = time.perf_counter()
    results = [measure(c, args.quick, repeats) for c in cases]
    print(table(results, repeats, args.quick))
    print(f"# wall time {time.perf_counter() - start:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{**asdict(r), "speedup": r.speedup} for r in results], f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
