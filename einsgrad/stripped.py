"""Exponent-stripped contractions: every value as a mantissa and a power of two.

A float32 norm of a long tensor network overflows (or underflows) long before its logarithm
is large: the value of 51 unnormalised 256x256 matrices chained is about 1e61. Here every value
a plan makes is a :class:`Stripped` pair ``(mantissa, exponent)`` standing for
``mantissa * 2**exponent``. The steps of a plan are multilinear (a GEMM, a product, a sum, a
view), so a step's exponent is the sum of its arguments' exponents; after each step that can
change magnitudes (a pairwise product, a sum) the mantissa is divided by the power of two
just above its largest magnitude, so that it lies in ``[0.5, 1)``, and that power is added to
the exponent. Dividing by a power of two is exact: the mantissas carry the digits an unbounded
floating point type would (but for entries smaller than the largest by more than the dtype's
range, which underflow), and no step can overflow (its mantissas are at most 1, so a sum of
``n`` products is at most ``n``). The exponents are Python integers.

The plans are the signature's own (the forward, the one-shot vjp, the forward-saving and
pullback pair), run step by step by their kernels (:class:`einsgrad.tables.Kernels`), so the
tree and the gradient rules are those of every other mode. Gradients come the same way: the
cotangent is one more stripped value, and each gradient is ``mantissa * 2**exponent``. The
gradient of the log-value, ``d log(y) / dx = (dy/dx) / y``, is then a ratio of two stripped
values, exact and of ordinary magnitude (:func:`log_grad`).

This is cotengra's ``strip_exponent`` (which keeps a base-10 exponent of the forward alone),
extended to gradients. It runs on numpy arrays, torch tensors (on their device) and jax arrays
(under ``jax.jit`` too), each step in the library's own dialect; the exponents are Python
integers for numpy and 0-d integer arrays of the library otherwise (:mod:`einsgrad.exponents`).
It refuses a ``memory_limit`` that needs slices (the path alone is bounded by it).
"""

from __future__ import annotations

import enum
import functools
from typing import NamedTuple

from . import backends, codegen, dialects, exponents, scalars
from .errors import EinsumSpecError
from .shapes import check_shapes
from .signature import Mode, PlanKey, SignatureRecord
from .tables import slotted
from .steps import Add, Copy, Einsum2, Matmul, Multiply, Plan, Regroup, Unary


class Stripped(NamedTuple):
    """``mantissa * 2**exponent``: an array whose largest magnitude lies in ``[0.5, 1)``
    (or zero) and one integer exponent for all of it: a Python int for a numpy mantissa, a
    0-d integer array of the mantissa's library for torch and jax.

    >>> import numpy as np
    >>> s = Stripped(np.array([0.5, -0.75]), 300)
    >>> s.log10().round(3)
    array([90.008, 90.184])
    """

    mantissa: object
    exponent: object

    def value(self):
        """The value in the mantissa's dtype: ``inf`` where it overflows, 0 where it underflows."""
        return exponents.of(self.mantissa).scaled(self.mantissa, self.exponent)

    def log(self):
        """``log|value|``, elementwise (``-inf`` where the value is 0)."""
        return exponents.of(self.mantissa).log(self.mantissa, self.exponent)

    def log10(self):
        """``log10|value|``, elementwise, as cotengra's exponent counts."""
        return exponents.of(self.mantissa).log(self.mantissa, self.exponent, base10=True)


class LogGrad(NamedTuple):
    """A scalar contraction's stripped value and the gradients of its logarithm,
    ``d log(y) / dx_k = (dy/dx_k) / y`` (of ``log|y|`` for real values)."""

    value: Stripped
    grads: object  # one array (``wrt`` an int) or a tuple of them


def strip(x, exponent=0) -> Stripped:
    """``x * 2**exponent`` with ``x``'s largest magnitude moved into ``[0.5, 1)`` (exactly:
    by a power of two). Zeros, and arrays holding ``inf`` or ``nan``, keep their exponent."""
    return Stripped(*exponents.of(x).strip(x, exponent))


def added(terms) -> Stripped:
    """The sum of stripped values of one shape: each term brought to the largest exponent
    (exactly, but for digits below the largest term's last), then stripped again."""
    library = exponents.of(terms[0].mantissa)
    top = library.maximum([term.exponent for term in terms])
    total = library.scaled(terms[0].mantissa, terms[0].exponent - top)
    for term in terms[1:]:
        total = total + library.scaled(term.mantissa, term.exponent - top)
    return Stripped(*library.strip(total, top))


def intake(operands, caller: str, count: int) -> tuple[tuple, tuple, backends.Backend | None]:
    """The operands as arrays of one library that stripping runs on, their shapes, and their
    library (None: numpy); ``caller`` names the method in messages."""
    arrays, backend = backends.intake(operands)
    if backend is not None and backend.name not in exponents.LIBRARIES:
        raise EinsumSpecError(f"{caller}() runs on {', '.join(exponents.LIBRARIES[:-1])} and "
                              f"{exponents.LIBRARIES[-1]} arrays, got {backend.name} arrays")
    shapes = tuple([tuple(map(int, a.shape)) for a in arrays])
    if len(shapes) != count:
        check_shapes(shapes, count)  # says so
    return arrays, shapes, backend


def forward(record: SignatureRecord, arrays) -> Stripped:
    """The stripped value of the contraction of ``arrays`` (arrays of one of
    :data:`einsgrad.exponents.LIBRARIES`, of ``record``'s shapes)."""
    _check_unsliced(record)
    library = exponents.of(arrays[0])
    dtype = _computed(library, arrays)
    (y,) = run(record.plan(PlanKey(Mode.FORWARD, None)), _entered(library, arrays, dtype), record)
    return y


def vjp(record: SignatureRecord, cotangent, arrays, wrt: tuple[int, ...]) -> tuple[Stripped, ...]:
    """The stripped gradients of the operands ``wrt`` given the cotangent (an array of the
    operands' library, or a :class:`Stripped` of one), in the non-conjugating convention of
    :meth:`einsgrad.Einsum.vjp`."""
    _check_unsliced(record)
    library = exponents.of(arrays[0])
    if isinstance(cotangent, Stripped):
        g = Stripped(cotangent.mantissa, library.exponent(cotangent.exponent, cotangent.mantissa))
    else:
        g = Stripped(*library.strip(cotangent, 0))
    dtype = _computed(library, arrays, g.mantissa)
    if tuple(g.mantissa.shape) != tuple(record.output_shape):
        raise EinsumSpecError(f"the cotangent has shape {tuple(g.mantissa.shape)} but the output of "
                              f"{str(record.spec)!r} has shape {record.output_shape}")
    entered = (Stripped(library.cast(g.mantissa, dtype), g.exponent),) + _entered(library, arrays, dtype)
    grads = run(record.plan(PlanKey(Mode.VJP, wrt)), entered, record)
    return tuple(Stripped(_finished(library, d.mantissa, arrays[k]), d.exponent) for k, d in zip(wrt, grads))


def log_grad(record: SignatureRecord, arrays, wrt: tuple[int, ...]) -> tuple[Stripped, tuple]:
    """The stripped value ``y`` of a scalar contraction and ``d log(y) / dx_k`` for the operands
    ``wrt``: the forward-saving plan keeps every stripped value the pullback reads, the
    pullback runs from ``g = 1``, and each ratio ``(dy/dx_k) / y`` subtracts exponents."""
    check_scalar(record, "log_grad")
    _check_unsliced(record)
    library = exponents.of(arrays[0])
    dtype = _computed(library, arrays)
    y, *saved = run(record.plan(PlanKey(Mode.SAVING, wrt)), _entered(library, arrays, dtype), record)
    one = Stripped(library.ones(dtype, arrays[0]), 0)
    grads = run(record.plan(PlanKey(Mode.PULLBACK, wrt)), (one, *saved), record)
    ratios = []
    for k, d in zip(wrt, grads):  # y == 0: log y has no gradient (inf or nan, quietly)
        ratio = library.scaled(library.divide(d.mantissa, y.mantissa), d.exponent - y.exponent)
        ratios.append(_finished(library, ratio, arrays[k]))
    return y, tuple(ratios)


def check_scalar(record: SignatureRecord, caller: str) -> None:
    """Refuses a contraction whose output is not a scalar: the gradient of a log-value is
    that of one number."""
    if record.output_shape != ():
        raise EinsumSpecError(f"{caller} needs a scalar output, but {str(record.spec)!r} has shape "
                              f"{record.output_shape}: use stripped_vjp with a cotangent")


def run(plan: Plan, values: tuple[Stripped, ...], record: SignatureRecord) -> tuple[Stripped, ...]:
    """Runs ``plan`` on stripped arguments (one per ``plan.args``), rescaling after every step
    that can change magnitudes; returns its returned values, stripped. Each step is computed by
    its kernel in the dialect of the mantissas' library, the code its generated function runs."""
    library = exponents.of(values[0].mantissa)
    program = _program(plan, record, library.dialect)
    v = [value.mantissa for value in values] + [None] * (program.slots - len(values))
    e = [value.exponent for value in values] + [0] * (program.slots - len(values))
    for row in program.rows:
        if row.rule is _Rule.ALIGN:  # a sum of two terms
            v[row.out], e[row.out] = added([Stripped(v[a], e[a]) for a in row.args])
        else:
            v[row.out] = row.kernel(v, row.args + row.integers)
            e[row.out] = sum([e[a] for a in row.args])
        if row.rule is _Rule.STRIP:
            v[row.out], e[row.out] = library.strip(v[row.out], e[row.out])
        for slot in row.freed:
            v[slot] = None
    return tuple(Stripped(v[s], e[s]) for s in program.returns)


# -- internals -------------------------------------------------------------------------------


class _Rule(enum.Enum):
    """What a step does to magnitudes: KEEP (a view, a copy, a diagonal, a placement: the
    largest magnitude is an argument's), STRIP (a product or a sum: rescale), ALIGN (an
    :class:`~einsgrad.steps.Add`: its terms are brought to one exponent first)."""

    KEEP = "keep"
    STRIP = "strip"
    ALIGN = "align"


class _Row(NamedTuple):
    """One step as the stripped loop runs it: its kernel, slots, integers and rule."""

    kernel: object
    out: int
    args: tuple[int, ...]
    integers: tuple[int, ...]
    freed: tuple[int, ...]
    rule: _Rule


class _Program(NamedTuple):
    plan: Plan
    rows: tuple[_Row, ...]
    slots: int
    returns: tuple[int, ...]


def _rule(operation) -> _Rule:
    if isinstance(operation, (Matmul, Multiply, Einsum2)):
        return _Rule.STRIP
    if isinstance(operation, Unary):
        return _Rule.STRIP if operation.sum_axes else _Rule.KEEP
    if isinstance(operation, Add):
        return _Rule.ALIGN
    assert isinstance(operation, (Copy, Regroup)), operation
    return _Rule.KEEP


_PROGRAMS: dict[tuple[int, str], _Program] = {}  # (id(plan), dialect) -> its program, the plan held
_PROGRAMS_LIMIT = 64


def _program(plan: Plan, record: SignatureRecord, dialect: dialects.Dialect) -> _Program:
    """``plan``'s rows in ``dialect``, made once per plan and dialect (the record's plans live
    as long as its cache entry; the program holds its plan, so that its id stays unique)."""
    key = (id(plan), dialect.name)
    found = _PROGRAMS.get(key)
    if found is not None and found.plan is plan:
        return found
    slots, ndims, freed = slotted(plan)
    rows = []
    for i, step in enumerate(plan.steps):
        template, integers = record.kernels.of(step, ndims, dialect)
        rows.append(_Row(_kernel(template, dialect.name), slots[step.target], tuple(slots[a] for a in step.args),
                         tuple(integers), freed[i], _rule(step.operation)))
    program = _Program(plan, tuple(rows), len(slots), tuple(slots[r] for r in plan.returns))
    if len(_PROGRAMS) >= _PROGRAMS_LIMIT:
        _PROGRAMS.pop(next(iter(_PROGRAMS), None), None)  # the oldest
    _PROGRAMS[key] = program
    return program


@functools.lru_cache(maxsize=512)
def _kernel(template: str, dialect: str):
    """A step kernel's ``lambda`` text compiled among its dialect's helpers. The text is
    :class:`einsgrad.tables.Kernels`' (value slots, integers and the library's calls only)."""
    return codegen.load(f"kernel = {template}\n", dialects.DIALECTS[dialect])["kernel"]


def _check_unsliced(record: SignatureRecord) -> None:
    """Refuses a contraction that ``memory_limit`` makes run in slices: the stripped modes run
    the whole plan, and would exceed the limit."""
    if record.memory_limit is not None and record.slices:
        cut = ", ".join(f"{label!r} in chunks of {size}" for label, size in record.slices)
        raise EinsumSpecError(f"exponent stripping does not run in slices, and memory_limit="
                              f"{record.memory_limit} needs them ({cut}): raise or drop memory_limit")


def _computed(library: exponents.Exponents, arrays, *more):
    """The dtype the stripped contraction computes in: the operands' common one, which must be
    a floating point or complex type (a mantissa of an integer has no meaning)."""
    dtypes = [library.dtype(a) for a in (*arrays, *more)]
    dtype = library.result_type(dtypes)
    if scalars.kind(dtype) not in "fc":
        raise EinsumSpecError(f"exponent stripping needs floating point or complex operands, got "
                              f"{', '.join(scalars.name(d) for d in dtypes)}")
    return dtype


def _entered(library: exponents.Exponents, arrays, dtype) -> tuple[Stripped, ...]:
    """The operands cast to ``dtype`` and stripped (an operand may hold huge values itself)."""
    return tuple(Stripped(*library.strip(library.cast(a, dtype), 0)) for a in arrays)


def _finished(library: exponents.Exponents, x, operand):
    """A gradient in its operand's dtype: the real part for a real operand."""
    kind, target = scalars.kind(library.dtype(x)), library.dtype(operand)
    if kind == "c" and scalars.kind(target) != "c":
        x = library.real(x)
    return library.cast(x, target) if scalars.kind(target) in "fc" else x
