"""einsgrad: derive, read and run the gradients of einsum contractions.

>>> import einsgrad
>>> einsgrad.grad_spec("ik,jk->ij", wrt=1)   # dW of Y = X Wᵀ is Gᵀ X
'ij,ik->jk'
"""

from __future__ import annotations

import functools
from typing import Mapping

from . import derive
from .compiled import Einsum
from .errors import EinsumSpecError
from .spec import parse

__all__ = ["Einsum", "EinsumSpecError", "compile", "einsum", "grad_spec", "vjp"]
__version__ = "0.1.0"


def grad_spec(spec: str, wrt: int, sizes: Mapping[str, int] | None = None) -> str:
    """The backward spec of operand ``wrt``: the cotangent first, then the other operands.

    Deterministic, in the extended notation (see README): ``"ij->i"`` gives ``"i->ij"``
    (a broadcast) and ``"ii->i"`` gives ``"i->ii"`` (values on the diagonal).
    """
    return str(derive.backward(parse(spec, sizes), wrt))


def compile(spec: str, shapes=None, *, sizes=None, optimize="auto", memory_limit=None,
            cache_size: int = 128) -> Einsum:
    """Parses ``spec`` once and returns an :class:`Einsum` (forward, vjp, pullback, source)."""
    return Einsum(spec, shapes=shapes, sizes=sizes, optimize=optimize,
                  memory_limit=memory_limit, cache_size=cache_size)


@functools.lru_cache(maxsize=256)
def _compiled(spec: str) -> Einsum:
    return Einsum(spec)


def einsum(spec: str, *operands):
    """``numpy.einsum`` through einsgrad's planner (compiled objects cached per spec)."""
    return _compiled(spec)(*operands)


def vjp(spec: str, cotangent, *operands, wrt=None):
    """One-shot gradients of ``spec``; see :meth:`Einsum.vjp`."""
    return _compiled(spec).vjp(cotangent, *operands, wrt=wrt)
