"""``einsgrad explain``: the command prints ``einsgrad.explain(...)`` or its LaTeX.

These tests need ``einsgrad.explain(spec, *, names=None, out="Y", style="index",
elementwise=False, sizes=None, wrt=None)``; the command's argument passing alone is tested
with a stand-in in test_cli.py.
"""

from __future__ import annotations

import pytest

import einsgrad
from einsgrad.cli import main


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv, options", [
    pytest.param([], {}, id="defaults"),
    pytest.param(["--names", "X,W"], {"names": ["X", "W"]}, id="names"),
    pytest.param(["--names", "X,W", "--out", "Z"], {"names": ["X", "W"], "out": "Z"}, id="output name"),
    pytest.param(["--style", "differential"], {"style": "differential"}, id="differentials"),
    pytest.param(["--wrt", "1"], {"wrt": 1}, id="one operand"),
    pytest.param(["--elementwise", "--sizes", "i=2,j=2,k=2"],
                 {"elementwise": True, "sizes": {"i": 2, "j": 2, "k": 2}}, id="elementwise"),
])
def test_explain_prints_the_explanation(capsys, argv, options):
    code, out, err = run(capsys, "explain", "ik,jk->ij", *argv)
    assert code == 0, err
    assert out == str(einsgrad.explain("ik,jk->ij", **options)) + "\n"
    assert out.strip()


def test_explain_names_appear(capsys):
    code, out, _ = run(capsys, "explain", "ik,jk->ij", "--names", "X,W")
    assert code == 0 and "X" in out and "W" in out


@pytest.mark.parametrize("argv, options", [
    pytest.param([], {}, id="index"),
    pytest.param(["--style", "differential", "--names", "X,W"],
                 {"style": "differential", "names": ["X", "W"]}, id="differential"),
])
def test_explain_latex(capsys, argv, options):
    code, out, err = run(capsys, "explain", "ik,jk->ij", "--latex", *argv)
    assert code == 0, err
    assert out == einsgrad.explain("ik,jk->ij", **options).latex() + "\n"
    assert "\\" in out  # LaTeX commands


def test_explain_bad_spec(capsys):
    code, out, err = run(capsys, "explain", "ik,jk->iq")
    assert code == 2 and not out
    assert err.startswith("einsgrad: output label 'q' appears in no input")
    assert err.splitlines()[-1].strip() == "^" and "Traceback" not in err
