"""Every example in README.md runs, and shows what it says it shows.

Read from the README itself, so an example cannot drift from the code:

* ``python`` blocks run statement by statement; a statement whose comment is a repr
  (``# 'ij,ik->jk'``) must have that value, and a ``print`` whose comment is a formula
  (``# g[i] = ...``) must print it first. ``X``, ``W``, ``G``, ``b`` are the linear layer's.
* ``>>>`` blocks run their statement and must print the lines below it (an exception: its
  type and message).
* ``$ einsgrad ...`` lines run the command line in a fresh folder and must print the lines
  below them (up to a ``...`` line); ``[--option]`` parts run once each, added to the base.
* A block introduced by ``(`einsgrad ...`):`` is (a part of) that command's output.
* The main job's command is the line the README gives.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import io
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

import einsgrad
from einsgrad.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"
TEXT = README.read_text(encoding="utf-8")
LIBRARIES = ("torch", "jax", "dask", "cotengra")


def fenced_blocks() -> list[tuple[str, str, int, str]]:
    """(info string, body, first line number, the text line before the fence) per block."""
    blocks, lines, i = [], TEXT.splitlines(), 0
    while i < len(lines):
        if lines[i].startswith("```"):
            info, start = lines[i][3:].strip(), i + 1
            end = next(j for j in range(start, len(lines)) if lines[j].startswith("```"))
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            blocks.append((info, "\n".join(lines[start:end]), start + 1, before))
            i = end
        i += 1
    return blocks


BLOCKS = fenced_blocks()


def run_cli(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(argv)
    return code, out.getvalue()


# -- python blocks ----------------------------------------------------------------------------


def _linear_layer() -> dict:
    rng = np.random.default_rng(0)
    X, W = rng.standard_normal((4, 3)), rng.standard_normal((5, 3))
    return {"X": X, "W": W, "G": rng.standard_normal((4, 5)), "b": rng.standard_normal(5)}


def _expected(comment: str) -> str:
    """A comment's claim: the text up to the first run of two spaces."""
    return re.split(r"\s{2,}", comment.strip())[0]


PYTHON = [(body, line) for info, body, line, _ in BLOCKS if info == "python"]


@pytest.mark.parametrize("body, line", [pytest.param(b, n, id=f"line {n}") for b, n in PYTHON])
def test_python_block(body, line, capsys):
    for library in LIBRARIES:
        if re.search(rf"^import .*\b{library}\b", body, re.M) and importlib.util.find_spec(library) is None:
            pytest.skip(f"{library} is not installed")
    source_lines = body.splitlines()
    namespace = {"einsgrad": einsgrad, "np": np, **_linear_layer()}  # the blocks read on from the first
    for statement in ast.parse(body).body:
        text = source_lines[statement.lineno - 1]
        comment = text.split("#", 1)[1] if "#" in text else ""
        code = compile(ast.Module([statement], []), f"README.md:{line + statement.lineno - 1}", "exec")
        if isinstance(statement, ast.Expr) and re.match(r"\s*\(?'", comment):
            value = eval(compile(ast.Expression(statement.value), "README.md", "eval"), namespace)
            assert repr(value) == _expected(comment), text
            continue
        capsys.readouterr()
        exec(code, namespace)
        printed = capsys.readouterr().out
        is_print = isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call) and getattr(
            statement.value.func, "id", None) == "print"
        if is_print and re.search(r"[=\[]", comment):
            assert printed.splitlines()[0] == _expected(comment), text


# -- >>> blocks -------------------------------------------------------------------------------


SESSIONS = [(body, line) for info, body, line, _ in BLOCKS if body.startswith(">>> ")]


@pytest.mark.parametrize("body, line", [pytest.param(b, n, id=f"line {n}") for b, n in SESSIONS])
def test_session_block(body, line, capsys):
    statement, *expected = body.splitlines()
    namespace = {"einsgrad": einsgrad, "np": np}
    try:
        exec(compile(statement[4:], f"README.md:{line}", "exec"), namespace)
        shown = capsys.readouterr().out.rstrip("\n")
    except Exception as error:  # noqa: BLE001 - the block shows the exception
        shown = f"{type(error).__module__}.{type(error).__name__}: {error}"
    assert shown == "\n".join(expected)


# -- command lines ----------------------------------------------------------------------------


def _commands() -> list[tuple[str, list[str], int]]:
    """Each ``$ einsgrad`` line with the lines it shows, in every block that has them."""
    found = []
    for _, body, line, _ in BLOCKS:
        lines = body.splitlines()
        for i, text in enumerate(lines):
            if text.startswith("$ einsgrad"):
                shown = []
                for following in lines[i + 1:]:
                    if following.startswith("$ "):
                        break
                    shown.append(following)
                while shown and not shown[-1].strip():
                    shown.pop()
                found.append((text[2:], shown, line + i))
    return found


def _variants(command: str) -> list[list[str]]:
    """The command without its ``[--...]`` parts, then with each part added."""
    optional = re.findall(r"\[(--[^\]]+)\]", command)
    base = shlex.split(re.sub(r"\s*\[--[^\]]+\]", "", command))
    return [base] + [base + shlex.split(part) for part in optional]


COMMANDS = _commands()


@pytest.mark.parametrize("command, shown, line", [pytest.param(*c, id=f"line {c[2]}") for c in COMMANDS])
def test_command_line(command, shown, line, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if " codegen " in command and "exists" in "\n".join(shown):
        run_cli(shlex.split(command)[1:])  # the README shows the second run, over the first's file
    for i, argv in enumerate(_variants(command)):
        code, out = run_cli(argv[1:])
        assert code == (2 if any(line.startswith("einsgrad: ") for line in shown) else 0), out
        if i == 0 and not (len(shown) == 1 and shown[0].startswith("(")):
            expected = shown[:shown.index("...")] if "..." in shown else shown
            got = out.splitlines()
            assert (got[:len(expected)] if "..." in shown else got) == expected


def test_outputs_introduced_by_their_command():
    checked = 0
    for _, body, _, before in BLOCKS:
        match = re.search(r"\(`(einsgrad [^`]+)`\):$", before)
        if match:
            code, out = run_cli(shlex.split(match.group(1))[1:])
            assert code == 0 and body in out  # the block may show a part of the output
            checked += 1
    assert checked >= 1


def test_main_job_command():
    """The main job ends by running einsgrad on the linear layer; that part runs and explains."""
    block = TEXT.split("<!-- main -->", 1)[1].split("<!-- /main -->", 1)[0]
    command = next(line for line in block.splitlines() if "einsgrad explain" in line)
    argv = shlex.split(command.split("&&")[-1])
    assert argv[0].endswith("einsgrad")
    code, out = run_cli(argv[1:])
    assert code == 0 and "∂L/∂W = Gᵀ X" in out and "∂L/∂X = G W" in out
