"""The command line under misuse: every user error is one line and exit status 2, never a traceback.

Issue 10's classes, each with its tests: argparse's own errors, unknown subcommands, specs
starting with ``-``, the ``program`` subcommand, output that cannot be written or encoded,
``codegen -o`` over an existing file, and random argument lists.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import einsgrad
from einsgrad.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parent.parent


def einsgrad_process(*argv, stdout=subprocess.PIPE, **env) -> subprocess.CompletedProcess:
    """``python -m einsgrad ARGV`` in a fresh interpreter that imports this checkout."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-m", "einsgrad", *argv], stdout=stdout,
                          stderr=subprocess.PIPE, env=environment, timeout=120)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, message: str) -> None:
    """Exit status 2, ``einsgrad: ...`` on one line (a spec's caret lines indented below it)."""
    assert code == 2, err
    assert "Traceback" not in err
    first, *rest = err.splitlines()
    assert first.startswith("einsgrad: ") and message in first, err
    assert all(line.startswith("    ") for line in rest), err


# -- a user error: one line, exit 2 -------------------------------------------------------------


@pytest.mark.parametrize("argv, message", [
    pytest.param(["demo", "ij->i", "4x"], "argument SHAPES: bad shape '4x'", id="demo bad shape"),
    pytest.param(["ij->i", "x3"], "bad shape 'x3'", id="no subcommand, bad shape"),
    pytest.param(["explian", "ij->i"], "invalid choice: 'explian'", id="mistyped subcommand"),
    pytest.param(["program"], "the following arguments are required: PROGRAM", id="program without text"),
    pytest.param(["program", "f = x[i"], "", id="program that does not parse"),
    pytest.param(["grad", "ik,jk->ij", "--wrt", "x"], "invalid int value: 'x'", id="wrt not an int"),
    pytest.param(["grad", "ik,jk->ij", "--sizes", "=4"], "bad size '=4'", id="size without a label"),
    pytest.param(["grad", "ik,jk->ij", "--no-such"],
                 "unrecognized arguments: --no-such ('einsgrad grad --help'", id="unknown option"),
    pytest.param(["grad", "ik,jk->ij", "--name", "X,W"], "unrecognized arguments: --name",
                 id="no abbreviation"),
    pytest.param(["plan", "ik,jk->ij"], "--shapes", id="missing shapes"),
    pytest.param(["codegen", "ik,jk->ij", "--shapes", "4x3,5x3", "--dtype", "U3"], "not numeric",
                 id="bad dtype"),
    pytest.param(["grad"], "the spec is missing", id="no spec"),
    pytest.param(["explain", "ij->i", "--spec", "ij->j"], "the spec is given twice", id="spec twice"),
    pytest.param(["--no-such"], "unrecognized arguments", id="unknown top-level option"),
])
def test_user_error_is_one_line_and_exit_2(argv, message):
    result = einsgrad_process(*argv)
    assert not result.stdout
    assert_one_line_error(result.returncode, result.stderr.decode(), message)


@pytest.mark.parametrize("argv", [["--help"], ["program", "--help"], ["demo", "--help"]])
def test_help_exits_0(argv):
    result = einsgrad_process(*argv)
    assert result.returncode == 0 and result.stdout.startswith(b"usage: einsgrad")


def test_bench_with_a_bad_argument_exits_2():
    result = einsgrad_process("bench", "--no-such-option")
    assert result.returncode == 2 and b"Traceback" not in result.stderr
    assert b"unrecognized arguments: --no-such-option" in result.stderr


@pytest.mark.parametrize("argv", [
    pytest.param(["a" * 30 + "->a"], id="the demo's shapes for 30 labels"),
    pytest.param(["demo", "i->ij", "1000", "--sizes", "j=2000"], id="a large output"),
])
def test_the_demo_refuses_large_random_operands(capsys, argv):
    code, out, err = run(capsys, *argv)
    assert_one_line_error(code, err, "elements each (at most 1,000,000); give smaller SHAPES")
    assert not out


# -- unknown subcommands --------------------------------------------------------------------------


@pytest.mark.parametrize("word, near", [
    pytest.param("explian", "explain", id="a typo"),
    pytest.param("jacobain", "jacobian", id="another typo"),
    pytest.param("foo", None, id="no near miss"),
    pytest.param("ij", None, id="an implicit-mode spec"),
])
def test_a_bare_word_is_an_unknown_subcommand(capsys, word, near):
    code, out, err = run(capsys, word, "ij->i")
    assert_one_line_error(code, err, f"invalid choice: {word!r} (choose from {', '.join(COMMANDS)})")
    assert not out
    assert (f"did you mean {near!r}?" in err) == (near is not None)
    assert f"'einsgrad demo {word}' runs the demo of the implicit-mode spec {word!r}" in err


@pytest.mark.parametrize("argv", [
    pytest.param(["ij,jk->ik"], id="an arrow"),
    pytest.param(["i,i", "3", "3"], id="a comma, implicit output"),
    pytest.param(["--", "ij->j", "2x3"], id="after --"),
    pytest.param(["demo", "ij"], id="an implicit-mode spec named by demo"),
])
def test_clear_specs_run_the_demo(capsys, argv):
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert out.startswith("forward   ") and "agree with central finite differences" in out


# -- a spec starting with - -------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    pytest.param(["grad", "--", "->"], id="after --"),
    pytest.param(["grad", "--spec", "->"], id="--spec SPEC"),
    pytest.param(["grad", "--spec=->"], id="--spec=SPEC"),
    pytest.param(["grad", "--names", "s", "--spec", "->"], id="--spec after another option"),
])
def test_a_spec_starting_with_a_dash(capsys, argv):
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert out.split(" = ")[1].startswith("->  (G")


@pytest.mark.parametrize("argv", [
    pytest.param(["explain", "--spec", "->"], id="explain"),
    pytest.param(["jacobian", "--spec", "->", "--shapes", "()"], id="jacobian"),
    pytest.param(["codegen", "--spec", "->", "--shapes", "()"], id="codegen"),
    pytest.param(["plan", "--shapes", "()", "--", "->"], id="plan"),
    pytest.param(["demo", "--spec", "->", "()"], id="demo with a shape"),
    pytest.param(["demo", "--", "->"], id="demo"),
])
def test_every_spec_subcommand_takes_spec(capsys, argv):
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert out.strip()


# -- einsgrad program ---------------------------------------------------------------------------------

QUADRATIC = "f = x[i] * A[i,j] * x[j]"


def test_program_prints_each_gradient(capsys):
    prog = einsgrad.program(QUADRATIC)
    code, out, err = run(capsys, "program", QUADRATIC)
    assert code == 0, err
    assert out.splitlines() == [str(prog), f"d/dx: {prog.grad('x')}", f"d/dA: {prog.grad('A')}"]
    assert out.splitlines()[1] == "d/dx: g[i] = A[i,j] * x[j] + x[j] * A[j,i]"


def test_program_wrt_and_hessian(capsys):
    code, out, _ = run(capsys, "program", QUADRATIC, "--wrt", "x", "--hessian")
    assert code == 0
    assert out.splitlines()[1:] == ["d/dx: g[i] = A[i,j] * x[j] + x[j] * A[j,i]",
                                    "d2/dx2: H[i,j] = A[i,j] + A[j,i]"]


@pytest.mark.parametrize("argv, render", [
    pytest.param(["--explain"], lambda p: str(p.explain("x")), id="explain"),
    pytest.param(["--explain", "--hessian"], lambda p: str(p.explain("x", style="hessian")), id="hessian"),
    pytest.param(["--latex"], lambda p: p.explain("x").latex(), id="latex"),
])
def test_program_explain(capsys, argv, render):
    code, out, _ = run(capsys, "program", QUADRATIC, "--wrt", "x", *argv)
    assert code == 0
    assert out == render(einsgrad.program(QUADRATIC)) + "\n"


@pytest.mark.parametrize("argv, message", [
    pytest.param([QUADRATIC, "--wrt", "z"], "cannot differentiate by 'z'", id="unknown wrt"),
    pytest.param(["Y[i] = x[i] * y[i]", "--hessian"], "hessian needs a scalar program",
                 id="hessian of a vector"),
    pytest.param(["Y[i] = x[i] * y[i]", "--explain", "--hessian"], "needs a scalar program",
                 id="hessian derivation of a vector"),
    pytest.param(["f = x[i] *"], "", id="a program that does not parse"),
])
def test_program_errors_come_alone(capsys, argv, message):
    code, out, err = run(capsys, "program", *argv)
    assert_one_line_error(code, err, message)
    assert not out


# -- output that cannot be written ---------------------------------------------------------------------

needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")


@needs_dev_full
def test_stdout_on_a_full_disk():
    with open("/dev/full", "wb") as full:
        result = einsgrad_process("explain", "ik,jk->ij", stdout=full)
    assert_one_line_error(result.returncode, result.stderr.decode(),
                          "cannot write to standard output: No space left on device")


@needs_dev_full
def test_codegen_to_a_full_disk(capsys):
    code, out, err = run(capsys, "codegen", "ik,jk->ij", "--shapes", "4x3,5x3", "-o", "/dev/full", "--force")
    assert_one_line_error(code, err, "cannot write /dev/full: No space left on device")
    assert not out


def test_a_closed_pipe_ends_quietly():
    """``einsgrad explain ... | head -1``: the reader is gone before einsgrad writes."""
    read, write = os.pipe()
    os.close(read)
    try:
        result = einsgrad_process("explain", "ik,jk->ij", stdout=write)
    finally:
        os.close(write)
    assert result.returncode == 1 and result.stderr == b""


@pytest.mark.skipif(os.name != "posix", reason="closes standard output in a POSIX shell")
def test_a_closed_stdout():
    """``einsgrad ... >&-``: Python starts with ``sys.stdout`` None."""
    result = subprocess.run(["sh", "-c", 'exec "$0" -m einsgrad grad "ij->i" >&-', sys.executable],
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert_one_line_error(result.returncode, result.stderr.decode(), "standard output is closed")


@pytest.mark.parametrize("env", [
    pytest.param({"PYTHONIOENCODING": "ascii"}, id="PYTHONIOENCODING=ascii"),
    pytest.param({"LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0",
                  "PYTHONIOENCODING": ""}, id="the C locale, uncoerced",
                 marks=pytest.mark.skipif(sys.platform != "linux", reason="the C locale is ASCII on Linux")),
])
def test_an_ascii_only_output_gets_ascii_symbols(env):
    result = einsgrad_process("explain", "ik,jk->ij", "--names", "X,W", **env)
    assert result.returncode == 0
    text = result.stdout.decode("ascii")
    assert "Y = X W^T" in text and "dL/dX = G W" in text and "sum_" in text and "delta_" in text
    err = result.stderr.decode("ascii")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("einsgrad: standard output's encoding (ascii) cannot show every symbol")
    assert "\\u2202 as 'd'" in err and "set PYTHONIOENCODING=utf-8" in err


def test_a_utf8_output_is_left_alone():
    result = einsgrad_process("explain", "ik,jk->ij", PYTHONIOENCODING="utf-8")
    assert result.returncode == 0 and result.stderr == b""
    assert "∂L/∂" in result.stdout.decode("utf-8")


# -- codegen -o over an existing file ---------------------------------------------------------------


def test_codegen_keeps_an_existing_file_without_force(capsys, tmp_path):
    path = tmp_path / "linear.py"
    path.write_text("mine\n")
    argv = ["codegen", "ik,jk->ij", "--shapes", "4x3,5x3", "-o", str(path)]
    code, out, err = run(capsys, *argv)
    assert_one_line_error(code, err, f"{path} exists; pass --force to overwrite it")
    assert path.read_text() == "mine\n" and not out
    code, out, _ = run(capsys, *argv, "--force")
    assert code == 0 and path.read_text().startswith('"""Forward and gradients')


def test_codegen_out_is_not_output(capsys, tmp_path, monkeypatch):
    """``--out`` (explain's output name) is no abbreviation of ``--output``: nothing is written."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "codegen", "ik,jk->ij", "--shapes", "4x3,5x3", "--out", "Z")
    assert_one_line_error(code, err, "unrecognized arguments: --out Z")
    assert not out and not list(tmp_path.iterdir())


# -- random argument lists -------------------------------------------------------------------------

SPECS = ["ij,jk->ik", "ik,jk->ij", "ii->", "ii->i", "i->ii", "j->ij", "->", ",i->i", "...ij->...",
         "i,i", "ij", "ik,jk->iq", "a" * 30 + "->a", "ij->i\"; x", "A X B", "ij->->j", "...->", "-i->i"]
SHAPES = ["4x3", "4x3,5x3", "4x", "x3", "()", "(),3", "3", "0", "2x0", "-1", "2,,3", "4*3", "", "3x3x3"]
SIZES = ["i=3", "i=", "=4", "i=4,j=2", "...=2x3", "i=-1", "i=x", ",", "...=x"]
VALUES = ["0", "1", "-1", "7", "x", "X,W", ",", "X,", "index", "differential", "poetry", "float32",
          "U3", "int8", "complex64", "auto", "greedy", "dp", "fastest", "2", "f = x[i] * y[i]",
          "Y[i] = A[i,j] * x[j]", "f = x[i", "dx", "A"]
OPTIONS = ["--wrt", "--names", "--sizes", "--shapes", "--spec", "--out", "--style", "--latex",
           "--elementwise", "--dtype", "--force", "--optimize", "--memory-limit", "--hessian",
           "--explain", "--help", "-h", "--", "-", "--spec=->", "--wrt=", "--nonsense"]
WORDS = st.one_of(st.sampled_from(SPECS), st.sampled_from(SHAPES), st.sampled_from(SIZES),
                  st.sampled_from(VALUES), st.sampled_from(OPTIONS),
                  st.text(st.characters(blacklist_categories=("Cs",)), max_size=8))
FIRST = st.one_of(st.sampled_from([c for c in COMMANDS if c != "bench"]),
                  st.sampled_from(["explian", "foo", "ij", "--", "--help", "gradd", "Demo"]), WORDS)
NOISE = st.lists(WORDS, max_size=6).flatmap(lambda rest: FIRST.map(lambda first: [first, *rest]))
OPTION_PAIRS = {  # each subcommand's options with values that may fit
    "grad": [["--wrt", "0"], ["--wrt", "-1"], ["--names", "X,W"], ["--sizes", "i=3"]],
    "explain": [["--names", "X,W"], ["--out", "Z"], ["--style", "differential"], ["--latex"],
                ["--elementwise"], ["--sizes", "i=2,j=2,k=2"], ["--wrt", "1"]],
    "jacobian": [["--wrt", "0"], ["--shapes", "4x3,5x3"], ["--shapes", "3x3"], ["--names", "X,W"]],
    "codegen": [["--shapes", "4x3,5x3"], ["--shapes", "3x3"], ["--dtype", "float32"], ["--sizes", "i=3"]],
    "plan": [["--shapes", "4x3,5x3"], ["--shapes", "3x3"], ["--optimize", "greedy"], ["--memory-limit", "8"]],
    "program": [["--wrt", "x"], ["--wrt", "A"], ["--hessian"], ["--explain"], ["--latex"]],
    "demo": [["3x3"], ["4x3", "5x3"], ["--sizes", "i=3"]],
}
PROGRAMS = ["f = x[i] * A[i,j] * x[j]", "Y[i] = A[i,j] * x[j]", "f = 2 * x[i] * x[i] - y[i]"]
MOSTLY_RIGHT = st.sampled_from(sorted(OPTION_PAIRS)).flatmap(lambda command: st.tuples(
    st.just(command), st.sampled_from(PROGRAMS if command == "program" else SPECS[:9]),
    st.lists(st.sampled_from(OPTION_PAIRS[command]), max_size=3))).map(
    lambda drawn: [drawn[0], drawn[1], *(word for pair in drawn[2] for word in pair)])


@contextlib.contextmanager
def hang_guard(seconds: int):
    """Fails a call that runs past ``seconds`` (a coarse guard against a hang, not a timing)."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def stop(signum, frame):
        raise AssertionError(f"the command ran past {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def working_directory(path):
    """Runs the block in ``path``: a file a random command line writes lands there."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.one_of(NOISE, MOSTLY_RIGHT))
def test_random_argv_exits_0_or_2_without_a_traceback(tmp_path_factory, argv):
    """Any argument list ends with status 0 or 2 (SystemExit 0 for --help), never an exception."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), hang_guard(20), \
            working_directory(tmp_path_factory.mktemp("argv")):
        try:
            code = main(argv)
        except SystemExit as exit:
            code = exit.code
    assert code in (0, 2), (argv, err.getvalue())
    assert "Traceback" not in err.getvalue() + out.getvalue()
    if code == 2:
        assert err.getvalue().startswith("einsgrad: "), (argv, err.getvalue())


def test_a_label_named_like_the_default_output(capsys):
    """The output's default name skips the spec's labels (explain and jacobian alike)."""
    assert main(["explain", "iY,Yj->ij"]) == 0
    out = capsys.readouterr().out
    assert "output Z" in out and "∂L/∂Z" in out
    assert main(["jacobian", "iY,Yj->ij", "--wrt", "0"]) == 0
    assert capsys.readouterr().out.startswith("∂Z/∂x0 = Yj->ijiY\n  entries ∂Z[i,j]/∂x0[i,Y]")
