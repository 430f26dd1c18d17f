"""Tangents and cotangents of a call, checked at the boundary.

A cotangent (:meth:`einsgrad.Einsum.vjp`, a pullback) has the output's shape and belongs to the
forward's library. A forward-mode call (:meth:`einsgrad.Einsum.jvp`) takes one tangent per
operand, or None for a zero one; each tangent has its operand's shape, and the operands and
tangents are arrays of one library. Only the terms of the tangents given are computed, so the
call's ``wrt`` is the operands whose tangent is not None.
"""

from __future__ import annotations

import numpy as np

from . import backends, scalars
from .errors import EinsumSpecError
from .shapes import check_shapes, differ


def intake(tangents, operands, count: int, spec: str) -> tuple[tuple[int, ...], tuple, backends.Backend | None]:
    """``wrt`` (the operands with a tangent), the operands followed by those tangents as arrays
    of one library, and that library (None: numpy)."""
    if isinstance(tangents, (str, bytes)) or not hasattr(tangents, "__len__") or len(tangents) != count:
        raise EinsumSpecError(f"tangents must be a sequence of one tangent (or None) per operand: "
                              f"{count} for {spec!r}, got {_described(tangents)}")
    wrt = tuple(k for k, t in enumerate(tangents) if t is not None)
    names = [f"operand {i}" for i in range(len(operands))] + [f"the tangent of operand {k}" for k in wrt]
    arrays, backend = backends.intake((*operands, *(tangents[k] for k in wrt)), names=names)
    if len(operands) != count:
        check_shapes([tuple(a.shape) for a in arrays[:len(operands)]], count)  # says so
    return wrt, arrays, backend


def check(wrt: tuple[int, ...], arrays, count: int) -> None:
    """Each tangent (after the ``count`` operands in ``arrays``) has its operand's shape; asked
    once the operands' shapes are bound, so that an operand's own error comes first."""
    for k, t in zip(wrt, arrays[count:]):
        if differ(tuple(t.shape), tuple(arrays[k].shape)):
            raise EinsumSpecError(f"the tangent of operand {k} has shape {tuple(t.shape)} but "
                                  f"operand {k} has shape {tuple(arrays[k].shape)}")


def zeros(output_shape, dtypes, backend: backends.Backend | None, like):
    """``dY`` where no tangent is given: zeros of the output's shape, in the dtype of operands
    and tangents together, an array of the operands' library (``like``'s)."""
    if backend is not None and backend.cast is not None:  # torch: its own dtypes
        return backend.cast(backend.convert(np.zeros(output_shape), like), scalars.result_type(*dtypes))
    found = np.zeros(output_shape, np.result_type(*dtypes))
    return found if backend is None else backend.convert(found, like)


def cotangent(cotangent, arrays, backend: backends.Backend | None, shape):
    """The cotangent as an array of the forward's library, checked against its shape."""
    if backend is None and type(cotangent) is np.ndarray:
        g = cotangent
    else:
        values, found = backends.intake((cotangent, *arrays), cotangent=True)
        if found is not backend:
            raise EinsumSpecError(f"the cotangent is a {backends.library_name(found)} array but the forward "
                                  f"ran on {backends.library_name(backend)} arrays")
        g = values[0]
    if g.shape != shape and differ(tuple(g.shape), shape):
        raise EinsumSpecError(f"the cotangent has shape {tuple(g.shape)} but the output has {shape}")
    return g


def _described(value) -> str:
    """A value for a message: its length where it has one, else its type."""
    if hasattr(value, "__len__") and not isinstance(value, (str, bytes)):
        return f"{len(value)}"
    return repr(value) if isinstance(value, (str, bytes)) else type(value).__name__
