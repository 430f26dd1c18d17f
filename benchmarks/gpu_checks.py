"""Correctness on the device: the suite's own tests, run by pytest with ``--device``.

The selected test files run one pytest process each, in order, with ``--device`` set (see
``tests/devices.py``), so that the device-aware tests put their tensors there: the torch tests
(their CUDA cases, the autograd property test, gradcheck and gradgradcheck, torch.compile), the
bf16/f16 tests against a float32 reference, the torch oracle tests, the forward and vjp
property tests, the cupy tests and the jax tests (on jax's default device). Every file's
output goes to one log; its counts come from pytest's JUnit XML. A file that would start after
the deadline is skipped, one that runs past it is stopped; both are recorded.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent


class Check(NamedTuple):
    """One test file, what of it runs (a ``-k`` expression; None: all), what runs quick, and
    its hypothesis profile in a full run (quick runs take ``dev``)."""

    path: str
    select: str | None = None
    quick: str | None = None
    profile: str = "ci"


CHECKS = (
    Check("tests/test_torch.py", quick="only_needed or (gradcheck and linear)"),
    Check("tests/test_torch_dtypes.py", quick="low_precision and linear"),
    Check("tests/test_torch_oracle.py", quick="vjp"),
    Check("tests/test_properties.py", select="device or vjp_matches_finite", quick="device"),
    Check("tests/test_cupy.py", quick="curated"),
    # jax compiles every example's functions (seconds each on a GPU): ten examples per test
    Check("tests/test_jax.py", quick="an_integer_operand or grad_of_one_operand", profile="dev"),
)


def run(device: str, quick: bool, until: float, log_path: Path, progress=None) -> dict:
    """Runs the checks until ``until`` (``perf_counter``); per file: counts, failures, status."""
    if importlib.util.find_spec("pytest") is None:
        return {"status": "skipped", "note": "pytest is not installed here: no checks ran", "files": {}}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               XLA_PYTHON_CLIENT_PREALLOCATE="false")
    files = {}
    with open(log_path, "w") as log, tempfile.TemporaryDirectory() as scratch:
        for check in CHECKS:
            left = until - time.perf_counter()
            if left < 5:
                files[check.path] = {"status": "skipped", "note": "the phase's time was spent"}
                continue
            if progress:
                progress(f"checks: {check.path}")
            xml = Path(scratch) / "junit.xml"
            expression = check.quick if quick else check.select
            profile = "dev" if quick else check.profile
            arguments = ["-m", "pytest", check.path, "-q", "-rfEs", "-p", "no:cacheprovider", f"--device={device}",
                         *(["-k", expression] if expression else [])]
            log.write(f"\n$ EINSGRAD_HYPOTHESIS_PROFILE={profile} python {shlex.join(arguments)}\n")
            log.flush()
            start = time.perf_counter()
            try:
                done = subprocess.run([sys.executable, *arguments, f"--junitxml={xml}"], cwd=ROOT,
                                      env=dict(env, EINSGRAD_HYPOTHESIS_PROFILE=profile), stdout=log,
                                      stderr=subprocess.STDOUT, timeout=left)
            except subprocess.TimeoutExpired:
                files[check.path] = {"status": "timed out", "seconds": round(time.perf_counter() - start, 1)}
                log.write(f"\n# stopped after {left:.0f} s: the phase's time was spent\n")
                continue
            files[check.path] = {**_counts(xml, done.returncode), "hypothesis_profile": profile,
                                 "seconds": round(time.perf_counter() - start, 1)}
    return {"status": _overall(files), "files": files}


def _counts(xml: Path, returncode: int) -> dict:
    """Tests, failures, errors and skips of one pytest run, and the failing tests' names."""
    if not xml.exists():
        return {"status": "error", "note": f"pytest exited {returncode} without a report"}
    root = ET.parse(xml).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failing = [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
               if case.find("failure") is not None or case.find("error") is not None]
    status = "failed" if counts["failures"] or counts["errors"] or returncode not in (0, 5) else "passed"
    return {"status": status, **counts, "passed": counts["tests"] - counts["failures"] - counts["errors"]
            - counts["skipped"], "failing": failing}


def _overall(files: dict) -> str:
    statuses = {f["status"] for f in files.values()}
    for worst in ("failed", "error", "timed out", "skipped"):
        if worst in statuses:
            return worst
    return "passed"
