"""Runs the suite: per case and dtype, checks every system against a float64 reference, then
times all of them interleaved, again when other processes loaded the machine."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

import einsgrad
from benchmarks import limits
from benchmarks.cases import Case, operands
from benchmarks.systems import Problem, System, core, grad_spec, numpy_gradients, opt_einsum_path
from benchmarks.timing import medians

MODES = ("forward", "oneshot", "pullback")
TOLERANCE = {"float64": 1e-8, "float32": 1e-3}  # largest error relative to the largest value


@dataclass(frozen=True)
class Cell:
    """One system's result for one mode: ``status`` is ok, error, wrong, skipped or n/a."""

    status: str
    seconds: float | None = None
    note: str = ""


@dataclass(frozen=True)
class Row:
    """One case in one dtype.

    Attributes:
        flops: per mode, of einsgrad's path (forward) and reverse mode over it (oneshot: costs.vjp,
            pullback: costs.pullback).
        bytes: per mode, what must be read and written.
        limit: per mode, ``(seconds, "flops" | "bytes")``; None for an overhead case.
        cells: system name -> mode -> cell.
        load: the share of the CPUs other processes used while the kept timing ran.
        loads: that share for every attempt.
    """

    case: Case
    dtype: str
    flops: Mapping[str, int]
    bytes: Mapping[str, int]
    limit: Mapping[str, tuple[float, str]] | None
    cells: Mapping[str, Mapping[str, Cell]]
    load: float | None
    loads: tuple[float | None, ...]


@dataclass(frozen=True)
class Settings:
    """How to time.

    Attributes:
        repeats: rounds of the interleaved timing; each cell is a median over them.
        round_seconds: each round of a function loops at least this long (a call of a tiny
            case takes microseconds: its time is the per-call overhead).
        max_load: a row timed while other processes used more of the machine is re-run...
        retries: ...up to this many more times; the least loaded attempt is kept.
        max_call_seconds: cells estimated to spend longer per call in numpy's unoptimized einsum
            loops are skipped (all of a system whose forward would).
    """

    repeats: int = 7
    round_seconds: float = 0.02
    max_load: float = 0.15
    retries: int = 2
    max_call_seconds: float = 0.25


@dataclass(frozen=True)
class Results:
    """Everything a run measured; ``skipped`` maps a system left out to the reason."""

    rows: tuple[Row, ...]
    systems: tuple[str, ...]
    skipped: Mapping[str, str]
    peaks: limits.Peaks
    settings: Settings


def run(cases: Sequence[Case], dtypes: Sequence[str], systems: Sequence[System],
        peaks: limits.Peaks, settings: Settings = Settings(),
        progress: Callable[[int, int, str], None] | None = None) -> Results:
    """Runs every case in every dtype with every installed system; ``progress`` is called
    with (rows done, rows, label) before each row and at the end."""
    present = [s for s in systems if s.installed()]
    skipped = {s.name: "not installed" for s in systems if s not in present}
    jobs = list(itertools.product(cases, dtypes))
    rows = []
    for done, (case, dtype) in enumerate(jobs):
        if progress:
            progress(done, len(jobs), f"{case.name} {dtype}")
        rows.append(_row(case, np.dtype(dtype).name, present, peaks, settings))
    if progress:
        progress(len(jobs), len(jobs), "done")
    return Results(tuple(rows), tuple(s.name for s in systems), skipped, peaks, settings)


def _row(case: Case, dtype: str, systems, peaks, settings: Settings) -> Row:
    problem, reference = _problem(case, dtype)
    flops, nbytes, limit = _work(case, dtype, reference["forward"][0].shape, peaks)
    cells, timed = {}, {}
    for system in systems:
        checked = _checked(system, problem, reference, TOLERANCE.get(dtype, 1e-3),
                           _loop_seconds(system, problem, peaks), settings.max_call_seconds)
        cells[system.name] = {mode: cell for mode, (cell, _) in checked.items()}
        timed.update({(system.name, m): fn for m, (cell, fn) in checked.items() if cell.status == "ok"})
    loads, times, errors = _timed(timed, settings)
    for (name, mode), seconds in times.items():
        error = errors.get((name, mode))
        cells[name][mode] = Cell("error", note=message(error)) if error else Cell("ok", seconds)
    return Row(case, dtype, flops, nbytes, limit, cells, min(loads, key=lambda x: x or 0.0), loads)


def _loop_seconds(system: System, p: Problem, peaks) -> dict:
    """Per mode, the estimated seconds a call spends in numpy's unoptimized einsum loops."""
    if system.loops is None:
        return {}
    def seconds(spec, shapes):
        return limits.naive_seconds(system.loops(spec, shapes), len(shapes), peaks)

    shapes = [o.shape for o in p.operands]
    forward = seconds(p.spec, shapes)
    gradients = sum(seconds(core(grad_spec(p.spec, k)), [p.cotangent.shape] + shapes[:k] + shapes[k + 1:])
                    for k in range(len(shapes)))
    return {"forward": forward, "oneshot": forward + gradients, "pullback": gradients}


def _work(case: Case, dtype: str, out_shape, peaks) -> tuple[dict, dict, dict | None]:
    """FLOPs and bytes per mode, and the limit per mode (None for an overhead case)."""
    costs = einsgrad.compile(case.spec).costs(*case.shapes)
    flops = {"forward": costs.forward, "oneshot": costs.vjp, "pullback": costs.pullback}
    traffic = limits.traffic(case.spec, case.shapes, out_shape, np.dtype(dtype).itemsize)
    nbytes = {"forward": traffic.forward, "oneshot": traffic.gradients, "pullback": traffic.gradients}
    limit = None if case.overhead else {m: limits.limit(flops[m], nbytes[m], peaks, dtype) for m in MODES}
    return flops, nbytes, limit


def _timed(functions: dict, settings: Settings) -> tuple[tuple, dict, dict]:
    """Loads of the attempts, and the medians and errors of the least loaded attempt."""
    attempts = []
    for _ in range(1 + settings.retries):
        errors: dict = {}
        start = limits.cpu_clock()
        times = medians({key: _guarded(fn, errors, key) for key, fn in functions.items()},
                        settings.repeats, min_seconds=settings.round_seconds) if functions else {}
        attempts.append((limits.others_load(start, limits.cpu_clock()), times, errors))
        if attempts[-1][0] is None or attempts[-1][0] <= settings.max_load:
            break
    _, times, errors = min(attempts, key=lambda a: a[0] or 0.0)
    return tuple(a[0] for a in attempts), times, errors


def _problem(case: Case, dtype: str) -> tuple[Problem, dict]:
    """The operands and cotangent in ``dtype``, and the float64 reference values of the forward
    and of the gradients (one ``numpy.einsum`` per gradient)."""
    ops = operands(case, dtype)
    wide = tuple(o.astype(np.float64) for o in ops)
    y = np.asarray(np.einsum(case.spec, *wide, optimize=opt_einsum_path(case.spec, case.shapes)))
    g = np.asarray(np.random.default_rng(1).standard_normal(y.shape), dtype=dtype)
    gradients = numpy_gradients(Problem(case.spec, wide, g.astype(np.float64)), "opt_einsum").oneshot()
    return Problem(case.spec, ops, g), {"forward": [y], "gradients": gradients}


def _checked(system, problem, reference, tolerance, estimate, max_call) -> dict:
    """mode -> (cell, kernel): a cell left "ok" has passed the check and awaits timing."""
    if estimate.get("forward", 0.0) > max_call:  # preparing a tape system runs the forward
        note = f"einsum loops, est. {estimate['forward']:.3g} s per forward"
        return {m: (Cell("skipped", note=note), None) for m in MODES}
    try:
        kernels = system.prepare(problem)
    except Exception as e:  # noqa: BLE001 - a failing system fails its own cells only
        return {m: (Cell("error", note=message(e)), None) for m in MODES}
    cells = {}
    for mode in MODES:
        fn = getattr(kernels, mode)
        if fn is None:
            cell = Cell("n/a")
        elif estimate.get(mode, 0.0) > max_call:
            cell = Cell("skipped", note=f"einsum loops, est. {estimate[mode]:.3g} s per call")
        else:
            cell = _check(fn, reference["forward" if mode == "forward" else "gradients"], tolerance)
        cells[mode] = (cell, fn)
    return cells


def _check(fn, want: list[np.ndarray], tolerance: float) -> Cell:
    """Runs ``fn`` once: ok if its values match ``want``, else wrong (or error)."""
    try:
        got = fn()
        got = [got] if len(want) == 1 and not isinstance(got, (list, tuple)) else list(got)
        got = [np.asarray(x.detach().numpy() if hasattr(x, "detach") else x) for x in got]
    except Exception as e:  # noqa: BLE001
        return Cell("error", note=message(e))
    if len(got) != len(want):
        return Cell("wrong", note=f"{len(got)} results, expected {len(want)}")
    for k, (x, w) in enumerate(zip(got, want)):
        if x.shape != w.shape:
            return Cell("wrong", note=f"result {k} has shape {x.shape}, expected {w.shape}")
        error = np.abs(x.astype(np.float64) - w).max(initial=0) / max(np.abs(w).max(initial=0), 1e-300)
        if not error <= tolerance:
            return Cell("wrong", note=f"result {k} off by {error:.2g} relative to its largest value")
    return Cell("ok")


def _guarded(fn, errors: dict, key):
    """``fn`` that records its first exception in ``errors[key]`` and is a no-op after it."""
    def call():
        if key not in errors:
            try:
                fn()
            except Exception as e:  # noqa: BLE001
                errors[key] = e
    return call


def message(e: BaseException) -> str:
    """An exception as one short line: its type and the first line of its text."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:200]
