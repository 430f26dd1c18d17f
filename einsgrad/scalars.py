"""Scalar types as the caches and the generated code read them: numpy's dtypes, or a backend's own.

numpy arrays are keyed by their numpy dtype. A torch tensor is keyed by its torch dtype, so that
every dtype torch computes in (``bfloat16`` has no numpy equivalent) runs, and mixed dtypes
promote as torch promotes them. The four questions einsgrad asks of a scalar type are answered
here for both, so that no other module needs to know which one it holds.
"""

from __future__ import annotations

import functools

import numpy as np

from .memo import memoized

_KINDS = (("bool", "b"), ("uint", "u"), ("int", "i"), ("float", "f"), ("bfloat", "f"), ("complex", "c"))


def name(dtype) -> str:
    """The scalar type's name, the same in numpy and torch (``float32``, ``bfloat16``)."""
    if isinstance(dtype, np.dtype):
        return dtype.name
    return str(dtype).rpartition(".")[2]


def kind(dtype) -> str:
    """numpy's kind character: ``b`` bool, ``u``/``i`` integers, ``f`` real floating point
    (``bfloat16`` too: torch's, and ml_dtypes' for jax, which numpy sees as extension types of
    kind ``V``), ``c`` complex; ``V`` for what is none of these (quantized types)."""
    if isinstance(dtype, np.dtype):
        if dtype.kind == "V" and dtype.name.startswith(("bfloat", "float")):
            return "f"
        return dtype.kind
    return _foreign_kind(dtype)


@memoized
def _foreign_kind(dtype) -> str:
    text = name(dtype)
    for prefix, found in _KINDS:
        if text.startswith(prefix) and text[len(prefix):].partition("_")[0].isdigit() or text == prefix:
            return found
    return "V"


def itemsize(dtype) -> int:
    """Bytes per element."""
    return dtype.itemsize


def as_numpy(dtype) -> np.dtype | None:
    """The numpy dtype of the same name, or None where numpy has no numeric one (``bfloat16``;
    ml_dtypes, which jax imports, names one that numpy does not compute in)."""
    if isinstance(dtype, np.dtype):
        return dtype
    try:
        found = np.dtype(name(dtype))
    except TypeError:
        return None
    return found if found.kind in "biufc" else None


def result_type(*dtypes):
    """The type mixed operands compute in: numpy's promotion for numpy dtypes, torch's for
    torch's (``int64`` with ``float32`` gives ``float32`` there, as ``torch.matmul`` would)."""
    if all(isinstance(d, np.dtype) for d in dtypes):
        return np.result_type(*dtypes)
    return _promote(dtypes)


@memoized
def _promote(dtypes: tuple):
    import torch  # a torch dtype is at hand: torch is imported already

    return functools.reduce(torch.promote_types, dtypes)
