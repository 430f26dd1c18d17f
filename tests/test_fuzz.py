"""The fuzzer of ``tests/fuzz.py`` in the suite: thousands of specs, programs and command
lines, each a result or an EinsumSpecError, within a second, never a traceback."""

from __future__ import annotations

import random

import pytest

import fuzz

COUNT = 2000  # specs; half as many programs and command lines


@pytest.mark.parametrize("part, count", [
    pytest.param(fuzz.fuzz_specs, COUNT, id="specs"),
    pytest.param(fuzz.fuzz_programs, COUNT // 2, id="programs"),
    pytest.param(fuzz.fuzz_cli, COUNT // 2, id="command lines"),
])
def test_fuzz(part, count):
    report = fuzz.Report()
    part(report, random.Random(0), count)
    assert sum(report.calls.values()) > count  # the fuzzer reached past the parsers
    assert not report.failures, str(report)
