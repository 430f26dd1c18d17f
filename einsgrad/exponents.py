"""Exact scaling by powers of two, and the exponents of stripped values, in numpy, torch and jax.

A stripped value (:mod:`einsgrad.stripped`) is ``mantissa * 2**exponent``. numpy's exponents
are Python integers, decided on the host after every step. torch's and jax's are 0-d integer
arrays of the mantissa's library, on its device, so that no step waits for the host and a whole
stripped run traces under ``jax.jit``: each decision is a ``where``, never a Python branch.

numpy's ``ldexp`` scales exactly. torch's and jax's compute ``2**shift`` in the dtype, which
overflows (float32 past ``2**127``) where ``x * 2**shift`` need not (a mantissa of ``2**-140``
scaled up). Here a shift is split into a few powers of two that are normal numbers of the
dtype, made from their bits, and applied in turn: each product is exact unless it under- or
overflows, as the exact result then does. Two such powers reach every shift that stripping an
array needs; three reach every shift that could leave a finite nonzero result, and a shift
beyond them is clamped (any finite value so scaled over- or underflows anyway).
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import NamedTuple

import numpy as np

from . import backends, dialects, scalars
from .errors import EinsumSpecError

LIBRARIES = ("numpy", "torch", "jax")
"""The array libraries a stripped contraction runs on."""

_LN2 = math.log(2.0)
_LOG10_2 = math.log10(2.0)


class Exponents:
    """What a stripped contraction asks of numpy: Python-integer exponents, ``ldexp``, and the
    dtype questions of its operands. :class:`ArrayExponents` answers them for torch and jax."""

    name = "numpy"
    dialect = dialects.NUMPY

    def exponent(self, value, like):
        """A user's exponent (a stripped cotangent's) as this library's, or an error."""
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise EinsumSpecError(f"a stripped cotangent's exponent is an integer (a power of two), got {value!r}")
        return int(value)

    def strip(self, x, exponent):
        """``x * 2**exponent`` as ``(mantissa, exponent)`` with the mantissa's largest magnitude
        in ``[0.5, 1)``; zeros, and arrays holding ``inf`` or ``nan``, keep their exponent."""
        top = np.max(np.abs(x)) if x.size else 0.0
        if top == 0 or not np.isfinite(top):
            return x, exponent
        shift = int(np.frexp(top)[1])  # top = f * 2**shift, 0.5 <= f < 1
        return self.scaled(x, -shift), exponent + shift

    def scaled(self, x, shift):
        """``x * 2**shift``, exactly (complex values by their real and imaginary parts)."""
        if isinstance(shift, int) and shift == 0:
            return x
        with np.errstate(over="ignore", under="ignore"):
            if np.iscomplexobj(x):
                out = np.empty(np.shape(x), x.dtype)
                out.real, out.imag = np.ldexp(x.real, shift), np.ldexp(x.imag, shift)
                return out
            return np.ldexp(x, shift)

    def maximum(self, exponents):
        return max(exponents)

    def log(self, mantissa, exponent, base10: bool = False):
        """``log|mantissa * 2**exponent|`` (``log10`` where asked), elementwise; ``-inf`` at 0."""
        with np.errstate(divide="ignore"):
            if base10:
                return np.log10(np.abs(mantissa)) + exponent * _LOG10_2
            return np.log(np.abs(mantissa)) + exponent * _LN2

    def divide(self, a, b):
        """``a / b`` elementwise, 0/0 and x/0 quietly (a log-gradient of ``y == 0``)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return a / b

    def dtype(self, x):
        return x.dtype

    def result_type(self, dtypes):
        return np.result_type(*dtypes)

    def cast(self, x, dtype):
        return np.asarray(x, dtype)

    def ones(self, dtype, like):
        """A 0-d one of ``dtype``, where ``like`` lives."""
        return np.ones((), dtype)

    def real(self, x):
        return x.real

    def conj(self, x):
        return np.conj(x)


class _Format(NamedTuple):
    """A floating point type's exponent range: normal powers ``2**lo`` to ``2**hi``, made from
    ``(k + hi) << mantissa_bits`` as an integer of ``bits`` bits."""

    lo: int
    hi: int
    mantissa_bits: int
    bits: int


class ArrayExponents(Exponents):
    """Exponents as 0-d integer arrays of torch or jax (see the module). The subclasses spell
    the few operations in which the two libraries differ."""

    xp = None  # the library's array namespace
    int_dtype = None  # the exponents' dtype

    def exponent(self, value, like):
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return self.integer(int(value), like)
        if backends.infer((value,)) == self.name and tuple(value.shape) == () \
                and scalars.kind(value.dtype) in "iu":
            return self.cast(value, self.int_dtype)
        raise EinsumSpecError(f"a stripped cotangent's exponent is an integer (a power of two) or a 0-d "
                              f"integer {self.name} array, got {value!r}")

    def strip(self, x, exponent):
        """As numpy's, with the exponent read from the bits of the largest magnitude (a few
        integer operations, where ``frexp`` takes dozens under ``jax.jit``); an array whose
        every entry lies below the dtype's normal range (subnormal) keeps its exponent too."""
        top = self.largest(x)
        form = self.format(self.dtype(top))
        field = self.bitcast(top, self.bit_dtype(form.bits)) >> form.mantissa_bits  # top >= 0: no sign bit
        normal = (field > 0) & (field <= 2 * form.hi)  # neither 0, subnormal, inf nor nan
        shift = self.xp.where(normal, self.cast(field, self.int_dtype) - (form.hi - 1), 0)
        return self.scaled(x, -shift, pieces=2), exponent + shift

    def scaled(self, x, shift, pieces: int = 3):
        """``x * 2**shift`` as ``pieces`` exact powers of two in turn (see the module), each
        as large as the dtype's normal range allows; two reach the shifts :meth:`strip` makes."""
        if isinstance(shift, int) and shift == 0:
            return x
        real = self.real_dtype(x)
        form = self.format(real)
        rest = self.integer(shift, x)
        if pieces > 2:  # clamped before it narrows to the dtype's width (float16's: int16)
            rest = self.xp.clip(rest, pieces * form.lo, pieces * form.hi)
        rest = self.cast(rest, self.bit_dtype(form.bits))
        for left in range(pieces, 0, -1):
            piece = self.xp.clip(rest, form.lo, form.hi) if left > 1 else rest  # the rest fits the last
            x = self.multiplied(x, self.bitcast((piece + form.hi) << form.mantissa_bits, real))
            rest = rest - piece
        return x

    def multiplied(self, x, factor):
        """``x * factor`` for a real ``factor``; a complex ``x`` by its parts (a complex product
        would make ``inf * 0`` of a part that overflowed, nan in the other)."""
        if scalars.kind(self.dtype(x)) != "c":
            return x * factor
        return self.complex(self.xp.real(x) * factor, self.xp.imag(x) * factor)

    def maximum(self, exponents):
        exponents = list(exponents)
        top = self.integer(exponents[0], None)
        for e in exponents[1:]:
            top = self.xp.maximum(top, e)
        return top

    def log(self, mantissa, exponent, base10: bool = False):
        real = self.xp.abs(mantissa)
        e = self.cast(self.integer(exponent, mantissa), real.dtype)
        if base10:
            return self.xp.log10(real) + e * _LOG10_2
        return self.xp.log(real) + e * _LN2

    def divide(self, a, b):
        return a / b

    def result_type(self, dtypes):
        return self.xp.result_type(*dtypes)

    def conj(self, x):
        return self.xp.conj(x) if scalars.kind(x.dtype) == "c" else x


def _format(finfo) -> _Format:
    """The exponent range of a ``finfo`` (torch's and jax's spell the same attributes)."""
    def power(x) -> int:  # x in [2**p, 2**(p + 1))
        return math.frexp(float(x))[1] - 1

    form = _Format(power(finfo.tiny), power(finfo.max), -power(finfo.eps), finfo.bits)
    assert -(form.hi + 1) - form.lo >= form.lo, form  # strip's shifts, -(hi + 1) to -(lo + 1), take two pieces
    return form


class _TorchExponents(ArrayExponents):
    name = "torch"
    dialect = dialects.TORCH

    def __init__(self):
        import torch

        self.xp = torch
        self.int_dtype = torch.int64

    def integer(self, value, like):
        if isinstance(value, int):
            return self.xp.tensor(value, dtype=self.int_dtype, device=None if like is None else like.device)
        return value

    def largest(self, x):
        """The largest magnitude, outside autograd (the scale is a constant of every step)."""
        x = x.detach()
        return x.abs().amax() if x.numel() else self.xp.zeros((), dtype=self.real_dtype(x), device=x.device)

    def real_dtype(self, x):
        return x.real.dtype if x.is_complex() else x.dtype

    def format(self, real) -> _Format:
        return _format(self.xp.finfo(real))

    def bit_dtype(self, bits: int):
        return getattr(self.xp, f"int{bits}")

    def bitcast(self, bits, real):
        return bits.view(real)

    def dtype(self, x):
        return x.dtype

    def complex(self, real, imag):
        return self.xp.complex(real, imag)

    def result_type(self, dtypes):
        return scalars.result_type(*dtypes)

    def cast(self, x, dtype):
        return x.to(dtype)

    def ones(self, dtype, like):
        return self.xp.ones((), dtype=dtype, device=like.device)

    def real(self, x):
        return x.real if x.is_complex() else x

    def conj(self, x):
        return x.conj().resolve_conj() if x.is_complex() else x


class _JaxExponents(ArrayExponents):
    name = "jax"
    dialect = dialects.JAX

    def __init__(self):
        import jax
        import jax.numpy as jnp

        self.xp = jnp
        self.lax = jax.lax
        self.int_dtype = jnp.int32

    def integer(self, value, like):
        return self.xp.asarray(value, dtype=self.int_dtype) if isinstance(value, int) else value

    def largest(self, x):
        """The largest magnitude, outside differentiation (the scale is a constant of every step)."""
        x = self.lax.stop_gradient(x)
        return self.xp.max(self.xp.abs(x)) if x.size else self.xp.zeros((), self.real_dtype(x))

    def real_dtype(self, x):
        return np.dtype(self.xp.finfo(x.dtype).dtype)

    def format(self, real) -> _Format:
        return _format(self.xp.finfo(real))

    def bit_dtype(self, bits: int):
        return np.dtype(f"int{bits}")

    def bitcast(self, bits, real):
        return self.lax.bitcast_convert_type(bits, real)

    def dtype(self, x):
        return np.dtype(x.dtype)

    def complex(self, real, imag):
        return self.lax.complex(real, imag)

    def cast(self, x, dtype):
        return x.astype(dtype)

    def ones(self, dtype, like):
        return self.xp.ones((), dtype)

    def real(self, x):
        return self.xp.real(x)


@functools.cache
def get(name: str) -> Exponents:
    """The exponent arithmetic of the library ``name`` (one of :data:`LIBRARIES`)."""
    return {"numpy": Exponents, "torch": _TorchExponents, "jax": _JaxExponents}[name]()


def of(x) -> Exponents:
    """The exponent arithmetic of the array ``x``'s library (numpy for anything that is not a
    torch or jax array)."""
    backend = backends.of_type(type(x))
    return get("numpy" if backend is None or backend.name not in LIBRARIES else backend.name)
