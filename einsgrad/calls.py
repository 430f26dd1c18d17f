"""The one-call functions' argument forms (``einsgrad.einsum``, ``vjp``, ``einsgrad.torch.einsum``,
``einsgrad.jax.einsum``): a spec or an :class:`Einsum` then the operands, or the interleaved form,
each spec text compiled once and cached."""

from __future__ import annotations

import functools
from typing import Sequence

from .compiled import Einsum
from .errors import EinsumSpecError
from .spec import interleaved, is_sublist_pair, looks_interleaved, spec_text


def as_einsum(spec) -> Einsum:
    """``spec`` if it is an :class:`Einsum`, else the spec (text, or a pair of sublists)
    compiled, cached per text, for the one-call functions (``einsgrad.einsum``,
    ``einsgrad.torch.einsum``, ...)."""
    if isinstance(spec, Einsum):
        return spec
    if not isinstance(spec, str) and not is_sublist_pair(spec):
        raise EinsumSpecError(f"spec must be a string or an einsgrad.Einsum (or sublists: a pair "
                              f"(sublists, output sublist), or the interleaved form x0, [0, 1], ...), "
                              f"got {type(spec).__name__}")
    return _compiled(spec_text(spec))


def is_spec(value) -> bool:
    """Whether a call's first argument is a spec (else it may be the interleaved form)."""
    return isinstance(value, (str, Einsum)) or is_sublist_pair(value)


def as_call(args: Sequence) -> tuple[Einsum, tuple]:
    """The compiled einsum and the operands of a one-call function's arguments: a spec (see
    :func:`as_einsum`) then the operands, or the interleaved form ``x0, [0, 1], x1, [1, 2],
    [0, 2]`` (:func:`einsgrad.spec.interleaved`)."""
    if not args:
        raise EinsumSpecError("einsum() needs a spec and its operands")
    if is_spec(args[0]) or not looks_interleaved(args):
        return as_einsum(args[0]), tuple(args[1:])
    text, operands = interleaved(args)
    return as_einsum(text), operands


@functools.lru_cache(maxsize=256)
def _compiled(spec: str) -> Einsum:
    return Einsum(spec)
