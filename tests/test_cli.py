"""The ``einsgrad`` command line, run in-process through ``einsgrad.cli.main``."""

from __future__ import annotations

import argparse
import builtins
import importlib.util
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import einsgrad
from einsgrad.cli import COMMANDS, main, shape_list, size_map


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def import_file(path: Path):
    spec = importlib.util.spec_from_file_location(f"cli_generated_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- argument syntax ----------------------------------------------------------------------------


@pytest.mark.parametrize("text, shapes", [
    pytest.param("4x3,5x3", [(4, 3), (5, 3)], id="matrices"),
    pytest.param("7", [(7,)], id="a vector"),
    pytest.param("(),3", [(), (3,)], id="a scalar"),
    pytest.param(" 2x0 , 1x2x3 ", [(2, 0), (1, 2, 3)], id="spaces and an empty dimension"),
])
def test_shape_syntax(text, shapes):
    assert shape_list(text) == shapes


@pytest.mark.parametrize("text, message", [
    pytest.param("4x3,,5x3", r"empty shape .*write a scalar operand as \(\)", id="empty"),
    pytest.param("4x", r"bad shape '4x'", id="trailing x"),
    pytest.param("4x-1", r"sizes are non-negative", id="negative"),
    pytest.param("4*3", r"bad shape '4\*3'", id="wrong separator"),
])
def test_bad_shapes(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        shape_list(text)


def test_size_syntax():
    assert size_map("i=4, j=3") == {"i": 4, "j": 3}
    assert size_map("...=2x3") == {"...": (2, 3)}
    with pytest.raises(argparse.ArgumentTypeError, match=r"bad size 'i4'"):
        size_map("i4")
    with pytest.raises(argparse.ArgumentTypeError, match=r"a size is an integer"):
        size_map("i=four")


# -- grad ---------------------------------------------------------------------------------------


def test_grad_one_operand(capsys):
    code, out, err = run(capsys, "grad", "ik,jk->ij", "--wrt", "1")
    assert code == 0 and not err
    assert out == "d/dx1 = ij,ik->jk  (G, x0)\n"


def test_grad_every_operand_with_names(capsys):
    code, out, _ = run(capsys, "grad", "ik,jk->ij", "--names", "X,W")
    assert code == 0
    assert out.splitlines() == ["d/dX = ij,jk->ik  (G, W)", "d/dW = ij,ik->jk  (G, X)"]


def test_grad_extended_needs_sizes(capsys):
    code, out, _ = run(capsys, "grad", "j->ij", "--sizes", "i=3")
    assert code == 0 and out == "d/dx0 = ij->j  (G)\n"
    code, _, err = run(capsys, "grad", "j->ij")
    assert code == 2 and "sizes={'i': N}" in err


def test_grad_wrong_number_of_names(capsys):
    code, _, err = run(capsys, "grad", "ik,jk->ij", "--names", "X")
    assert code == 2 and "--names gives 1 name(s) but the spec names 2 operand(s)" in err


def test_grad_wrt_out_of_range(capsys):
    code, _, err = run(capsys, "grad", "ik,jk->ij", "--wrt", "5")
    assert code == 2 and err.startswith("einsgrad: wrt=5 is out of range")


# -- jacobian -----------------------------------------------------------------------------------


def test_jacobian_with_shapes(capsys):
    code, out, _ = run(capsys, "jacobian", "ik,jk->ij", "--wrt", "1", "--shapes", "4x3,5x3",
                       "--names", "X,W")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "∂Y/∂W = ik->ijjk"
    assert "∂Y[i,j]/∂W[j,k]" in lines[1] and "j in both: Kronecker delta" in lines[1]
    assert "shape 4x5x5x3 (300 elements)" in lines[2]


def test_jacobian_of_every_operand_without_shapes(capsys):
    code, out, _ = run(capsys, "jacobian", "ii->")
    assert code == 0 and out.splitlines()[0] == "∂Y/∂x0 = ->ii"


def test_jacobian_binds_the_ellipsis(capsys):
    """Output and operand both hold '...': without shapes it is refused, with them bound."""
    code, _, err = run(capsys, "jacobian", "...ij,...jk->...ik", "--wrt", "0")
    assert code == 2 and "needs the batch dimensions named" in err
    code, out, _ = run(capsys, "jacobian", "...ij,...jk->...ik", "--wrt", "0", "--shapes", "2x4x3,3x5")
    assert code == 0 and "shape 2x4x5x2x4x3" in out


# -- codegen ------------------------------------------------------------------------------------


def test_codegen_to_stdout(capsys):
    code, out, _ = run(capsys, "codegen", "ik,jk->ij", "--shapes", "4x3,5x3")
    assert code == 0
    assert out.startswith('"""Forward and gradients of the einsum \'ik,jk->ij\'')
    for name in ("forward", "vjp", "forward_saving", "pullback"):
        assert f"\ndef {name}(" in out


def test_codegen_writes_an_importable_module(capsys, tmp_path):
    path = tmp_path / "linear.py"
    code, out, _ = run(capsys, "codegen", "ik,jk->ij", "--shapes", "4x3,5x3", "--dtype", "float32",
                       "-o", str(path))
    assert code == 0 and str(path) in out
    module = import_file(path)
    rng = np.random.default_rng(0)
    X, W = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((5, 3)).astype(np.float32)
    G = rng.standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_allclose(module.forward(X, W), X @ W.T, rtol=1e-5)
    y, saved = module.forward_saving(X, W)
    for got, want in zip(module.pullback(G, *saved), (G @ W, G.T @ X)):
        np.testing.assert_allclose(got, want, rtol=1e-5)
        assert got.dtype == np.float32


def test_codegen_scalar_operand(capsys, tmp_path):
    path = tmp_path / "scale.py"
    assert main(["codegen", ",i->i", "--shapes", "(),3", "-o", str(path)]) == 0
    module = import_file(path)
    np.testing.assert_array_equal(module.forward(np.float64(2.0), np.arange(3.0)), [0.0, 2.0, 4.0])


def test_codegen_bad_dtype(capsys):
    code, _, err = run(capsys, "codegen", "ik,jk->ij", "--shapes", "4x3,5x3", "--dtype", "U3")
    assert code == 2 and "not numeric" in err


def test_codegen_unwritable_file(capsys, tmp_path):
    code, _, err = run(capsys, "codegen", "ik,jk->ij", "--shapes", "4x3,5x3",
                       "-o", str(tmp_path / "missing" / "x.py"))
    assert code == 2 and err.startswith("einsgrad: cannot write")


def test_codegen_refuses_hostile_spec(capsys):
    spec = 'ij->i"; import builtins; builtins.EINSGRAD_SENTINEL = 1 #'
    code, out, err = run(capsys, "codegen", spec, "--shapes", "2x3")
    assert code == 2 and not out
    assert "is not allowed in a spec" in err and "^" in err
    assert not hasattr(builtins, "EINSGRAD_SENTINEL")


# -- plan ---------------------------------------------------------------------------------------


def test_plan_matmul(capsys):
    m, k, n = 4, 3, 5
    code, out, _ = run(capsys, "plan", "ik,kj->ij", "--shapes", f"{m}x{k},{k}x{n}")
    assert code == 0
    rows: dict = {}
    for line in filter(str.split, out.splitlines()):  # the table comes first
        rows.setdefault(line.split()[0], line.split())
    assert rows["forward"][1] == f"{2 * m * n * k:,}"
    assert rows["pullback"][1] == f"{4 * m * n * k:,}"
    assert "y = ik,kj->ij" in out


def test_plan_options(capsys):
    code, out, _ = run(capsys, "plan", "ab,bc,cd->ad", "--shapes", "4x16,16x16,16x4",
                       "--optimize", "greedy", "--memory-limit", "8")
    assert code == 0 and "sliced:" in out
    code, _, err = run(capsys, "plan", "ik,kj->ij", "--shapes", "4x3,3x5", "--optimize", "fastest")
    assert code == 2 and "is not an opt_einsum path optimizer" in err


# -- bad input, help ------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    pytest.param(["grad", "ik,jk->iq"], id="grad"),
    pytest.param(["jacobian", "ik,jk->iq", "--wrt", "0"], id="jacobian"),
    pytest.param(["codegen", "ik,jk->iq", "--shapes", "4x3,5x3"], id="codegen"),
    pytest.param(["plan", "ik,jk->iq", "--shapes", "4x3,5x3"], id="plan"),
    pytest.param(["demo", "ik,jk->iq"], id="demo"),
    pytest.param(["ik,jk->iq"], id="no subcommand"),
])
def test_bad_spec_prints_the_caret_and_exits_2(capsys, argv):
    code, out, err = run(capsys, *argv)
    assert code == 2 and not out
    lines = err.splitlines()
    assert lines[0].startswith("einsgrad: output label 'q' appears in no input")
    assert lines[1:] == ["    ik,jk->iq", "            ^"]
    assert "Traceback" not in err


def test_shape_mismatch_names_the_operand(capsys):
    code, _, err = run(capsys, "plan", "ik,jk->ij", "--shapes", "4x3,5x2")
    assert code == 2 and "label 'k' has size 3 in operand 0 but 2 in operand 1" in err


@pytest.mark.parametrize("argv, message", [
    pytest.param(["grad", "ik,jk->ij", "--wrt", "x"], "invalid int value", id="wrt not an int"),
    pytest.param(["plan", "ik,jk->ij"], "--shapes", id="missing shapes"),
    pytest.param(["codegen", "ik,jk->ij", "--shapes", "4x"], "bad shape", id="bad shapes"),
    pytest.param(["explain", "ik,jk->ij", "--style", "poetry"], "invalid choice", id="bad style"),
    pytest.param(["grad", "ik,jk->ij", "--sizes", "i"], "bad size", id="bad sizes"),
])
def test_bad_arguments_exit_2_with_one_line(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and not out
    assert err.startswith("einsgrad: ") and message in err and err.count("\n") == 1
    assert f"'einsgrad {argv[0]} --help' shows the usage" in err


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "bench"])
def test_help_of_each_subcommand(capsys, command):
    with pytest.raises(SystemExit, match="0"):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert out.startswith(f"usage: einsgrad {command}")


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit, match="0"):
        main(["--help"])
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert f"\n    {command} " in out, command
    assert "scalar operand ()" in out


# -- bench, demo ----------------------------------------------------------------------------------


def test_bench_passes_the_arguments_on(capsys, monkeypatch):
    seen = []
    fake = types.ModuleType("benchmarks.__main__")
    fake.main = lambda argv: seen.append(argv) or 0
    monkeypatch.setitem(sys.modules, "benchmarks.__main__", fake)
    assert main(["bench", "--quick", "--cases", "linear"]) == 0
    assert seen == [["--quick", "--cases", "linear"]]


def test_bench_help_is_the_runners(capsys):
    with pytest.raises(SystemExit, match="0"):
        main(["bench", "--help"])
    assert "usage: python -m benchmarks" in capsys.readouterr().out


def test_bench_without_the_benchmarks(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "benchmarks.__main__", None)  # makes the import fail
    code, _, err = run(capsys, "bench", "--quick")
    assert code == 2
    assert "einsgrad: the benchmarks cannot be imported" in err and 'pip install -e ".[bench]"' in err


def test_explain_plumbing(capsys, monkeypatch):
    """Every option reaches ``einsgrad.explain`` (a stand-in here; see test_cli_explain.py)."""
    calls = []

    class Explanation:
        def __str__(self):
            return "text form"

        def latex(self):
            return "latex form"

    def explain(spec, **options):
        calls.append((spec, options))
        return Explanation()

    monkeypatch.setattr(einsgrad, "explain", explain, raising=False)
    code, out, _ = run(capsys, "explain", "ik,jk->ij", "--names", "X,W", "--out", "Z", "--style",
                       "differential", "--wrt", "1")
    assert code == 0 and out == "text form\n"
    assert calls[-1] == ("ik,jk->ij", {"names": ["X", "W"], "out": "Z", "style": "differential",
                                       "elementwise": False, "sizes": None, "wrt": 1})
    code, out, _ = run(capsys, "explain", "ik,jk->ij", "--latex", "--elementwise", "--sizes", "i=2,j=2,k=2")
    assert code == 0 and out == "latex form\n"
    assert calls[-1] == ("ik,jk->ij", {"names": None, "out": None, "style": "index", "elementwise": True,
                                       "sizes": {"i": 2, "j": 2, "k": 2}, "wrt": None})


def test_demo_is_the_default(capsys):
    """Plain ``einsgrad`` runs the demo on the linear layer, as ``python -m einsgrad`` did."""
    code, out, _ = run(capsys)
    assert code == 0
    assert out.startswith("forward   ik,jk->ij   shapes (4, 3), (5, 3)")
    assert "d/d x1    ij,ik->jk" in out and "agree with central finite differences" in out
    assert "def pullback(" in out


@pytest.mark.parametrize("argv", [
    pytest.param(["abc,cde->abde", "2x3x4", "4x3x5"], id="shapes as words"),
    pytest.param(["demo", "abc,cde->abde", "2x3x4,4x3x5"], id="shapes as a list"),
])
def test_demo_with_shapes(capsys, argv):
    code, out, _ = run(capsys, *argv)
    assert code == 0 and "shapes (2, 3, 4), (4, 3, 5)" in out


def test_demo_picks_shapes_and_takes_sizes(capsys):
    code, out, _ = run(capsys, "demo", "j->ij", "--sizes", "i=3")
    assert code == 0 and "shapes (4,)" in out and "d/d x0    ij->j" in out


# -- the installed console script ---------------------------------------------------------------


def _console_script() -> str | None:
    beside = Path(sys.executable).parent / ("einsgrad.exe" if os.name == "nt" else "einsgrad")
    return str(beside) if beside.exists() else shutil.which("einsgrad")


@pytest.mark.skipif(_console_script() is None, reason="the einsgrad console script is not installed")
def test_console_script():
    result = subprocess.run([_console_script(), "grad", "ik,jk->ij", "--wrt", "1"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "d/dx1 = ij,ik->jk  (G, x0)\n"
