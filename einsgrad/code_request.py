"""What :meth:`Einsum.source` and :meth:`Einsum.module` are asked to write code for.

A request names its shapes (given, compiled with ``shapes=``, or the last call's), whether the
code is shape-generic, its dtypes, and its dialect; this turns it into the record key (exact
shapes or a :class:`~einsgrad.shapes.ShapeClass`) and one dtype per operand, or an error
saying what is missing.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import dialects, scalars
from .errors import EinsumSpecError
from .shapes import UNKNOWN_SIZE, ShapeClass, check_shapes, shape_class
from .signature import FunctionKey, Mode, check_dtypes
from .spec import ELLIPSIS, Spec, ascii_text


class CodeRequest(NamedTuple):
    """The record key code is written for (exact shapes or a shape class), and the dtypes."""

    signature: tuple | ShapeClass
    dtypes: tuple[np.dtype, ...]


def code_request(spec: Spec, sizes, shapes, dtypes, caller: str, generic: bool | None,
                 unshaped: bool, compiled, last, numpy: bool = True) -> CodeRequest:
    """The signature and dtypes to write code for.

    Args:
        spec: the compiled spec; ``sizes`` its normalized ``sizes=``.
        shapes: the shapes given (empty: none), else ``compiled`` (``compile(..., shapes=)``),
            else the shapes of ``last``, the last call's :class:`FunctionKey` (or None).
        dtypes: given (one for all, or one per operand), else the last call's for its shapes,
            else float64; where ``numpy``, the last call's only as numpy dtypes (a torch
            call's where numpy has them: not bfloat16).
        caller: the method's name, for messages.
        generic: shape-generic code; None: as the last call ran, else exact, but generic
            when there are no shapes and ``unshaped`` allows it.
    """
    if shapes:
        shapes = check_shapes(shapes, len(spec.inputs))
    else:
        shapes = compiled or (last.shapes if last else None)
    if generic is None:
        generic = isinstance(shapes, ShapeClass) or (shapes is None and unshaped)
    if shapes is None and generic:
        shapes = unshaped_class(spec, caller)
    if shapes is None:
        raise EinsumSpecError(f"{caller}() needs shapes: pass them, compile with shapes=, or call once")
    if generic and not isinstance(shapes, ShapeClass):
        found = shape_class(shapes)
        if found is None:
            raise EinsumSpecError(f"shape-generic code is planned for sizes of at least 1, "
                                  f"got shapes {', '.join(map(str, shapes))}")
        if any(label == ELLIPSIS for label, _ in sizes):
            raise EinsumSpecError("shape-generic code cannot be planned with batch sizes "
                                  "in sizes=: they fix the shapes")
        shapes = found
    elif not generic and isinstance(shapes, ShapeClass):
        raise EinsumSpecError(f"{caller}() of exact shapes needs shapes: the last call ran "
                              f"shape-generic code (pass shapes, or generic=True)")
    count = len(spec.inputs)
    if dtypes is not None:
        dtypes = check_dtype_list(dtypes, count)
    elif last and last.shapes == shapes and not (numpy and any(
            scalars.as_numpy(d) is None for d in last.dtypes)):
        dtypes = tuple(map(scalars.as_numpy, last.dtypes)) if numpy else last.dtypes
    else:
        dtypes = (np.dtype(np.float64),) * count
    return CodeRequest(shapes, dtypes)


def unshaped_class(spec: Spec, caller: str) -> ShapeClass:
    """The class generic code is planned for when no shapes are known: every size a few
    hundred (:data:`~einsgrad.shapes.UNKNOWN_SIZE`); the rank of ``...`` needs shapes."""
    if any(ELLIPSIS in term for term in spec.inputs):
        raise EinsumSpecError(f"{caller}() needs shapes for the batch rank of '...': pass any "
                              f"shapes of that rank, and generic=True for code of every size")
    return ShapeClass(tuple((UNKNOWN_SIZE,) * len(term) for term in spec.inputs))


def check_dtype_list(dtypes, count: int) -> tuple[np.dtype, ...]:
    """``dtypes=`` as one numeric dtype per operand (a single dtype applies to every one)."""
    try:
        if isinstance(dtypes, (str, type, np.dtype)):
            dtypes = (dtypes,) * count
        checked = tuple(np.dtype(d) for d in dtypes)
    except TypeError:
        raise EinsumSpecError(f"dtypes must be a dtype or one dtype per operand, got {dtypes!r}") from None
    if len(checked) != count:
        raise EinsumSpecError(f"the spec names {count} operand(s) but {len(checked)} dtypes were given")
    check_dtypes(checked)
    return checked


def dialect(backend, names) -> dialects.Dialect:
    """The dialect called ``backend``, one of ``names``."""
    if backend not in names:
        raise EinsumSpecError(f"backend must be one of {', '.join(names)}, got {backend!r}")
    return dialects.DIALECTS[backend]


def function_keys(signature, dtypes, dialect: dialects.Dialect) -> tuple[FunctionKey, ...]:
    """Keys of the four functions code is written for: forward, vjp, forward_saving and
    pullback, every operand wanted."""
    out, every = scalars.result_type(*dtypes), tuple(range(len(dtypes)))
    return (FunctionKey(Mode.FORWARD, signature, dtypes, None, None, dialect),
            FunctionKey(Mode.VJP, signature, dtypes, every, out, dialect),
            FunctionKey(Mode.SAVING, signature, dtypes, every, None, dialect),
            FunctionKey(Mode.PULLBACK, signature, dtypes, every, out, dialect))


def header(spec: Spec, signature) -> str:
    """The comment line above shown source: the spec and the shapes it was written for."""
    if isinstance(signature, ShapeClass):
        return (f"# einsgrad: {ascii_text(str(spec))}  shape-generic, planned for shapes "
                f"{', '.join(map(str, signature.representative))}\n")
    return f"# einsgrad: {ascii_text(str(spec))}  shapes {', '.join(map(str, signature))}\n"
