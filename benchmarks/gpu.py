"""einsgrad on a GPU, in one command: correctness, speed against the frameworks, training, scale.

Run: ``PYTHONPATH=. python -m benchmarks.gpu --device cuda [--budget SECONDS] [--out DIR]
[--phases checks,speed,training,scale] [--dtypes ...] [--cases SUBSTRING]``, or
``--device cpu --quick`` for the same code paths on small sizes (timed by ``perf_counter``).
Four phases, each given a share of the time budget (what an earlier phase leaves passes on):

1. checks: the suite's tests with ``--device`` (:mod:`benchmarks.gpu_checks`), logged to
   ``gpu_tests.log``;
2. speed: the peer suite on the device (:mod:`benchmarks.gpu_speed`), after measuring the GEMM
   peak per dtype and the copy bandwidth in the same run;
3. training: the five models in bfloat16 (:mod:`benchmarks.gpu_training`);
4. scale: a tensor network of tens of GiB against torch's peak memory (:mod:`benchmarks.gpu_scale`).

Work that would start past its phase's deadline is skipped and named. ``gpu.json`` and
``gpu.txt`` are written after every phase, so an interrupted run still leaves what it measured.
Under an outer time limit, allow about a minute more than the budget (start-up, and the last
row or test a deadline lets finish); ``--phases`` reruns only what needs it.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before anything imports torch
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # jax beside torch: no 75% grab

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict  # noqa: E402
from pathlib import Path  # noqa: E402

from benchmarks import gpu_report  # noqa: E402
from benchmarks.cases import suite  # noqa: E402
from benchmarks.gpu_device import DTYPES, Device, measure_peaks  # noqa: E402
from benchmarks.runner import message  # noqa: E402

PHASES = {"checks": 150, "speed": 170, "training": 45, "scale": 35}  # shares of the budget, seconds
QUICK_CASES = ("matmul", "chain", "trace", "tiny linear")
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def _progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class Budget:
    """The run's deadline, shared among phases: each phase gets its share of what is left."""

    def __init__(self, seconds: float, phases) -> None:
        self.end = time.perf_counter() + seconds
        self.left = {p: PHASES[p] for p in phases}

    def until(self, phase: str) -> float:
        """The deadline of ``phase`` (``perf_counter``), which then leaves the queue."""
        now = time.perf_counter()
        share = self.left.pop(phase)
        return now + max(self.end - now, 0.0) * share / (share + sum(self.left.values()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="torch device: cuda (default), cuda:1, cpu")
    parser.add_argument("--quick", action="store_true", help="small sizes, few rounds, a few cases and tests")
    parser.add_argument("--budget", type=float, help="seconds for the whole run (default 400, quick 240)")
    parser.add_argument("--phases", default=",".join(PHASES), help="comma-separated phases to run")
    parser.add_argument("--dtypes", default=",".join(DTYPES), help="speed phase dtypes, in order")
    parser.add_argument("--cases", default="", help="speed phase: only cases whose name or spec contains this")
    parser.add_argument("--repeats", type=int, help="timed rounds per cell (default 7, quick 3)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder of gpu.json, gpu.txt, gpu_tests.log")
    args = parser.parse_args(argv)
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if bad := [p for p in phases if p not in PHASES]:
        parser.error(f"unknown phase(s) {', '.join(bad)}; known: {', '.join(PHASES)}")
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if bad := [d for d in dtypes if d not in DTYPES]:
        parser.error(f"unknown dtype(s) {', '.join(bad)}; known: {', '.join(DTYPES)}")
    repeats = args.repeats or (3 if args.quick else 7)
    seconds = args.budget if args.budget is not None else 240.0 if args.quick else 400.0

    start = time.perf_counter()
    budget = Budget(seconds, phases)
    device = Device(args.device)
    if args.device != "cpu" and not device.cuda:
        parser.error(f"--device {args.device}: only cuda devices and cpu are supported")
    import torch

    if device.cuda and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch sees no CUDA device here")
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"settings": {"device": args.device, "quick": args.quick, "budget_seconds": seconds, "repeats": repeats,
                        "phases": phases, "dtypes": dtypes},
           "device": device.describe(), "phases": {}}
    runners = {"checks": lambda until: _checks(doc, device, args, until),
               "speed": lambda until: _speed(doc, device, args, dtypes, repeats, until),
               "training": lambda until: _training(doc, device, args, repeats, until),
               "scale": lambda until: _scale(doc, device, args, until)}
    for phase in phases:
        until = budget.until(phase)
        began = time.perf_counter()
        _progress(f"phase {phase}: {until - began:.0f} s")
        try:
            runners[phase](until)
            status, note = "done", ""
        except Exception as e:  # noqa: BLE001 - one phase's failure leaves the others' figures
            status, note = "error", message(e)
            _progress(f"phase {phase} failed: {note}")
        doc["phases"][phase] = {"status": status, "seconds": round(time.perf_counter() - began, 1), "note": note}
        doc["wall_seconds"] = round(time.perf_counter() - start, 1)
        _write(doc, args.out)
    print(gpu_report.text(doc), end="")
    return 0


def _checks(doc: dict, device: Device, args, until: float) -> None:
    from benchmarks import gpu_checks

    doc["correctness"] = gpu_checks.run(args.device, args.quick, until, args.out / "gpu_tests.log", _progress)


def _speed(doc: dict, device: Device, args, dtypes, repeats: int, until: float) -> None:
    import jax

    from benchmarks import gpu_speed

    jax.config.update("jax_enable_x64", True)  # float64 rows; other dtypes are given explicitly
    _progress("speed: GEMM peaks and copy bandwidth")
    peaks = measure_peaks(device, dtypes, args.quick)
    doc["peaks"] = {"gemm": dict(peaks.gemm), "copy": peaks.copy, "gemm_size": peaks.gemm_size,
                    "copy_bytes": peaks.copy_bytes}
    cases = [c for c in suite(args.quick) if (not args.quick or c.name in QUICK_CASES)
             and (args.cases in c.name or args.cases in c.spec)]
    rows, skipped = gpu_speed.run(gpu_speed.gpu_cases(cases, device, args.quick), dtypes, device, peaks,
                                  repeats, until, _progress)
    doc["speed"] = {"rows": [asdict(r) for r in rows], "skipped": skipped}


def _training(doc: dict, device: Device, args, repeats: int, until: float) -> None:
    from benchmarks import gpu_training

    pairs, skipped = gpu_training.run(device, args.quick, max(repeats, 5) if not args.quick else repeats, until,
                                      _progress)
    doc["training"] = {"dtype": gpu_training.DTYPE, "pairs": [{**asdict(p), "ratio": p.ratio} for p in pairs],
                       "skipped": skipped}


def _scale(doc: dict, device: Device, args, until: float) -> None:
    from benchmarks import gpu_scale

    doc["scale"] = gpu_scale.run(device, args.quick, until, _progress)


def _write(doc: dict, out: Path) -> None:
    """gpu.json and gpu.txt, from what has been measured so far."""
    doc["targets"] = gpu_report.targets(doc)
    (out / "gpu.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    (out / "gpu.txt").write_text(gpu_report.text(doc))


if __name__ == "__main__":
    sys.exit(main())
