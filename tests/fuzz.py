"""A fuzzer for einsgrad's boundary: specs, programs and command lines, valid and hostile.

Every input must give a result or an :class:`einsgrad.EinsumSpecError`: no other exception,
no call running past :data:`LIMIT` seconds, no traceback from the command line. Inputs come
from a seeded ``random.Random``, so a run is reproducible and a failure names its input.

``tests/test_fuzz.py`` runs it in the suite. ``python tests/fuzz.py [--count N] [--seed S]``
runs it alone and prints the counts, the slowest call of each operation and any failure.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import signal
import string
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import opt_einsum

import einsgrad
from einsgrad import EinsumSpecError
from einsgrad.cli import main as cli_main

LIMIT = 1.0  # seconds one call may take; a call past it is retried once, then is a hang
LETTERS = string.ascii_letters
HOSTILE = ",->. ,->.;:'\"\\\n\t()[]{}#=*+0123456789_éß∂δΣ\x00\u202e𝑥"
TENSOR_NAMES = ["X", "W", "A", "b", "x", "y", "g", "dY", "delta", "v", "H", "f", "Y", "p", "q"]


class Hang(BaseException):
    """Raised by the alarm in a call that ran past its limit (not an Exception, so no
    ``except Exception`` in the code under test can swallow it)."""


@dataclass
class Report:
    """What one run found: calls per operation, the slowest of each, and the failures."""

    calls: dict = field(default_factory=dict)
    slowest: dict = field(default_factory=dict)
    refused: int = 0
    failures: list = field(default_factory=list)

    def record(self, operation: str, seconds: float, what: str) -> None:
        self.calls[operation] = self.calls.get(operation, 0) + 1
        if seconds > self.slowest.get(operation, (0.0, ""))[0]:
            self.slowest[operation] = (seconds, what)

    def __str__(self) -> str:
        lines = [f"{sum(self.calls.values())} calls, {self.refused} refused with EinsumSpecError, "
                 f"{len(self.failures)} failures"]
        for operation in sorted(self.calls):
            seconds, what = self.slowest.get(operation, (0.0, ""))
            lines.append(f"  {operation:<22} {self.calls[operation]:>6} calls, slowest "
                         f"{seconds * 1e3:8.1f} ms  {what[:90]!r}")
        kinds: dict = {}
        for failure in self.failures:
            kind = failure.split(": ")[0] + ": " + failure.split(": ")[1][:60]
            kinds[kind] = kinds.get(kind, 0) + 1
        lines += [f"{n:>5} x {kind}" for kind, n in sorted(kinds.items(), key=lambda item: -item[1])]
        lines += [f"FAIL {failure}" for failure in self.failures[:40]]
        return "\n".join(lines)


def _alarm(signum, frame):
    raise Hang()


def guarded(report: Report, operation: str, what: str, call):
    """Runs ``call()`` under the time limit; returns its value, or None if it was refused.

    A call past the limit is tried once more (a shared machine may stall one call); a
    second overrun, or any exception but EinsumSpecError, is a failure.
    """
    for attempt in (1, 2):
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, LIMIT)
        start = time.perf_counter()
        try:
            value = call()
        except Hang:
            if attempt == 2:
                report.failures.append(f"{operation}: over {LIMIT} s: {what}")
                return None
            continue
        except EinsumSpecError:
            report.refused += 1
            return None
        except Exception as error:  # noqa: BLE001 - every other exception is what we look for
            report.failures.append(f"{operation}: {type(error).__name__}: {error}: {what}"[:600])
            return None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        report.record(operation, time.perf_counter() - start, what)
        return value
    return None


# -- specs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpecCase:
    """A spec text, the sizes= to compile it with, and operand shapes to call it on."""

    text: str
    sizes: dict | None
    shapes: tuple


def _structured_spec(rng: random.Random) -> SpecCase:
    """A spec most of whose members numpy (or einsgrad's extensions) accepts."""
    width = rng.choice([1, 2, 3, 4, 6, 12, 26, 52])
    pool = rng.sample(LETTERS, width)
    size = {l: rng.choice([0, 1, 1, 2, 2, 3]) for l in pool}
    operands = rng.choice([0, 1, 1, 2, 2, 2, 3, 3, 4, 5, 8, 20])
    terms = []
    for _ in range(operands):
        term = [rng.choice(pool) for _ in range(rng.choice([0, 1, 2, 2, 3, 4]))]
        if term and rng.random() < 0.15:
            term.insert(rng.randrange(len(term) + 1), "...")
        terms.append(term)
    batch = tuple(rng.choice([1, 2]) for _ in range(rng.choice([0, 1, 2])))
    used = [l for t in terms for l in t if l != "..."]
    text = ",".join("".join(t) for t in terms)
    sizes = None
    if rng.random() < 0.7:
        output = [rng.choice(used or pool) for _ in range(rng.choice([0, 1, 2, 3]))]
        if rng.random() < 0.2:
            output.append(rng.choice(pool))
        if any("..." in t for t in terms) and rng.random() < 0.8:
            output.insert(0, "...")
        text += "->" + "".join(output)
        fresh = [l for l in output if l not in used and l != "..."]
        if fresh and rng.random() < 0.8:
            sizes = {l: rng.choice([1, 2, 3]) for l in fresh}
    if rng.random() < 0.1:
        text = " ".join(text)
    shapes = []
    for term in terms:
        shape = []
        for label in term:
            shape.extend(batch if label == "..." else [size[label]])
        if rng.random() < 0.05:
            shape.append(2)  # a wrong rank
        shapes.append(tuple(shape))
    return SpecCase(text, sizes, tuple(shapes))


def _mutated(rng: random.Random, text: str) -> str:
    chars = list(text)
    for _ in range(rng.randint(1, 3)):
        where = rng.randint(0, len(chars))
        action = rng.random()
        if action < 0.4 or not chars:
            chars.insert(where, rng.choice(HOSTILE + LETTERS))
        elif action < 0.7:
            del chars[min(where, len(chars) - 1)]
        else:
            chars[min(where, len(chars) - 1)] = rng.choice(HOSTILE)
    return "".join(chars)


def spec_cases(rng: random.Random, count: int):
    """``count`` specs: structured, mutated, random text, and a few extreme ones."""
    extremes = ["a" * 600 + "->a", "".join(LETTERS) + "->a", ",".join(LETTERS[:40]),
                "->", "", ",", "...", "...->...", "i->ii", "ij->iijj", "a" * 60 + "," + "a" * 60]
    for i in range(count):
        if i < len(extremes):
            yield SpecCase(extremes[i], None, ())
            continue
        kind = rng.random()
        case = _structured_spec(rng)
        if kind < 0.55:
            yield case
        elif kind < 0.8:
            yield SpecCase(_mutated(rng, case.text), case.sizes, case.shapes)
        else:
            text = "".join(rng.choice(HOSTILE + LETTERS[:6]) for _ in range(rng.randint(0, 14)))
            yield SpecCase(text, None, case.shapes)


def _operand(rng: random.Random, shape):
    """Mostly float arrays of ``shape``; sometimes another dtype, a list, or a ragged list."""
    kind = rng.random()
    values = np.random.default_rng(rng.randrange(2**32)).standard_normal(shape)
    if kind < 0.75:
        return values
    if kind < 0.83:
        return values.astype(rng.choice([np.float32, np.complex128, np.int64, np.bool_, np.float16]))
    if kind < 0.88:
        return values.tolist()
    if kind < 0.92:
        return [[1.0, 2.0], [3.0]]  # ragged
    if kind < 0.96:
        return np.array(["a"] * max(1, values.size)).reshape(values.shape) if values.size else "x"
    return None


def _optimizer(rng: random.Random, operands: int):
    choice = rng.random()
    if choice < 0.6:
        return "auto"
    if choice < 0.75:
        # dp, branch and optimal searches are exponential by design: the user's budget to spend
        return rng.choice(["greedy"] + (["dp", "branch-2"] if operands <= 8 else []) + (["optimal"] if operands <= 5 else []))
    if choice < 0.9:
        return opt_einsum.RandomGreedy(max_repeats=4)
    return rng.choice([len, 3, "fastest", True, None])


def fuzz_specs(report: Report, rng: random.Random, count: int) -> None:
    """Compiles each spec and runs every entry point on it."""
    for case in spec_cases(rng, count):
        what = f"{case.text!r} sizes={case.sizes} shapes={case.shapes}"
        for k in range(max(1, len(case.shapes))):
            guarded(report, "grad_spec", what, lambda: einsgrad.grad_spec(case.text, k, case.sizes))
        guarded(report, "jacobian_spec", what, lambda: einsgrad.jacobian_spec(case.text, 0, sizes=case.sizes))
        style = rng.choice(["index", "index", "differential"])
        guarded(report, "explain", what, lambda: str(einsgrad.explain(case.text, sizes=case.sizes, style=style)))
        if rng.random() < 0.2:
            guarded(report, "explain latex", what, lambda: einsgrad.explain(case.text, sizes=case.sizes).latex())
        if rng.random() < 0.2:
            small = {label: 2 for label in set(case.text) & set(LETTERS)}
            guarded(report, "explain elementwise", what,
                    lambda: str(einsgrad.explain(case.text, sizes={**small, **(case.sizes or {})}, elementwise=True)))
        options = {"sizes": case.sizes, "optimize": _optimizer(rng, len(case.shapes))}
        if rng.random() < 0.15:
            options["memory_limit"] = rng.choice([1, 2, 8, 64, 0, -1, 2.5])
        if rng.random() < 0.05:
            options["cache_size"] = rng.choice([1, np.int64(3), 2**63, 0])
        compiled = guarded(report, "compile", what, lambda: einsgrad.compile(case.text, **options))
        if compiled is None:
            continue
        operands = [_operand(rng, shape) for shape in case.shapes]
        y = guarded(report, "forward", what, lambda: compiled(*operands))
        if y is None:
            continue
        _check_against_numpy(report, case, operands, y, what)
        g = np.random.default_rng(0).standard_normal(np.shape(y))
        guarded(report, "vjp", what, lambda: compiled.vjp(g, *operands))
        pair = guarded(report, "value_and_pullback", what, lambda: compiled.value_and_pullback(*operands))
        if pair is not None:
            guarded(report, "pullback", what, lambda: pair[1](g))
        guarded(report, "einsgrad.vjp", what, lambda: einsgrad.vjp(case.text, g, *operands))
        shapes = [np.shape(o) for o in operands]
        guarded(report, "source", what, lambda: compiled.source(*shapes))
        guarded(report, "costs", what, lambda: compiled.costs(*shapes))
        guarded(report, "plan", what, lambda: str(compiled.plan(*shapes)))


def _check_against_numpy(report, case, operands, y, what) -> None:
    """Where numpy computes the same spec, einsgrad's forward must equal it."""
    if case.sizes:
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = np.einsum(case.text, *operands)
    except Exception:  # noqa: BLE001 - numpy refuses what einsgrad extends or rejects
        return
    if np.shape(expected) != np.shape(y) or not np.allclose(y, expected, rtol=1e-5, atol=1e-6, equal_nan=True):
        report.failures.append(f"forward differs from numpy.einsum: {what}")


# -- programs ------------------------------------------------------------------------------


def _index_list(rng, pool, rank):
    return "[" + ",".join(rng.choice(pool) for _ in range(rank)) + "]" if rank else ""


def program_texts(rng: random.Random, count: int):
    """``count`` program texts: structured sums of products, mutated ones, random text."""
    coefficients = ["", "2 * ", "0.5 * ", "-3 * ", "1/3 * ", "0." + "0" * 40 + "1 * ", "1e30 * ",
                    "0.5*" * 20, "9" * 400 + " * ", "1e-300 * "]
    for _ in range(count):
        pool = rng.sample(["i", "j", "k", "l", "m", "n", "batch", "feat", "p", "q"],
                          rng.choice([1, 2, 3, 4, 6, 10]))
        out_rank = rng.choice([0, 0, 1, 2])
        out_indices = rng.sample(pool, min(out_rank, len(pool)))
        terms = []
        for t in range(rng.choice([1, 1, 2, 3])):
            factors = []
            for _ in range(rng.choice([1, 2, 2, 3, 4])):
                name = rng.choice(TENSOR_NAMES[:9] + ["delta"])
                rank = 2 if name == "delta" else rng.choice([0, 1, 1, 2, 3])
                factors.append(name + _index_list(rng, pool, rank))
            sign = (" - " if rng.random() < 0.3 else " + ") if t else ""
            terms.append(sign + rng.choice(coefficients) + " * ".join(factors))
        text = f"Y{'[' + ','.join(out_indices) + ']' if out_indices else ''} = " + "".join(terms)
        kind = rng.random()
        if kind < 0.6:
            yield text
        elif kind < 0.85:
            yield _mutated(rng, text)
        else:
            yield "".join(rng.choice(HOSTILE + "XYWij[]= ") for _ in range(rng.randint(0, 20)))


def fuzz_programs(report: Report, rng: random.Random, count: int) -> None:
    """Parses each program; prints, reads back, differentiates and explains it."""
    for text in program_texts(rng, count):
        what = repr(text)
        prog = guarded(report, "program", what, lambda: einsgrad.program(text))
        if prog is None:
            continue
        printed = guarded(report, "program str", what, lambda: str(prog))
        if printed is not None:
            again = guarded(report, "program reread", what, lambda: einsgrad.program(printed))
            if again is not None and str(again) != printed:
                report.failures.append(f"program does not read back: {what} printed {printed!r}")
        for name in prog.inputs[:3]:
            grad = guarded(report, "program grad", what, lambda: prog.grad(name))
            if grad is not None:
                guarded(report, "program grad str", what, lambda: str(grad))
            guarded(report, "program explain", what, lambda: str(prog.explain(name)))
            guarded(report, "program jacobian", what, lambda: str(prog.jacobian(name)))
            guarded(report, "program hessian", what, lambda: str(prog.hessian(name)))
            guarded(report, "program hvp", what, lambda: str(prog.hvp(name)))
            guarded(report, "program explain hessian", what, lambda: str(prog.explain(name, style="hessian")))
        arrays = {name: np.ones((2,) * 3)[(0,) * (3 - r)] for name, r in _ranks(prog).items()}
        guarded(report, "program call", what, lambda: prog(**arrays))


def _ranks(prog) -> dict:
    """Each input's rank, read from the printed program (no private attributes)."""
    ranks = {}
    for name in prog.inputs:
        text = str(prog)
        start = text.find(name + "[")
        ranks[name] = text[start:text.index("]", start)].count(",") + 1 if start >= 0 else 0
    return ranks


# -- command lines -------------------------------------------------------------------------


def argv_lists(rng: random.Random, count: int, folder: Path):
    """``count`` argument lists: subcommands, options and values, right and wrong."""
    commands = ["grad", "explain", "jacobian", "codegen", "plan", "demo", "program", "explian", "foo", "--help", ""]
    options = {
        "--names": ["X,W", "X", "a,b,c", "", "X,X", "1x"], "--wrt": ["0", "1", "-1", "9", "x", "0,1"],
        "--shapes": ["4x3,5x3", "4x", "()", "x3", "3", "2x2,2x2,2x2", "-1"], "--sizes": ["i=4", "i=", "=4", "i=4x", "...=2x3"],
        "--style": ["index", "differential", "hessian", "nope"], "--optimize": ["dp", "greedy", "nope", ""],
        "--memory-limit": ["4", "0", "-1", "x"], "--dtype": ["float32", "int8", "nope"], "--out": ["Y", "", "G"],
        "-o": [str(folder / "generated.py"), str(folder), "/dev/full"],
    }
    flags = ["--latex", "--elementwise", "--force", "--explain", "--hessian", "--"]
    for _ in range(count):
        argv = [rng.choice(commands)]
        if rng.random() < 0.8:
            argv.append(rng.choice([_structured_spec(rng).text, "ik,jk->ij", "->", "-x", "f = x[i]*A[i,j]*x[j]",
                                    "".join(rng.choice(HOSTILE + "ij") for _ in range(rng.randint(0, 8)))]))
        for _ in range(rng.choice([0, 1, 2, 3])):
            if rng.random() < 0.7:
                option = rng.choice(sorted(options))
                argv.append(option)
                if rng.random() < 0.95:
                    argv.append(rng.choice(options[option]))
            else:
                argv.append(rng.choice(flags))
        yield [a for a in argv if a != "" or rng.random() < 0.5]


def fuzz_cli(report: Report, rng: random.Random, count: int) -> None:
    """Runs each command line in-process: status 0 or 2, never a traceback."""
    with tempfile.TemporaryDirectory() as folder:
        for argv in argv_lists(rng, count, Path(folder)):
            what = repr(argv)
            out, err = io.StringIO(), io.StringIO()

            def run():
                try:
                    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                        return cli_main(argv)
                except SystemExit as exit:
                    return exit.code

            status = guarded(report, "cli", what, run)
            if status == 0:
                report.record("cli exit 0", 0.0, what)
            if status not in (0, 2, None) or "Traceback" in out.getvalue() + err.getvalue():
                report.failures.append(f"cli: status {status}, stderr {err.getvalue()[-300:]!r}: {what}")


def run(count: int = 1000, seed: int = 0) -> Report:
    """Fuzzes ``count`` specs, ``count // 2`` programs and ``count // 2`` command lines."""
    report = Report()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fuzz_specs(report, random.Random(seed), count)
        fuzz_programs(report, random.Random(seed + 1), count // 2)
        fuzz_cli(report, random.Random(seed + 2), count // 2)
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result = run(args.count, args.seed)
    print(result)
    sys.exit(1 if result.failures else 0)
