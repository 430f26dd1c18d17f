"""The ``einsgrad`` command (also ``python -m einsgrad``): derive, explain, plan and generate.

Subcommands, each with ``--help``::

    einsgrad grad SPEC [--wrt K] [--names X,W] [--sizes i=4]     backward specs
    einsgrad explain SPEC [--names X,W] [--out Y] [--style index|differential] [--latex] ...
    einsgrad jacobian SPEC [--wrt K] [--shapes 4x3,5x3]          the full Jacobian's spec
    einsgrad codegen SPEC --shapes 4x3,5x3 [--dtype float32] [-o FILE [--force]]  a numpy-only module
    einsgrad plan SPEC --shapes 4x3,5x3 [--optimize dp] [--memory-limit N]  paths and FLOPs
    einsgrad program PROGRAM [--wrt x] [--hessian] [--explain] [--latex]   a program's gradients
    einsgrad bench [ARGS...]                                     the benchmark suite
    einsgrad demo [SPEC [SHAPES...]]                             einsgrad at work on one spec

``einsgrad SPEC [SHAPES...]`` (no subcommand) runs the demo, as does plain ``einsgrad``, when
SPEC holds ``->`` or ``,``; any other first word is taken for a subcommand, so a typo
(``einsgrad explian``) is refused as an invalid choice, never run as the demo of an
implicit-mode spec (``einsgrad demo SPEC`` runs that). A spec starting with ``-`` (``->``) is
given after ``--`` or as ``--spec SPEC``. Options are written in full (``--names``, not
``--name``: an abbreviation could swallow a typo). Shapes are written ``4x3,5x3`` (a 1-d operand ``7``, a
scalar operand ``()``: quote it in a shell), sizes ``i=4,j=3`` (and ``...=2x3`` for batch
dimensions only the output has).

A bad spec, argument or file prints one line ``einsgrad: <what is wrong>`` (a bad spec adds the
spec and a caret under the problem) and exits with status 2; so does output that cannot be
written (a full disk). A reader that goes away (``| head``) ends the command quietly. Where
standard output cannot encode the symbols of an explanation (``PYTHONIOENCODING=ascii``), they
are written in ASCII (``∂`` as ``d``, ``Σ`` as ``sum``, ``δ`` as ``delta``, ``ᵀ`` as ``^T``,
any other as ``\\u....``) and a line on stderr says so.
"""

from __future__ import annotations

import argparse
import codecs
import difflib
import importlib
import math
import os
import string
import sys

import numpy as np

import einsgrad
from einsgrad.errors import EinsumSpecError
from einsgrad.shapes import bind
from einsgrad.spec import ELLIPSIS, normalize_sizes, parse

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
"""
COMMANDS = ("grad", "explain", "jacobian", "codegen", "plan", "program", "bench", "demo")
DEMO_SIZES = (4, 3, 5, 2, 6, 7, 8, 9)  # distinct sizes make a transposition bug visible
DEMO_ELEMENTS = 10**6  # the most elements of one random operand or output of the demo


def main(argv: list[str] | None = None) -> int:
    """Runs the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if sys.stdout is None:  # started with standard output closed (einsgrad ... >&-)
        print("einsgrad: standard output is closed; nothing can be written", file=sys.stderr)
        return 2
    if argv[:1] == ["bench"]:  # everything after it belongs to the benchmark runner
        return _bench(argv[1:])
    errors = _degrade_symbols(sys.stdout)
    try:
        status = _run(argv)
        sys.stdout.flush()
    except (UsageError, EinsumSpecError) as error:
        print(f"einsgrad: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (einsgrad ... | head): stop quietly
        _discard_stdout()
        return 1
    except OSError as error:  # a full disk, a closed terminal
        _discard_stdout()
        print(f"einsgrad: cannot write to standard output: {error.strerror or error}", file=sys.stderr)
        return 2
    finally:
        _restore_symbols(sys.stdout, errors)
    return status


def _run(argv: list[str]) -> int:
    """Routes ``argv`` to its subcommand (see the module docstring for the rule) and runs it."""
    if not argv or argv[0] == "--" or _is_spec(argv[0]):
        argv = ["demo", *argv]
    elif argv[0] not in COMMANDS and not argv[0].startswith("-"):
        raise UsageError(_invalid_command(argv[0]))
    args = _parse(_spec_option_joined(argv))
    return args.handler(args)


def _spec_option_joined(argv: list[str]) -> list[str]:
    """``--spec X`` as ``--spec=X``, which argparse reads even where X starts with ``-``."""
    joined, words = [], iter(argv)
    for word in words:
        if word == "--":
            return [*joined, word, *words]
        following = next(words, None) if word == "--spec" else None
        joined.append(word if following is None else f"--spec={following}")
    return joined


def _is_spec(word: str) -> bool:
    """Without a subcommand, a word is a spec if it holds ``->`` or ``,`` (and is no option)."""
    return ("->" in word or "," in word) and not word.startswith("-")


def _invalid_command(word: str) -> str:
    near = difflib.get_close_matches(word, COMMANDS, n=1)
    guess = f"; did you mean {near[0]!r}?" if near else ""
    return (f"invalid choice: {word!r} (choose from {', '.join(COMMANDS)}){guess} "
            f"('einsgrad demo {word}' runs the demo of the implicit-mode spec {word!r})")


class UsageError(Exception):
    """A command line argparse refuses; the message is one line, without the usage."""


class _ArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are :class:`UsageError`, for :func:`main` to print.

    Options are not abbreviated (``allow_abbrev=False``): an abbreviation could swallow a typo, and
    ``codegen --out Y`` would write the file ``Y`` as ``--output Y``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str):
        raise UsageError(f"{message} ('{self.prog} --help' shows the usage)")


# -- output -------------------------------------------------------------------------------------

ASCII_SYMBOLS = {"∂": "d", "Σ": "sum", "Π": "prod", "δ": "delta", "ᵀ": "^T", "∘": "o", "·": "*",
                 "′": "'", "²": "^2", "≠": "!=", "∈": " in ", "±": "+-", "α": "alpha", "β": "beta",
                 "γ": "gamma"}
FAILING_ERRORS = ("strict", "surrogateescape")  # encoding error handlers that raise on ∂
_degraded: set[str] = set()  # the symbols the stream's encoding could not show in this run


def _ascii_symbols(error: UnicodeEncodeError) -> tuple[str, int]:
    """An encoding error handler: ``∂`` as ``d``, ``Σ`` as ``sum``, ...; others as ``\\u2202``."""
    text = error.object[error.start:error.end]
    _degraded.update(text)
    ascii_text = "".join(ASCII_SYMBOLS.get(c) or c.encode("ascii", "backslashreplace").decode() for c in text)
    return ascii_text, error.end


codecs.register_error("einsgrad-ascii", _ascii_symbols)


def _degrade_symbols(stream) -> str | None:
    """Makes ``stream`` write what its encoding cannot show with :func:`_ascii_symbols`.

    Returns the error handler to restore, or None when the stream shows the symbols, has an
    error handler of the user's choice that cannot fail (``PYTHONIOENCODING=ascii:replace``)
    or cannot be reconfigured. ``surrogateescape`` (Python's choice in the C locale) fails.
    """
    encoding = getattr(stream, "encoding", None) or "utf-8"
    if getattr(stream, "errors", None) not in FAILING_ERRORS or not hasattr(stream, "reconfigure"):
        return None
    try:
        "".join(ASCII_SYMBOLS).encode(encoding)
        return None
    except UnicodeEncodeError:
        pass
    except LookupError:
        return None
    previous = stream.errors
    stream.reconfigure(errors="einsgrad-ascii")
    _degraded.clear()
    return previous


def _restore_symbols(stream, errors: str | None) -> None:
    """Undoes :func:`_degrade_symbols`; says on stderr which symbols were written in ASCII."""
    if errors is None:
        return
    try:
        stream.reconfigure(errors=errors)
    except OSError:  # the stream is already broken; its failure has been reported
        pass
    if _degraded:
        written = [f"{ascii(c)[1:-1]} as {ASCII_SYMBOLS[c]!r}"
                   for c in sorted(_degraded) if c in ASCII_SYMBOLS]
        if not _degraded <= ASCII_SYMBOLS.keys():
            written.append("any other as \\uXXXX")
        print(f"einsgrad: standard output's encoding ({stream.encoding}) cannot show every symbol: "
              f"written {', '.join(written)}; set PYTHONIOENCODING=utf-8 (or a UTF-8 locale) to see "
              "them", file=sys.stderr)


def _discard_stdout() -> None:
    """Points standard output at ``os.devnull``, so that the interpreter's last flush cannot fail."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (a test's capture)
        return
    os.dup2(os.open(os.devnull, os.O_WRONLY), fd)


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
    parser = _ArgumentParser(
        prog="einsgrad", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Derive, explain, plan and generate the gradients of einsum contractions.",
        epilog=EPILOG)
    commands = parser.add_subparsers(title="subcommands", metavar="COMMAND", dest="command")

    def command(name: str, handler, help: str, description: str):
        sub = commands.add_parser(name, help=help, description=description)
        sub.set_defaults(handler=handler)
        if handler is not None:
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
    explain.add_argument("--out", metavar="Y", help="the output's name (default Y, or a letter no label uses)")
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
    jacobian.add_argument("--out", metavar="Y", help="the output's name (default Y, or a letter no label uses)")
    sizes_option(jacobian)

    codegen = command("codegen", _codegen, "a standalone numpy module for given shapes",
                      "Writes a Python module that needs numpy alone, with forward(x0, ...), "
                      "vjp(g, x0, ...), forward_saving(x0, ...) and pullback(g, *saved) for "
                      "exactly these shapes, to standard output or FILE.")
    codegen.add_argument("--shapes", type=shape_list, required=True, metavar="4x3,5x3", help="operand shapes")
    codegen.add_argument("--dtype", default="float64", help="every operand's dtype (default float64)")
    codegen.add_argument("-o", "--output", metavar="FILE", help="write the module here (a new file)")
    codegen.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    sizes_option(codegen)

    plan = command("plan", _plan, "contraction paths and FLOPs of forward and gradients",
                   "Prints the path and costs of the forward, the one-shot vjp and the "
                   "forward/pullback pair (FLOPs, largest intermediate, memory kept for the "
                   "pullback), against recomputing each gradient.")
    plan.add_argument("--shapes", type=shape_list, required=True, metavar="4x3,5x3", help="operand shapes")
    plan.add_argument("--optimize", default="auto", help="an opt_einsum path optimizer (default auto)")
    plan.add_argument("--memory-limit", type=int, metavar="N", help="the largest intermediate, in elements")
    sizes_option(plan)

    program = commands.add_parser("program", help="a program's gradients (einsgrad.program)",
                                  description="Prints the program in canonical form and the "
                                  "gradient of each input (or of --wrt NAME), as programs: "
                                  "'d/dx: g[i] = ...'. A scalar output's gradient is g, another's "
                                  "d<input>, with the cotangent d<output> as an input.")
    program.set_defaults(handler=_program, spec_option=None, default_spec=None)
    program.add_argument("spec", metavar="PROGRAM", help="e.g. 'f = x[i] * A[i,j] * x[j]'")
    program.add_argument("--wrt", metavar="NAME", help="only the gradient by this input")
    program.add_argument("--hessian", action="store_true",
                         help="also the Hessian by each input (a scalar program)")
    program.add_argument("--explain", action="store_true", help="print the derivation instead")
    program.add_argument("--latex", action="store_true", help="print the derivation as LaTeX")

    bench = command("bench", None, "the benchmark suite (python -m benchmarks)",
                    "Passes ARGS to the benchmark runner (einsgrad bench --help shows its options). "
                    "Needs a checkout of einsgrad and pip install -e '.[bench]'.")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the benchmark runner")

    demo = commands.add_parser("demo", help="einsgrad at work on one spec (the default)",
                               description="Prints the backward specs, checks the gradients of "
                               "random operands against central finite differences, and shows "
                               "the generated code. Exits 1 if the check fails.")
    demo.set_defaults(handler=_demo)
    spec_arguments(demo, "the forward (default: the linear layer ik,jk->ij)", default="ik,jk->ij")
    demo.add_argument("shapes", nargs="*", type=shape_list, metavar="SHAPES",
                      help="operand shapes, as 4x3 5x3 or 4x3,5x3 (default: sizes 4, 3, 5, ... "
                      "for the labels in order)")
    sizes_option(demo)
    return parser


def _parse(argv: list[str]) -> argparse.Namespace:
    """The parsed ``argv``; the spec given as SPEC, as --spec, or by default, in ``args.spec``."""
    args, extras = _parser().parse_known_args(argv)
    if extras:  # argparse would blame the top-level parser, whose usage does not help
        prog = " ".join(filter(None, ("einsgrad", args.command)))
        raise UsageError(f"unrecognized arguments: {' '.join(extras)} ('{prog} --help' shows the usage)")
    if args.spec_option is not None:
        if args.spec is not None and args.handler is not _demo:
            raise UsageError(f"the spec is given twice, as {args.spec!r} and as --spec {args.spec_option!r}")
        if args.spec is not None:  # demo: what took the place of SPEC is the first shape
            try:
                args.shapes.insert(0, shape_list(args.spec))
            except argparse.ArgumentTypeError as error:
                raise UsageError(f"argument SHAPES: {error}") from None
        args.spec = args.spec_option
    elif args.spec is None:
        args.spec = args.default_spec
    if args.spec is None:
        raise UsageError("the spec is missing: give it as SPEC, as '-- SPEC' if it starts with -, "
                         "or as --spec SPEC")
    return args


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
    y = args.out or next((c for c in "YZ" + string.ascii_uppercase if c not in spec.labels), "Y")
    for k in _indices(args.wrt, spec):
        print(f"∂{y}/∂{names[k]} = {einsgrad.derive.jacobian(labels, k)}")
        out, own = labels.output, labels.inputs[k]
        deltas = "".join(dict.fromkeys(l for l in own if l in out))
        line = f"  entries ∂{y}[{','.join(out)}]/∂{names[k]}[{','.join(own)}]"
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
        with open(args.output, "w" if args.force else "x", encoding="utf-8") as file:
            file.write(text)
    except FileExistsError:
        print(f"einsgrad: {args.output} exists; pass --force to overwrite it", file=sys.stderr)
        return 2
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


def _program(args) -> int:
    """The canonical program and its gradients (Hessians), or their derivation."""
    prog = einsgrad.program(args.spec)
    if args.explain or args.latex:
        explanation = prog.explain(args.wrt, style="hessian" if args.hessian else "index")
        print(explanation.latex() if args.latex else explanation)
        return 0
    lines = [str(prog)]  # all derived before anything is printed: an error comes alone
    for name in prog.inputs if args.wrt is None else (args.wrt,):
        lines.append(f"d/d{name}: {prog.grad(name)}")
        if args.hessian:
            lines.append(f"d2/d{name}2: {prog.hessian(name)}")
    print("\n".join(lines))
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
    shapes = [shape for word in args.shapes for shape in word] or _demo_shapes(spec)
    bound = bind(spec, shapes, dict(normalize_sizes(spec, args.sizes)))
    largest = max(math.prod(shape) for shape in (*shapes, bound.output_shape))
    if largest > DEMO_ELEMENTS:
        raise EinsumSpecError(f"the demo's random operands and output would hold up to {largest:,} "
                              f"elements each (at most {DEMO_ELEMENTS:,}); give smaller SHAPES", args.spec)
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
