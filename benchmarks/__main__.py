"""einsgrad against numpy, opt_einsum, torch, jax and autograd, and against this machine's limit.

Run: ``python -m benchmarks [--quick] [--cases SUBSTRING] [--systems a,b] [--dtypes float64,float32]
[--repeats N] [--json PATH] [--plot PATH]``. Per case and dtype, every system's forward, one-shot
gradients and pullback (after a stored forward) are checked against a float64 reference, then
timed interleaved in one process; the table shows each time with its ratio to einsgrad, and
einsgrad's ratio to the limit (the case's FLOPs over the measured GEMM peak, or its bytes over
the measured copy bandwidth, whichever takes longer).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before anything imports torch

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from benchmarks import limits, report, runner, targets  # noqa: E402
from benchmarks.cases import suite  # noqa: E402
from benchmarks.systems import SYSTEMS, versions  # noqa: E402


def _progress(done: int, total: int, label: str) -> None:
    """A progress bar on stderr (a line per row where stderr is not a terminal)."""
    bar = "#" * (20 * done // max(total, 1))
    text = f"[{bar:<20}] {done}/{total} {label}"
    if sys.stderr.isatty():
        print(f"\r{text:<70}", end="\n" if done == total else "", file=sys.stderr, flush=True)
    else:
        print(text, file=sys.stderr, flush=True)


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller shapes and peak measurements")
    parser.add_argument("--repeats", type=int, help="timed rounds per cell, at least 5 (default 7, quick 5)")
    parser.add_argument("--dtypes", default="float64,float32", help="comma-separated dtypes")
    parser.add_argument("--cases", default="", help="only cases whose name or spec contains this")
    parser.add_argument("--systems", default=",".join(s.name for s in SYSTEMS),
                        help="comma-separated systems (einsgrad, the baseline, is always run)")
    parser.add_argument("--json", metavar="PATH", help="write machine-readable results here")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG of times over the limit here")
    args = parser.parse_args(argv)

    known = {s.name: s for s in SYSTEMS}
    wanted = _names(args.systems)
    if unknown := [n for n in wanted if n not in known]:
        parser.error(f"unknown system(s) {', '.join(unknown)}; known: {', '.join(known)}")
    systems = [s for s in SYSTEMS if s.name in wanted or s.name == report.BASE]
    cases = [c for c in suite(args.quick) if args.cases in c.name or args.cases in c.spec]
    if not cases:
        parser.error(f"no case matches {args.cases!r}")
    dtypes = _names(args.dtypes)
    if bad := [d for d in dtypes if d not in runner.TOLERANCE]:
        parser.error(f"unsupported dtype(s) {', '.join(bad)}; the suite runs {', '.join(runner.TOLERANCE)}")
    repeats = args.repeats or (5 if args.quick else 7)
    if repeats < 5:
        parser.error("--repeats must be at least 5: each cell is a median")

    start = time.perf_counter()
    print("measuring GEMM peak and copy bandwidth", file=sys.stderr, flush=True)
    peaks = limits.measure(list(runner.TOLERANCE), quick=args.quick)  # both peaks, always
    settings = runner.Settings(repeats, round_seconds=0.005 if args.quick else 0.02,
                               max_call_seconds=0.02 if args.quick else 0.5)
    results = runner.run(cases, dtypes, systems, peaks, settings, progress=_progress)
    print(report.table(results))
    print()
    print(targets.report(report.document(results, limits.machine(), versions())))
    print(f"# wall time {time.perf_counter() - start:.1f} s")
    if args.json:
        report.write_json(args.json, results, limits.machine(), versions())
    if args.plot:
        report.plot(args.plot, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
