"""The ``einsgrad`` command's grammar: its subcommands, their options, the argument types.

:func:`build_parser` makes the parser that :mod:`einsgrad.cli` runs; each subcommand's
parsed arguments name it in ``args.command``, which the command line maps to its handler.
Errors are :class:`UsageError` (one line, without the usage), never argparse's exit.
"""

from __future__ import annotations

import argparse
import re

from einsgrad.spec import ELLIPSIS

EPILOG = """\
Without a subcommand, 'einsgrad SPEC [SHAPES...]' runs 'einsgrad demo SPEC [SHAPES...]' when
SPEC holds -> or , (plain 'einsgrad': the linear layer ik,jk->ij); any other first word is a
subcommand, so a typo is refused ('einsgrad demo ij' runs the demo of an implicit-mode spec).
A spec starting with - is given after -- or as --spec SPEC: einsgrad grad -- '->'.
Options are written in full, never abbreviated.
'einsgrad COMMAND --help' describes each.

Shapes are written 4x3,5x3 (a vector 7, a scalar operand (): quote it in a shell), sizes
i=4,j=3 (and ...=2x3 for batch dimensions only the output has). A bad spec or argument prints
one line 'einsgrad: <what is wrong>' (a bad spec with a caret under the problem) and exits with
status 2. Symbols an ASCII-only output cannot show are written d, sum, delta, ^T (set
PYTHONIOENCODING=utf-8 to see them).

examples:
  einsgrad grad 'ik,jk->ij' --names X,W
  einsgrad jacobian 'ik,jk->ij' --wrt 1 --shapes 4x3,5x3
  einsgrad plan 'ab,bc,cd->ad' --shapes 2x30,30x3,3x40
  einsgrad codegen 'ik,jk->ij' --shapes 4x3,5x3 -o linear.py
  einsgrad program 'f = x[i] * A[i,j] * x[j]' --hessian
  einsgrad matrix 'L = 0.5 * norm(tanh(X @ W.T + b) - T)^2' --rank b=1 --wrt W
"""
COMMANDS = ("grad", "explain", "jacobian", "codegen", "plan", "program", "matrix", "bench", "demo")


class UsageError(Exception):
    """A command line argparse refuses; the message is one line, without the usage."""


class ArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are :class:`UsageError`, for :func:`einsgrad.cli.main` to print.

    Options are not abbreviated (``allow_abbrev=False``): an abbreviation could swallow a typo, and
    ``codegen --out Y`` would write the file ``Y`` as ``--output Y``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str):
        raise UsageError(f"{message} ('{self.prog} --help' shows the usage)")


# -- argument types ---------------------------------------------------------------------------


def shape_list(text: str) -> list[tuple[int, ...]]:
    """``"4x3,5x3"`` -> ``[(4, 3), (5, 3)]``; ``"()"`` is a scalar operand, ``"7"`` a vector."""
    return [_shape(part.strip(), text) for part in text.split(",")]


def _shape(part: str, text: str) -> tuple[int, ...]:
    if part == "()":
        return ()
    if not part:
        raise argparse.ArgumentTypeError(
            f"empty shape in {text!r}: write a scalar operand as (), shapes as 4x3,5x3")
    try:
        dims = tuple(int(d) for d in part.split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad shape {part!r} in {text!r}: write shapes as 4x3,5x3") from None
    if any(d < 0 for d in dims):
        raise argparse.ArgumentTypeError(f"bad shape {part!r}: sizes are non-negative")
    return dims


def size_map(text: str) -> dict:
    """``"i=4,j=3"`` -> ``{"i": 4, "j": 3}``; ``"...=2x3"`` gives the batch shape ``(2, 3)``."""
    sizes = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        label, equals, value = item.partition("=")
        label = label.strip()
        if not equals or not label:
            raise argparse.ArgumentTypeError(f"bad size {item!r}: write sizes as i=4,j=3")
        sizes[label] = _shape(value.strip(), text) if label == ELLIPSIS else _size(value, item)
    return sizes


def _size(value: str, item: str) -> int:
    try:
        size = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size {item!r}: a size is an integer") from None
    if size < 0:
        raise argparse.ArgumentTypeError(f"bad size {item!r}: sizes are non-negative")
    return size


def optimizer(text: str):
    """``--optimize``: an optimizer name, or a path written ``0,1 0,1`` (one step per word,
    positions as opt_einsum numbers them), checked when the einsum is compiled."""
    if not re.fullmatch(r"[\d, ]+", text):
        return text
    try:
        return [tuple(int(i) for i in step.split(",")) for step in text.split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad path {text!r}: write a path as 0,1 0,1 (the positions "
                                         "each step contracts)") from None


def declarations(text: str) -> dict[str, int | tuple[int, ...]]:
    """``--rank``: ``"x=1,A=2"`` -> ``{"x": 1, "A": 2}``: a number is a rank, an example shape
    is written ``256x512``, or in parentheses, ``(7)`` for a vector and ``()`` for a scalar."""
    found = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, equals, value = (part.strip() for part in item.partition("="))
        if not equals or not name or not value:
            raise argparse.ArgumentTypeError(f"bad declaration {item!r}: write x=1,A=2 (ranks) or "
                                             "X=256x512, x=(7) (example shapes)")
        if value.startswith("(") and value.endswith(")") and value != "()":
            value = value[1:-1].strip()
            found[name] = _shape(value, text) if value else ()
        elif "x" in value or value == "()":
            found[name] = _shape(value, text)
        else:
            found[name] = _size(value, item)
    return found


def name_list(text: str) -> list[str]:
    """``"X,W"`` -> ``["X", "W"]``."""
    names = [part.strip() for part in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"empty name in {text!r}: write names as X,W")
    return names


# -- the parser -------------------------------------------------------------------------------


def program_options(sub) -> None:
    """The options ``program`` and ``matrix`` share: which gradients, and how they are shown."""
    sub.add_argument("--wrt", metavar="NAME", help="only the gradient by this input")
    sub.add_argument("--hessian", action="store_true",
                     help="also the Hessian by each input (a scalar program)")
    sub.add_argument("--explain", action="store_true", help="print the derivation instead")
    sub.add_argument("--latex", action="store_true", help="print the derivation as LaTeX")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand; ``args.command`` names the one parsed."""
    parser = ArgumentParser(
        prog="einsgrad", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Derive, explain, plan and generate the gradients of einsum contractions.",
        epilog=EPILOG)
    commands = parser.add_subparsers(title="subcommands", metavar="COMMAND", dest="command")

    def command(name: str, help: str, description: str, spec: bool = True):
        sub = commands.add_parser(name, help=help, description=description)
        if spec:
            spec_arguments(sub, "the forward, e.g. 'ik,jk->ij'")
        return sub

    def spec_arguments(sub, help: str, default=None):
        sub.add_argument("spec", nargs="?", metavar="SPEC", help=f"{help}; after -- or as --spec "
                         "if it starts with -")
        sub.add_argument("--spec", dest="spec_option", metavar="SPEC", help="the spec, as an option")
        sub.set_defaults(default_spec=default)

    def sizes_option(sub):
        sub.add_argument("--sizes", type=size_map, metavar="i=4,j=3",
                         help="sizes of labels only the output has (broadcasts); ...=2x3 for its batch")

    grad = command("grad", "the backward spec of each operand",
                   "Prints the backward spec of each operand (or of operand K), one per line: "
                   "the cotangent G first, then the other operands, as 'd/dW = ij,ik->jk  (G, X)'.")
    grad.add_argument("--wrt", type=int, metavar="K", help="only operand K (negative counts from the end)")
    grad.add_argument("--names", type=name_list, metavar="X,W", help="operand names (default x0,x1,...)")
    sizes_option(grad)

    explain = command("explain", "the gradients in matrix-calculus words",
                      "Prints einsgrad.explain(SPEC, ...): the forward and each gradient, as "
                      "indices or as differentials, or as LaTeX.")
    explain.add_argument("--names", type=name_list, metavar="X,W", help="operand names")
    explain.add_argument("--out", metavar="Y", help="the output's name (default Y, or a letter no label uses)")
    explain.add_argument("--style", choices=("index", "differential", "matrix"), default="index",
                         help="index notation, differentials, or the whole differential derivation "
                              "in matrix notation (default index)")
    explain.add_argument("--latex", action="store_true", help="print LaTeX instead of text")
    explain.add_argument("--elementwise", action="store_true",
                         help="write out every entry (needs --sizes for every label)")
    explain.add_argument("--wrt", type=int, metavar="K", help="only operand K")
    sizes_option(explain)

    jacobian = command("jacobian", "the full Jacobian's spec",
                       "Prints the spec of the Jacobian dY/dX_K: the other operands, and the "
                       "output's labels followed by operand K's (a label in both is a Kronecker "
                       "delta). With --shapes, the spec is bound first (batch dimensions and "
                       "size-1 broadcasts get labels of their own) and the shape is given.")
    jacobian.add_argument("--wrt", type=int, metavar="K", help="only operand K (default: each)")
    jacobian.add_argument("--shapes", type=shape_list, metavar="4x3,5x3", help="operand shapes")
    jacobian.add_argument("--names", type=name_list, metavar="X,W", help="operand names")
    jacobian.add_argument("--out", metavar="Y", help="the output's name (default Y, or a letter no label uses)")
    sizes_option(jacobian)

    codegen = command("codegen", "a standalone numpy, torch or jax module",
                      "Writes a Python module that needs numpy alone, with forward(x0, ...), "
                      "vjp(g, x0, ...), forward_saving(x0, ...) and pullback(g, *saved) for "
                      "exactly these shapes, to standard output or FILE. --backend torch writes "
                      "einsum(x0, ...) as a torch.autograd.Function, --backend jax as a "
                      "jax.custom_vjp, each with vjp(g, x0, ...). Without --shapes (or with "
                      "--generic) the module is shape-generic: it reads sizes from its operands.")
    codegen.add_argument("--shapes", type=shape_list, metavar="4x3,5x3",
                         help="operand shapes (default: none, a shape-generic module)")
    codegen.add_argument("--backend", choices=("numpy", "torch", "jax"), default="numpy",
                         help="the framework the module needs (default numpy)")
    codegen.add_argument("--generic", action="store_true",
                         help="shape-generic code for every shape of the class of --shapes")
    codegen.add_argument("--dtype", default="float64", help="every operand's dtype (default float64)")
    codegen.add_argument("-o", "--output", metavar="FILE", help="write the module here (a new file)")
    codegen.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    sizes_option(codegen)

    plan = command("plan", "contraction paths and FLOPs of forward and gradients",
                   "Prints the path and costs of the forward, the one-shot vjp and the "
                   "forward/pullback pair (FLOPs, largest intermediate, memory kept for the "
                   "pullback), against recomputing each gradient.")
    plan.add_argument("--shapes", type=shape_list, required=True, metavar="4x3,5x3", help="operand shapes")
    plan.add_argument("--optimize", type=optimizer, default="auto", metavar="NAME|PATH",
                      help="an opt_einsum path optimizer (default auto), or a path: 0,1 0,1")
    plan.add_argument("--memory-limit", type=int, metavar="N", help="the largest intermediate, in elements")
    sizes_option(plan)

    program = commands.add_parser("program", help="a program's gradients (einsgrad.program)",
                                  description="Prints the program in canonical form and the "
                                  "gradient of each input (or of --wrt NAME), as programs: "
                                  "'d/dx: g[i] = ...'. A scalar output's gradient is g, another's "
                                  "d<input>, with the cotangent d<output> as an input.")
    program.set_defaults(spec_option=None, default_spec=None)
    program.add_argument("spec", metavar="PROGRAM", help="e.g. 'f = x[i] * A[i,j] * x[j]'")
    program_options(program)

    matrix = commands.add_parser("matrix", help="matrix notation's index program and gradients "
                                 "(einsgrad.matrix)",
                                 description="Prints the index program that the matrix text means "
                                 "(einsgrad.matrix), then the gradient of each input (or of --wrt "
                                 "NAME) as programs, as 'einsgrad program' does. Ranks follow "
                                 "matrixcalculus.org (a-g scalars, h-z vectors, capitals matrices) "
                                 "unless declared with --rank.")
    matrix.set_defaults(spec_option=None, default_spec=None)
    matrix.add_argument("spec", metavar="TEXT", help="e.g. 'L = norm(X @ w - y)^2'")
    matrix.add_argument("--rank", type=declarations, action="append", default=[], metavar="x=1,A=2",
                        help="declare ranks (0, 1, 2) or example shapes (X=256x512); may repeat")
    program_options(matrix)

    bench = command("bench", "the benchmark suite (python -m benchmarks)",
                    "Passes ARGS to the benchmark runner (einsgrad bench --help shows its options). "
                    "Needs a checkout of einsgrad and pip install -e '.[bench]'.", spec=False)
    bench.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the benchmark runner")

    demo = commands.add_parser("demo", help="einsgrad at work on one spec (the default)",
                               description="Prints the backward specs, checks the gradients of "
                               "random operands against central finite differences, and shows "
                               "the generated code. Exits 1 if the check fails.")
    spec_arguments(demo, "the forward (default: the linear layer ik,jk->ij)", default="ik,jk->ij")
    demo.add_argument("shapes", nargs="*", type=shape_list, metavar="SHAPES",
                      help="operand shapes, as 4x3 5x3 or 4x3,5x3 (default: sizes 4, 3, 5, ... "
                      "for the labels in order)")
    sizes_option(demo)
    return parser
