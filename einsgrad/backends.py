"""Which array library a call's operands belong to, and what einsgrad needs from it.

The backend is inferred from the operands' types, as opt_einsum does: the top package of
``type(x).__module__`` names it (``torch``, ``jax`` or ``jaxlib``, ``dask``, ``cupy``). Everything
else (numpy arrays, numpy and Python scalars, lists) is numpy. numpy values join any one other
library: they are converted by that library (``torch.as_tensor`` on the first tensor's device,
``jnp.asarray``, ``da.from_array``, ``cupy.asarray`` on the first array's device), as its own
operations would. cupy arrays run the numpy dialect's code spelled with ``cp``. Operands of two other
libraries in one call are an error. A library is imported only when its arrays are seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import dialects
from .memo import memoized
from .errors import EinsumSpecError

NUMPY_DIALECT = dialects.NUMPY  # the dialect of every plain numpy call, looked up once

_PACKAGES = {"torch": "torch", "jax": "jax", "jaxlib": "jax", "dask": "dask", "cupy": "cupy"}


@dataclass(frozen=True)
class Backend:
    """An array library other than numpy.

    Attributes:
        name: ``torch``, ``jax``, ``dask`` or ``cupy``.
        dialect: how generated code spells the plan's primitives in this library.
        dtype: an array's dtype as the cache key holds it: numpy's, or torch's own dtype
            (every dtype torch computes in, ``bfloat16`` too; see :mod:`einsgrad.scalars`).
        convert: a numpy value as an array of this library, like a given array of it.
        cast: an array cast to such a dtype; None where the library's operations promote
            mixed dtypes themselves (torch's matmul and einsum do not).
        keep: what a forward-saving function returns, as the pullback will read it: dask's
            lazy values persisted together (computed once, kept in memory, in the background
            on a distributed scheduler), else the pullback's graph would run the forward
            again; None: as they are.
    """

    name: str
    dialect: dialects.Dialect
    dtype: Callable[[object], object]
    convert: Callable[[object, object], object]
    cast: Callable[[object, object], object] | None = None
    keep: Callable[..., tuple] | None = None


def infer(values) -> str:
    """The library of ``values``: ``"numpy"`` unless one of them is a torch, jax, dask or cupy
    array.

    Raises:
        EinsumSpecError: arrays of two libraries other than numpy are mixed.
    """
    found, first = "numpy", None
    for value in values:
        name = _PACKAGES.get(type(value).__module__.partition(".")[0])
        if name is None or name == found:
            continue
        if first is not None:
            raise EinsumSpecError(
                f"operands of two array libraries in one call: {_typename(first)} ({found}) and "
                f"{_typename(value)} ({name}); convert them to one library first")
        found, first = name, value
    return found


@memoized
def of_type(kind: type) -> Backend | None:
    """The backend whose arrays are of type ``kind`` (as :func:`infer` names it), or None for
    numpy's and other types; looked up once per type."""
    name = _PACKAGES.get(kind.__module__.partition(".")[0])
    return None if name is None else get(name)


def get(name: str) -> Backend:
    """The backend called ``name`` (its library is imported now)."""
    return _LOADERS[name]()


def prepare(values, backend: Backend, names) -> tuple:
    """``values`` as arrays of ``backend``: numpy values converted, like the first of its own;
    ``names`` name the values in messages (``"operand 2"``)."""
    like = next(v for v in values if infer((v,)) == backend.name)
    return tuple(v if infer((v,)) == backend.name else backend.convert(as_numpy(v, name), like)
                 for v, name in zip(values, names))


def as_numpy(value, name: str, source: str | None = None) -> np.ndarray:
    """A value that is not another library's array as a numpy array; what numpy cannot read
    as one (a ragged list) is refused, naming the value (in ``source``, a program's text)."""
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as error:
        raise EinsumSpecError(f"{name} cannot be read as an array: {error}", source) from None


def _typename(value) -> str:
    return f"{type(value).__module__}.{type(value).__qualname__}"


def _numeric(array: np.ndarray) -> np.ndarray:
    if array.dtype.kind not in "biufc":
        raise EinsumSpecError(f"an operand has dtype {array.dtype}, which is not numeric")
    return array


@memoized
def _torch() -> Backend:
    import torch

    return Backend(
        "torch", dialects.TORCH, lambda x: x.dtype,
        lambda v, like: torch.as_tensor(_numeric(v), device=like.device),
        lambda x, d: x.to(d))


@memoized
def _jax() -> Backend:
    import jax.numpy as jnp

    return Backend("jax", dialects.JAX, lambda x: np.dtype(x.dtype), lambda v, like: jnp.asarray(_numeric(v)))


@memoized
def _dask() -> Backend:
    import dask
    import dask.array as da

    return Backend("dask", dialects.DASK, lambda x: np.dtype(x.dtype), lambda v, like: da.from_array(_numeric(v)),
                   keep=dask.persist)


@memoized
def _cupy() -> Backend:
    import cupy as cp

    def convert(v, like):
        with like.device:
            return cp.asarray(_numeric(v))

    return Backend("cupy", dialects.CUPY, lambda x: np.dtype(x.dtype), convert)


_LOADERS = {"torch": _torch, "jax": _jax, "dask": _dask, "cupy": _cupy}


def intake(values: tuple, cotangent: bool = False, names=None) -> tuple[tuple, Backend | None]:
    """The values of one call (operands, cotangent, tangents) as arrays of one library, and
    that library (None: numpy); ``cotangent``: the first value is the cotangent, ``names``: every
    value's name (for messages). Plain numpy arrays pass at once; dtypes are checked once per
    signature, when its code is made."""
    for a in values:
        if type(a) is not np.ndarray:
            break
    else:
        return values, None
    kind = type(values[0])
    backend = of_type(kind)
    if backend is not None:  # every value an array of one library (torch's, on each call): as they are
        for a in values:
            if type(a) is not kind and of_type(type(a)) is not backend:
                break
        else:
            return values, backend
    if names is None:
        names = [f"operand {i - cotangent}" if i or not cotangent else "the cotangent" for i in range(len(values))]
    name = infer(values)
    if name == "numpy":
        return tuple([a if type(a) is np.ndarray else as_numpy(a, n)
                      for a, n in zip(values, names)]), None
    backend = get(name)
    return prepare(values, backend, names), backend


def library_name(backend: Backend | None) -> str:
    """The library of an :func:`intake`'s arrays, for messages."""
    return "numpy" if backend is None else backend.name


def casting(function: Callable, dtype, cast: Callable) -> Callable:
    """``function`` with every argument cast to ``dtype`` first (a library that does not
    promote mixed dtypes itself, as torch's matmul and einsum do not)."""
    return lambda *args, **shapes: function(*[cast(a, dtype) for a in args], **shapes)
