"""The ``einsgrad`` command (also ``python -m einsgrad``): derive, explain, plan and generate.

Subcommands, each with ``--help``::

    einsgrad grad SPEC [--wrt K] [--names X,W] [--sizes i=4]     backward specs
    einsgrad explain SPEC [--names X,W] [--out Y] [--style index|differential] [--latex] ...
    einsgrad jacobian SPEC [--wrt K] [--shapes 4x3,5x3]          the full Jacobian's spec
    einsgrad codegen SPEC --shapes 4x3,5x3 [--dtype float32] [-o FILE]   a numpy-only module
    einsgrad plan SPEC --shapes 4x3,5x3 [--optimize dp] [--memory-limit N]  paths and FLOPs
    einsgrad bench [ARGS...]                                     the benchmark suite
    einsgrad demo [SPEC [SHAPES...]]                             einsgrad at work on one spec

``einsgrad SPEC [SHAPES...]`` (no subcommand) runs the demo, as does plain ``einsgrad``. Shapes
are written ``4x3,5x3`` (a 1-d operand ``7``, a scalar operand ``()``: quote it in a shell),
sizes ``i=4,j=3`` (and ``...=2x3`` for batch dimensions only the output has). A bad spec or
argument prints ``einsgrad: <what is wrong>`` (with the spec and a caret under the problem)
and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys

import numpy as np

import einsgrad
from einsgrad.errors import EinsumSpecError
from einsgrad.shapes import bind
from einsgrad.spec import ELLIPSIS, normalize_sizes, parse

EPILOG = """\
Without a subcommand, 'einsgrad SPEC [SHAPES...]' runs 'einsgrad demo SPEC [SHAPES...]'
(plain 'einsgrad': the linear layer ik,jk->ij). 'einsgrad COMMAND --help' describes each.

Shapes are written 4x3,5x3 (a vector 7, a scalar operand (): quote it in a shell), sizes
i=4,j=3 (and ...=2x3 for batch dimensions only the output has). A bad spec prints
'einsgrad: <what is wrong>' with a caret under the problem and exits with status 2.

examples:
  einsgrad grad 'ik,jk->ij' --names X,W
  einsgrad jacobian 'ik,jk->ij' --wrt 1 --shapes 4x3,5x3
  einsgrad plan 'ab,bc,cd->ad' --shapes 2x30,30x3,3x40
  einsgrad codegen 'ik,jk->ij' --shapes 4x3,5x3 -o linear.py
"""
COMMANDS = ("grad", "explain", "jacobian", "codegen", "plan", "bench", "demo")
DEMO_SIZES = (4, 3, 5, 2, 6, 7, 8, 9)  # distinct sizes make a transposition bug visible


def main(argv: list[str] | None = None) -> int:
    """Runs the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # everything after it belongs to the benchmark runner
        return _bench(argv[1:])
    if not argv or argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv = ["demo", *argv]
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except EinsumSpecError as error:
        print(f"einsgrad: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (einsgrad ... | head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


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


def name_list(text: str) -> list[str]:
    """``"X,W"`` -> ``["X", "W"]``."""
    names = [part.strip() for part in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"empty name in {text!r}: write names as X,W")
    return names


# -- the parser -------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="einsgrad", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Derive, explain, plan and generate the gradients of einsum contractions.",
        epilog=EPILOG)
    commands = parser.add_subparsers(title="subcommands", metavar="COMMAND")

    def command(name: str, handler, help: str, description: str):
        sub = commands.add_parser(name, help=help, description=description)
        sub.set_defaults(handler=handler)
        if name != "bench":
            sub.add_argument("spec", metavar="SPEC", help="the forward, e.g. 'ik,jk->ij'")
        return sub

    def sizes_option(sub):
        sub.add_argument("--sizes", type=size_map, metavar="i=4,j=3",
                         help="sizes of labels only the output has (broadcasts); ...=2x3 for its batch")

    grad = command("grad", _grad, "the backward spec of each operand",
                   "Prints the backward spec of each operand (or of operand K), one per line: "
                   "the cotangent G first, then the other operands, as 'd/dW = ij,ik->jk  (G, X)'.")
    grad.add_argument("--wrt", type=int, metavar="K", help="only operand K (negative counts from the end)")
    grad.add_argument("--names", type=name_list, metavar="X,W", help="operand names (default x0,x1,...)")
    sizes_option(grad)

    explain = command("explain", _explain, "the gradients in matrix-calculus words",
                      "Prints einsgrad.explain(SPEC, ...): the forward and each gradient, as "
                      "indices or as differentials, or as LaTeX.")
    explain.add_argument("--names", type=name_list, metavar="X,W", help="operand names")
    explain.add_argument("--out", default="Y", metavar="Y", help="the output's name (default Y)")
    explain.add_argument("--style", choices=("index", "differential"), default="index",
                         help="index notation or differentials (default index)")
    explain.add_argument("--latex", action="store_true", help="print LaTeX instead of text")
    explain.add_argument("--elementwise", action="store_true",
                         help="write out every entry (needs --sizes for every label)")
    explain.add_argument("--wrt", type=int, metavar="K", help="only operand K")
    sizes_option(explain)

    jacobian = command("jacobian", _jacobian, "the full Jacobian's spec",
                       "Prints the spec of the Jacobian dY/dX_K: the other operands, and the "
                       "output's labels followed by operand K's (a label in both is a Kronecker "
                       "delta). With --shapes, the spec is bound first (batch dimensions and "
                       "size-1 broadcasts get labels of their own) and the shape is given.")
    jacobian.add_argument("--wrt", type=int, metavar="K", help="only operand K (default: each)")
    jacobian.add_argument("--shapes", type=shape_list, metavar="4x3,5x3", help="operand shapes")
    jacobian.add_argument("--names", type=name_list, metavar="X,W", help="operand names")
    jacobian.add_argument("--out", default="Y", metavar="Y", help="the output's name (default Y)")
    sizes_option(jacobian)

    codegen = command("codegen", _codegen, "a standalone numpy module for given shapes",
                      "Writes a Python module that needs numpy alone, with forward(x0, ...), "
                      "vjp(g, x0, ...), forward_saving(x0, ...) and pullback(g, *saved) for "
                      "exactly these shapes, to standard output or FILE.")
    codegen.add_argument("--shapes", type=shape_list, required=True, metavar="4x3,5x3", help="operand shapes")
    codegen.add_argument("--dtype", default="float64", help="every operand's dtype (default float64)")
    codegen.add_argument("-o", "--output", metavar="FILE", help="write the module here")
    sizes_option(codegen)

    plan = command("plan", _plan, "contraction paths and FLOPs of forward and gradients",
                   "Prints the path and costs of the forward, the one-shot vjp and the "
                   "forward/pullback pair (FLOPs, largest intermediate, memory kept for the "
                   "pullback), against recomputing each gradient.")
    plan.add_argument("--shapes", type=shape_list, required=True, metavar="4x3,5x3", help="operand shapes")
    plan.add_argument("--optimize", default="auto", help="an opt_einsum path optimizer (default auto)")
    plan.add_argument("--memory-limit", type=int, metavar="N", help="the largest intermediate, in elements")
    sizes_option(plan)

    bench = command("bench", None, "the benchmark suite (python -m benchmarks)",
                    "Passes ARGS to the benchmark runner (einsgrad bench --help shows its options). "
                    "Needs a checkout of einsgrad and pip install -e '.[bench]'.")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the benchmark runner")

    demo = commands.add_parser("demo", help="einsgrad at work on one spec (the default)",
                               description="Prints the backward specs, checks the gradients of "
                               "random operands against central finite differences, and shows "
                               "the generated code. Exits 1 if the check fails.")
    demo.set_defaults(handler=_demo)
    demo.add_argument("spec", nargs="?", default="ik,jk->ij", metavar="SPEC",
                      help="the forward (default: the linear layer ik,jk->ij)")
    demo.add_argument("shapes", nargs="*", metavar="SHAPES",
                      help="operand shapes, as 4x3 5x3 or 4x3,5x3 (default: sizes 4, 3, 5, ... "
                      "for the labels in order)")
    sizes_option(demo)
    return parser


# -- the subcommands ----------------------------------------------------------------------------


def _operand_names(names, count: int, spec: str) -> list[str]:
    if names is None:
        return [f"x{k}" for k in range(count)]
    if len(names) != count:
        raise EinsumSpecError(f"--names gives {len(names)} name(s) but the spec names {count} operand(s)", spec)
    return names


def _indices(wrt, spec) -> range | list[int]:
    if wrt is None:
        return range(len(spec.inputs))
    return [einsgrad.derive.check_wrt(spec, wrt)]


def _grad(args) -> int:
    spec = parse(args.spec, args.sizes)
    names = _operand_names(args.names, len(spec.inputs), args.spec)
    for k in _indices(args.wrt, spec):
        backward = einsgrad.derive.backward(spec, k)
        print(f"d/d{names[k]} = {backward}  ({', '.join(['G'] + names[:k] + names[k + 1:])})")
    return 0


def _explain(args) -> int:
    explanation = einsgrad.explain(args.spec, names=args.names, out=args.out, style=args.style,
                          elementwise=args.elementwise, sizes=args.sizes, wrt=args.wrt)
    print(explanation.latex() if args.latex else str(explanation))
    return 0


def _jacobian(args) -> int:
    spec = parse(args.spec, args.sizes)
    names = _operand_names(args.names, len(spec.inputs), args.spec)
    bound = None
    if args.shapes is not None:
        bound = bind(spec, args.shapes, dict(normalize_sizes(spec, args.sizes)))
    labels = bound.spec if bound else spec
    for k in _indices(args.wrt, spec):
        print(f"∂{args.out}/∂{names[k]} = {einsgrad.derive.jacobian(labels, k)}")
        out, own = labels.output, labels.inputs[k]
        deltas = "".join(dict.fromkeys(l for l in own if l in out))
        line = f"  entries ∂{args.out}[{','.join(out)}]/∂{names[k]}[{','.join(own)}]"
        if deltas:
            line += f"; {', '.join(deltas)} in both: Kronecker delta{'s' * (len(deltas) > 1)}"
        print(line)
        if bound is not None:
            shape = bound.output_shape + bound.input_shapes[k]
            print(f"  shape {'x'.join(map(str, shape)) or '()'} ({math.prod(shape):,} elements) "
                  "for the given shapes")
    return 0


def _codegen(args) -> int:
    compiled = einsgrad.compile(args.spec, sizes=args.sizes)
    text = compiled.module(*args.shapes, dtypes=args.dtype)
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        with open(args.output, "w", encoding="utf-8") as file:
            file.write(text)
    except OSError as error:
        print(f"einsgrad: cannot write {args.output}: {error.strerror}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}: forward, vjp, forward_saving, pullback for {compiled.spec}")
    return 0


def _plan(args) -> int:
    compiled = einsgrad.compile(args.spec, sizes=args.sizes, optimize=args.optimize,
                                memory_limit=args.memory_limit)
    print(compiled.plan(*args.shapes))
    return 0


def _bench(argv: list[str]) -> int:
    """Runs ``benchmarks.__main__.main(argv)``; the package sits at a checkout's root."""
    try:
        runner = _benchmark_runner()
    except ImportError as error:
        print(f"einsgrad: the benchmarks cannot be imported ({error}); run 'einsgrad bench' from a "
              "checkout of einsgrad (the directory holding benchmarks/), after "
              "pip install -e \".[bench]\"", file=sys.stderr)
        return 2
    return runner(argv)


def _benchmark_runner():
    try:
        return importlib.import_module("benchmarks.__main__").main
    except ModuleNotFoundError as error:
        here = os.getcwd()
        if error.name != "benchmarks" or not os.path.isfile(os.path.join(here, "benchmarks", "__main__.py")):
            raise
    sys.path.insert(0, here)  # a console script does not put the working directory on the path
    return importlib.import_module("benchmarks.__main__").main


def _demo(args) -> int:
    """Backward specs, a finite-difference check of random operands, the generated code."""
    spec = parse(args.spec, args.sizes)
    shapes = shape_list(",".join(args.shapes)) if args.shapes else _demo_shapes(spec)
    lin = einsgrad.compile(args.spec, shapes=shapes, sizes=args.sizes)
    print(f"forward   {lin.spec}   shapes {', '.join(map(str, shapes))}")
    for k, backward in enumerate(lin.grad_specs):
        print(f"d/d x{k}    {backward}")
    rng = np.random.default_rng(0)
    operands = [rng.standard_normal(s) for s in shapes]
    y, pullback = lin.value_and_pullback(*operands)
    g = rng.standard_normal(np.shape(y))
    loss = lambda *ops: float(np.sum(g * lin(*ops)))  # noqa: E731
    worst = 0.0
    for k, grad in enumerate(pullback(g)):
        u, eps = rng.standard_normal(shapes[k]), 1e-4
        plus, minus = list(operands), list(operands)
        plus[k], minus[k] = operands[k] + eps * u, operands[k] - eps * u
        numeric = (loss(*plus) - loss(*minus)) / (2 * eps)
        worst = max(worst, abs(numeric - float(np.sum(grad * u))) / max(1.0, abs(numeric)))
    print(f"gradients agree with central finite differences: relative error {worst:.1e}")
    print()
    print(lin.source())
    return 0 if worst < 1e-6 else 1


def _demo_shapes(spec) -> list[tuple[int, ...]]:
    """Sizes 4, 3, 5, 2, ... for the labels in order of appearance; (2,) for an ellipsis."""
    size = dict(zip(spec.labels, DEMO_SIZES * (1 + len(spec.labels) // len(DEMO_SIZES))))
    return [tuple(d for label in term for d in ((2,) if label == ELLIPSIS else (size[label],)))
            for term in spec.inputs]
