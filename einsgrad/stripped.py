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
extended to gradients. It runs on numpy arrays, and refuses a ``memory_limit`` that needs
slices (the path alone is bounded by it).
"""

from __future__ import annotations

import enum
import functools
import math
import numbers
from typing import NamedTuple

import numpy as np

from . import codegen
from .errors import EinsumSpecError
from .signature import Mode, PlanKey, SignatureRecord
from .tables import slotted
from .steps import Add, Copy, Einsum2, Matmul, Multiply, Plan, Regroup, Unary

_LN2 = math.log(2.0)
_LOG10_2 = math.log10(2.0)


class Stripped(NamedTuple):
    """``mantissa * 2**exponent``: an array whose largest magnitude lies in ``[0.5, 1)``
    (or zero) and one integer exponent for all of it.

    >>> s = Stripped(np.array([0.5, -0.75]), 300)
    >>> s.log10().round(3)
    array([90.008, 90.184])
    """

    mantissa: np.ndarray
    exponent: int

    def value(self) -> np.ndarray:
        """The value in the mantissa's dtype: ``inf`` where it overflows, 0 where it underflows."""
        with np.errstate(over="ignore", under="ignore"):
            return _scaled(self.mantissa, self.exponent)

    def log(self) -> np.ndarray:
        """``log|value|``, elementwise (``-inf`` where the value is 0)."""
        with np.errstate(divide="ignore"):
            return np.log(np.abs(self.mantissa)) + self.exponent * _LN2

    def log10(self) -> np.ndarray:
        """``log10|value|``, elementwise, as cotengra's exponent counts."""
        with np.errstate(divide="ignore"):
            return np.log10(np.abs(self.mantissa)) + self.exponent * _LOG10_2


class LogGrad(NamedTuple):
    """A scalar contraction's stripped value and the gradients of its logarithm,
    ``d log(y) / dx_k = (dy/dx_k) / y`` (of ``log|y|`` for real values)."""

    value: Stripped
    grads: object  # one array (``wrt`` an int) or a tuple of them


def strip(x: np.ndarray, exponent: int = 0) -> Stripped:
    """``x * 2**exponent`` with ``x``'s largest magnitude moved into ``[0.5, 1)`` (exactly:
    by a power of two). Zeros, and arrays holding ``inf`` or ``nan``, keep their exponent."""
    top = np.max(np.abs(x)) if x.size else 0.0
    if top == 0 or not np.isfinite(top):
        return Stripped(x, exponent)
    shift = int(np.frexp(top)[1])  # top = f * 2**shift, 0.5 <= f < 1
    return Stripped(_scaled(x, -shift), exponent + shift)


def added(terms) -> Stripped:
    """The sum of stripped values of one shape: each term brought to the largest exponent
    (exactly, but for digits below the largest term's last), then stripped again."""
    top = max(term.exponent for term in terms)
    total = _scaled(terms[0].mantissa, terms[0].exponent - top)
    for term in terms[1:]:
        total = total + _scaled(term.mantissa, term.exponent - top)
    return strip(total, top)


def forward(record: SignatureRecord, arrays) -> Stripped:
    """The stripped value of the contraction of ``arrays`` (numpy arrays of ``record``'s shapes)."""
    _check_unsliced(record)
    dtype = _computed(arrays)
    (y,) = run(record.plan(PlanKey(Mode.FORWARD, None)), _entered(arrays, dtype), record)
    return y


def vjp(record: SignatureRecord, cotangent, arrays, wrt: tuple[int, ...]) -> tuple[Stripped, ...]:
    """The stripped gradients of the operands ``wrt`` given the cotangent (an array or a
    :class:`Stripped`), in the non-conjugating convention of :meth:`einsgrad.Einsum.vjp`."""
    _check_unsliced(record)
    if isinstance(cotangent, Stripped):
        if not isinstance(cotangent.exponent, numbers.Integral) or isinstance(cotangent.exponent, bool):
            raise EinsumSpecError(f"a stripped cotangent's exponent is an integer (a power of two), "
                                  f"got {cotangent.exponent!r}")
        g = Stripped(np.asarray(cotangent.mantissa), int(cotangent.exponent))
    else:
        g = strip(cotangent)
    dtype = _computed(arrays, g.mantissa)
    if tuple(g.mantissa.shape) != tuple(record.output_shape):
        raise EinsumSpecError(f"the cotangent has shape {tuple(g.mantissa.shape)} but the output of "
                              f"{str(record.spec)!r} has shape {record.output_shape}")
    entered = (Stripped(g.mantissa.astype(dtype, copy=False), g.exponent),) + _entered(arrays, dtype)
    grads = run(record.plan(PlanKey(Mode.VJP, wrt)), entered, record)
    return tuple(_as_operand(d, arrays[k]) for k, d in zip(wrt, grads))


def log_grad(record: SignatureRecord, arrays, wrt: tuple[int, ...]) -> tuple[Stripped, tuple]:
    """The stripped value ``y`` of a scalar contraction and ``d log(y) / dx_k`` for the operands
    ``wrt``: the forward-saving plan keeps every stripped value the pullback reads, the
    pullback runs from ``g = 1``, and each ratio ``(dy/dx_k) / y`` subtracts exponents."""
    if record.output_shape != ():
        raise EinsumSpecError(f"log_grad needs a scalar output, but {str(record.spec)!r} has shape "
                              f"{record.output_shape}: use stripped_vjp with a cotangent")
    _check_unsliced(record)
    dtype = _computed(arrays)
    y, *saved = run(record.plan(PlanKey(Mode.SAVING, wrt)), _entered(arrays, dtype), record)
    one = Stripped(np.ones((), dtype), 0)
    grads = run(record.plan(PlanKey(Mode.PULLBACK, wrt)), (one, *saved), record)
    ratios = []
    for k, d in zip(wrt, grads):
        with np.errstate(divide="ignore", invalid="ignore"):  # y == 0: log y has no gradient
            ratio = _scaled(d.mantissa / y.mantissa, d.exponent - y.exponent)
        ratios.append(_finished(ratio, arrays[k]))
    return y, tuple(ratios)


def run(plan: Plan, values: tuple[Stripped, ...], record: SignatureRecord) -> tuple[Stripped, ...]:
    """Runs ``plan`` on stripped arguments (one per ``plan.args``), rescaling after every step
    that can change magnitudes; returns its returned values, stripped. Each step is computed by
    its kernel in the numpy dialect, the code its generated function runs."""
    program = _program(plan, record)
    v = [value.mantissa for value in values] + [None] * (program.slots - len(values))
    e = [value.exponent for value in values] + [0] * (program.slots - len(values))
    for row in program.rows:
        if row.rule is _Rule.ALIGN:  # a sum of two terms
            v[row.out], e[row.out] = added([Stripped(v[a], e[a]) for a in row.args])
        else:
            v[row.out] = row.kernel(v, *row.args, *row.integers)
            e[row.out] = sum([e[a] for a in row.args])
        if row.rule is _Rule.STRIP:
            v[row.out], e[row.out] = strip(v[row.out], e[row.out])
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


_PROGRAMS: dict[int, _Program] = {}  # id(plan) -> its program, the plan held (so its id is unique)
_PROGRAMS_LIMIT = 64


def _program(plan: Plan, record: SignatureRecord) -> _Program:
    """``plan``'s rows, made once per plan (the record's plans live as long as its cache entry)."""
    found = _PROGRAMS.get(id(plan))
    if found is not None and found.plan is plan:
        return found
    slots, ndims, freed = slotted(plan)
    rows = []
    for i, step in enumerate(plan.steps):
        template, integers = record.kernels.of(step, ndims, codegen.NUMPY)
        rows.append(_Row(_kernel(template), slots[step.target], tuple(slots[a] for a in step.args),
                         tuple(integers), freed[i], _rule(step.operation)))
    program = _Program(plan, tuple(rows), len(slots), tuple(slots[r] for r in plan.returns))
    if len(_PROGRAMS) >= _PROGRAMS_LIMIT:
        _PROGRAMS.pop(next(iter(_PROGRAMS), None), None)  # the oldest
    _PROGRAMS[id(plan)] = program
    return program


@functools.lru_cache(maxsize=512)
def _kernel(template: str):
    """A step kernel's ``lambda`` text compiled among the numpy dialect's helpers. The text is
    :class:`einsgrad.tables.Kernels`' (value slots, integers and numpy calls only)."""
    return codegen.load(f"kernel = {template}\n")["kernel"]


def _scaled(x: np.ndarray, shift: int) -> np.ndarray:
    """``x * 2**shift``, exactly (``ldexp``; complex values by their real and imaginary parts)."""
    if shift == 0:
        return x
    if np.iscomplexobj(x):
        out = np.empty(np.shape(x), x.dtype)
        out.real, out.imag = np.ldexp(x.real, shift), np.ldexp(x.imag, shift)
        return out
    return np.ldexp(x, shift)


def _check_unsliced(record: SignatureRecord) -> None:
    """Refuses a contraction that ``memory_limit`` makes run in slices: the stripped modes run
    the whole plan, and would exceed the limit."""
    if record.memory_limit is not None and record.slices:
        cut = ", ".join(f"{label!r} in chunks of {size}" for label, size in record.slices)
        raise EinsumSpecError(f"exponent stripping does not run in slices, and memory_limit="
                              f"{record.memory_limit} needs them ({cut}): raise or drop memory_limit")


def _computed(arrays, *more) -> np.dtype:
    """The dtype the stripped contraction computes in: the operands' common one, which must be
    a floating point or complex type (a mantissa of an integer has no meaning)."""
    dtype = np.result_type(*arrays, *more)
    if dtype.kind not in "fc":
        raise EinsumSpecError(f"exponent stripping needs floating point or complex operands, got "
                              f"{', '.join(str(a.dtype) for a in (*arrays, *more))}")
    return dtype


def _entered(arrays, dtype) -> tuple[Stripped, ...]:
    """The operands cast to ``dtype`` and stripped (an operand may hold huge values itself)."""
    return tuple(strip(np.asarray(a, dtype)) for a in arrays)


def _finished(x: np.ndarray, operand: np.ndarray) -> np.ndarray:
    """A gradient in its operand's dtype: the real part for a real operand."""
    if operand.dtype.kind != "c" and np.iscomplexobj(x):
        x = x.real
    return x.astype(operand.dtype, copy=False) if operand.dtype.kind in "fc" else x


def _as_operand(d: Stripped, operand: np.ndarray) -> Stripped:
    """A stripped gradient in its operand's dtype (its mantissa's largest magnitude may fall
    below 0.5 where a real part is taken)."""
    return Stripped(_finished(d.mantissa, operand), d.exponent)
