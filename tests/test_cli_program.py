"""``einsgrad program`` and ``einsgrad matrix``: a program, its gradients, their derivation.

Run in-process through ``einsgrad.cli.main`` (and once as a process); what is printed is
checked against lines written here by hand and against the library's own objects, whose
correctness tests/test_matrix_notation.py and tests/test_program_statements.py prove.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

import einsgrad
from einsgrad.cli import main
from einsgrad.cli_parser import declarations
from einsgrad.statement_latex import statements_latex

ROOT = Path(__file__).resolve().parent.parent
LAYER = "L = 0.5 * norm(tanh(X @ W.T + b) - T)^2"
STATEMENTS = "H[b,j] = X[b,k] * W[j,k]; L = tanh(H[b,j])"


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code: int, err: str, message: str) -> None:
    """Exit status 2, ``einsgrad: ...`` on one line, a caret's lines indented below it."""
    assert code == 2, err
    assert "Traceback" not in err
    first, *rest = err.splitlines()
    assert first.startswith("einsgrad: ") and message in first, err
    assert all(line.startswith("    ") for line in rest), err


def test_matrix_prints_the_index_program_and_the_gradient(capsys):
    code, out, err = run(capsys, "matrix", "x.T @ A @ x", "--wrt", "x", "--hessian")
    assert code == 0, err
    assert out.splitlines() == ["f = x[i] * A[i,j] * x[j]",
                                "d/dx: g[i] = A[i,j] * x[j] + x[j] * A[j,i]",
                                "d2/dx2: H[i,j] = A[i,j] + A[j,i]"]


def test_matrix_gradient_of_statements_is_indented_below_its_title(capsys):
    code, out, err = run(capsys, "matrix", LAYER, "--rank", "b=1", "--wrt", "W")
    assert code == 0, err
    m = einsgrad.matrix(LAYER, b=1)
    lines = out.splitlines()
    assert lines[0] == "L = 0.5 * (tanh(sum[k](X[i,k] * W[j,k]) + b[j]) - T[i,j])^2" == str(m)
    assert lines[1] == "d/dW:"
    assert lines[2:] == ["  " + line for line in str(m.grad("W")).splitlines()]
    assert lines[-1] == "  dW[j,k] = dt1[i,j] * X[i,k]"


def test_matrix_every_input_by_default(capsys):
    code, out, _ = run(capsys, "matrix", "L = norm(X @ w - y)^2")
    assert code == 0
    titles = [line for line in out.splitlines() if line.startswith("d/d")]
    assert [t.split(":")[0] for t in titles] == ["d/dX", "d/dw", "d/dy"]


@pytest.mark.parametrize("argv, declared", [
    pytest.param(["--rank", "b=1"], dict(b=1), id="a rank"),
    pytest.param(["--rank", "b=(5),X=4x3"], dict(b=(5,), X=(4, 3)), id="shapes"),
    pytest.param(["--rank", "b=1", "--rank", "T=2"], dict(b=1, T=2), id="repeated"),
])
def test_matrix_declarations(capsys, argv, declared):
    code, out, err = run(capsys, "matrix", LAYER, *argv, "--wrt", "b")
    assert code == 0, err
    assert out.splitlines()[0] == str(einsgrad.matrix(LAYER, **declared))


@pytest.mark.parametrize("text, value", [("x=1,A=2", {"x": 1, "A": 2}), ("X=256x512", {"X": (256, 512)}),
                                         ("x=(7)", {"x": (7,)}), ("a=()", {"a": ()}), (" x = 0 ", {"x": 0})])
def test_declaration_syntax(text, value):
    assert declarations(text) == value


@pytest.mark.parametrize("text, match", [("x", "bad declaration 'x'"), ("=1", "bad declaration"),
                                         ("x=one", "a size is an integer"), ("X=4xq", "bad shape")])
def test_bad_declaration_syntax(text, match):
    with pytest.raises(argparse.ArgumentTypeError, match=match):
        declarations(text)


@pytest.mark.parametrize("argv, message", [
    pytest.param(["L = x' * A * x"], "'*' is elementwise, as in numpy", id="matrixcalculus.org's *"),
    pytest.param(["L = tr(A)", "--rank", "A=2x3"], "tr of a 2x3 matrix", id="shape that does not fit"),
    pytest.param(["L = foo(x)"], "unknown function 'foo'", id="unknown function"),
    pytest.param(["L = x ? y"], "character '?' is not allowed", id="bad character"),
    pytest.param(["L = sum(x)", "--rank", "x=7"], "ranks 0, 1 and 2", id="bad rank"),
    pytest.param(["L = sum(x)", "--rank", "x=q"], "a size is an integer", id="bad rank syntax"),
    pytest.param(["L = sum(x)", "--rank", "x=1", "--rank", "x=2"], "declares 'x' twice", id="conflict"),
    pytest.param(["L = sum(x)", "--wrt", "y"], "cannot differentiate by 'y'", id="unknown wrt"),
    pytest.param(["Y = A @ x", "--hessian"], "needs a scalar program", id="hessian of a vector"),
])
def test_matrix_user_errors_are_one_line(capsys, argv, message):
    code, out, err = run(capsys, "matrix", *argv)
    assert_user_error(code, err, message)
    assert not out


def test_a_matrix_error_shows_the_caret(capsys):
    code, _, err = run(capsys, "matrix", "L = x.T + y")
    assert_user_error(code, err, "'+' of a row vector and a vector")
    assert err.splitlines()[1:] == ["    L = x.T + y", "            ^"]


@pytest.mark.parametrize("command, text", [("matrix", "x.T @ A @ x"), ("program", "f = x[i] * A[i,j] * x[j]")])
def test_explain_and_latex(capsys, command, text):
    prog = einsgrad.matrix(text) if command == "matrix" else einsgrad.program(text)
    for argv, render in [(["--explain"], lambda: str(prog.explain("x"))),
                         (["--latex"], lambda: prog.explain("x").latex()),
                         (["--explain", "--hessian"], lambda: str(prog.explain("x", style="hessian")))]:
        code, out, err = run(capsys, command, text, "--wrt", "x", *argv)
        assert code == 0, err
        assert out == render() + "\n"


def test_hessian_of_statements_follows_the_gradient_derivation(capsys):
    prog = einsgrad.program(STATEMENTS)
    code, out, err = run(capsys, "program", STATEMENTS, "--wrt", "W", "--hessian", "--explain")
    assert code == 0, err
    derivation, hessian = out.split("\n\nThe Hessian by W", 1)
    assert derivation == str(prog.explain("W"))
    assert hessian.splitlines()[1:] == ["  " + line for line in str(prog.hessian("W")).splitlines()]


def test_hessian_of_statements_in_latex(capsys):
    code, out, err = run(capsys, "matrix", "L = norm(X @ w - y)^2", "--wrt", "w", "--hessian", "--latex")
    assert code == 0, err
    derivation, statements = out.split("\\end{align*}\n", 1)
    assert derivation + "\\end{align*}" == einsgrad.matrix("L = norm(X @ w - y)^2").explain("w").latex()
    assert statements.splitlines() == [r"\begin{align*}",
                                       r"t_{i} &= \sum_{j} X_{ij} w_{j} \\",
                                       r"g_{j} &= 2 \sum_{i} \left(t_{i} - y_{i}\right) X_{ij} \\",
                                       r"H_{ji} &= 2 \sum_{k} X_{kj} X_{ki}",
                                       r"\end{align*}"]


def test_statements_in_latex():
    p = einsgrad.program("A[b,j] = tanh(sum[k](X[b,k] * W[j,k]) + c[j])\n"
                         "L = sigmoid(A[b,j]) / (1 + A[b,j]^2) - 0.5 * sqrt(abs(c[j])) + (1/3) * A[b,j] / c[j]^2")
    assert statements_latex(p.statements).splitlines() == [
        r"\begin{align*}",
        r"A_{bj} &= \tanh\left(\sum_{k} X_{bk} W_{jk} + c_{j}\right) \\",
        r"L &= \sum_{bj} \frac{\operatorname{sigmoid}\left(A_{bj}\right)}{1 + A_{bj}^{2}} - 0.5 \sum_{j} "
        r"\sqrt{\left|c_{j}\right|} + \frac{1}{3} \sum_{bj} \frac{A_{bj}}{c_{j}^{2}}",
        r"\end{align*}"]


def test_program_of_statements_prints_blocks(capsys):
    code, out, err = run(capsys, "program", STATEMENTS, "--wrt", "W")
    assert code == 0, err
    assert out.splitlines() == ["H[b,j] = X[b,k] * W[j,k]", "L = tanh(H[b,j])", "d/dW:",
                                "  H[b,j] = X[b,k] * W[j,k]", "  t[b,j] = tanh(H[b,j])",
                                "  dW[j,k] = (1 - t[b,j]^2) * X[b,k]"]


def test_the_command_as_a_process():
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    ok = subprocess.run([sys.executable, "-m", "einsgrad", "matrix", "tr(A @ X @ B)", "--wrt", "X"],
                        capture_output=True, env=environment, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.decode().splitlines() == ["f = A[i,j] * X[j,k] * B[k,i]", "d/dX: g[j,k] = A[i,j] * B[k,i]"]
    bad = subprocess.run([sys.executable, "-m", "einsgrad", "matrix", "L = A @ a"],
                         capture_output=True, env=environment, timeout=120)
    assert_user_error(bad.returncode, bad.stderr.decode(), "'@' of a matrix and a scalar")
