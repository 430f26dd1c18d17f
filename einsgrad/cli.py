"""The ``einsgrad`` command (also ``python -m einsgrad``): derive, explain, plan and generate.

Subcommands, each with ``--help``::

    einsgrad grad SPEC [--wrt K] [--names X,W] [--sizes i=4]     backward specs
    einsgrad explain SPEC [--names X,W] [--out Y] [--style index|differential] [--latex] ...
    einsgrad jacobian SPEC [--wrt K] [--shapes 4x3,5x3]          the full Jacobian's spec
    einsgrad codegen SPEC [--shapes 4x3,5x3] [--backend torch] [-o FILE [--force]]  a standalone module
    einsgrad plan SPEC --shapes 4x3,5x3 [--optimize dp] [--memory-limit N]  paths and FLOPs
    einsgrad program PROGRAM [--wrt x] [--hessian] [--explain] [--latex]   a program's gradients
    einsgrad matrix TEXT [--rank x=1,A=2] [--wrt x] [--hessian] [--explain] [--latex]  matrix notation
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
from einsgrad.cli_parser import COMMANDS, UsageError, build_parser, shape_list, size_map  # noqa: F401 (public)
from einsgrad.errors import EinsumSpecError
from einsgrad.shapes import bind
from einsgrad.spec import ELLIPSIS, normalize_sizes, parse
from einsgrad.statement_latex import statements_latex


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
    return HANDLERS[args.command](args)


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


def _parse(argv: list[str]) -> argparse.Namespace:
    """The parsed ``argv``; the spec given as SPEC, as --spec, or by default, in ``args.spec``."""
    args, extras = build_parser().parse_known_args(argv)
    if extras:  # argparse would blame the top-level parser, whose usage does not help
        prog = " ".join(filter(None, ("einsgrad", args.command)))
        raise UsageError(f"unrecognized arguments: {' '.join(extras)} ('{prog} --help' shows the usage)")
    if args.spec_option is not None:
        if args.spec is not None and args.command != "demo":
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
    text = compiled.module(*(args.shapes or ()), dtypes=args.dtype, backend=args.backend,
                           generic=True if args.generic or not args.shapes else None)
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
    functions = "forward, vjp, forward_saving, pullback" if args.backend == "numpy" else "einsum, vjp"
    print(f"wrote {args.output}: {functions} for {compiled.spec}")
    return 0


def _plan(args) -> int:
    compiled = einsgrad.compile(args.spec, sizes=args.sizes, optimize=args.optimize,
                                memory_limit=args.memory_limit)
    print(compiled.plan(*args.shapes))
    return 0


def _program(args) -> int:
    """The canonical program and its gradients (Hessians), or their derivation."""
    return _show(einsgrad.program(args.spec), args)


def _matrix(args) -> int:
    """The index program that matrix text means, and its gradients, as ``program`` shows them."""
    declared = {}
    for group in args.rank:
        for name, value in group.items():
            if name in declared and declared[name] != value:
                raise UsageError(f"--rank declares {name!r} twice, as {declared[name]!r} and {value!r}")
            declared[name] = value
    return _show(einsgrad.matrix(args.spec, **declared), args)


def _show(prog, args) -> int:
    """A program, then the gradient (and Hessian) by each input or ``--wrt``; or, with
    ``--explain`` or ``--latex``, their derivation. All is derived before anything is printed,
    so that an error comes alone."""
    names = prog.inputs if args.wrt is None else (args.wrt,)
    if args.explain or args.latex:
        print(_derivation(prog, args.wrt, names, args.hessian, args.latex))
        return 0
    lines = [str(prog)]
    for name in names:
        lines.append(_block(f"d/d{name}:", prog.grad(name)))
        if args.hessian:
            lines.append(_block(f"d2/d{name}2:", prog.hessian(name)))
    print("\n".join(lines))
    return 0


def _derivation(prog, wrt, names, hessian: bool, latex: bool) -> str:
    """``Program.explain``, as text or LaTeX. A program of statements has no derivation of its
    Hessian yet: the gradient's derivation is followed by each Hessian program (in LaTeX, its
    statements rendered by :func:`einsgrad.statement_latex.statements_latex`)."""
    if not (hessian and prog.statements):
        explanation = prog.explain(wrt, style="hessian" if hessian else "index")
        return explanation.latex() if latex else str(explanation)
    explanation = prog.explain(wrt)
    hessians = [(name, prog.hessian(name)) for name in names]
    if latex:
        return "\n".join([explanation.latex(), *(statements_latex(h.statements) for _, h in hessians)])
    return "\n\n".join([str(explanation), *(_block(f"The Hessian by {name}, by reverse mode over the "
                                                    "gradient's statements:", h) for name, h in hessians)])


def _block(title: str, prog) -> str:
    """``title program`` on one line, or the title and the statements indented below it."""
    text = str(prog)
    if "\n" not in text:
        return f"{title} {text}"
    return title + "".join(f"\n  {line}" for line in text.splitlines())


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


HANDLERS = {"grad": _grad, "explain": _explain, "jacobian": _jacobian, "codegen": _codegen, "plan": _plan,
            "program": _program, "matrix": _matrix, "demo": _demo}
