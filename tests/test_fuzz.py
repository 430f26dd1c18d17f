"""The fuzzer of ``tests/fuzz.py`` in the suite: thousands of specs, programs and command
lines, each a result or an EinsumSpecError, within a second, never a traceback."""

from __future__ import annotations

import random

import pytest

import fuzz

COUNT = 2000  # specs; half as many programs and command lines


@pytest.mark.parametrize("part, count, deep", [
    pytest.param(fuzz.fuzz_specs, COUNT, "pullback", id="specs"),
    pytest.param(fuzz.fuzz_programs, COUNT // 2, "program grad", id="programs"),
    pytest.param(fuzz.fuzz_cli, COUNT // 2, "cli exit 0", id="command lines"),
])
def test_fuzz(part, count, deep):
    report = fuzz.Report()
    part(report, random.Random(0), count)
    assert not report.failures, str(report)
    assert report.calls.get(deep, 0) > count // 10, str(report)  # it reached past the parsers
