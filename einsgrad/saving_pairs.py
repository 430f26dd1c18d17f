"""The saving pairs of :meth:`einsgrad.Einsum.saving_pair`, made and indexed.

Framework glue (``einsgrad.torch``'s ``autograd.Function``) asks for a pair on every forward, so
the pair of a call's array type, shapes, dtypes and ``wrt`` is made once, from its signature's
record, and found by one dictionary lookup afterwards.
"""

from __future__ import annotations

import functools

from . import backends, scalars
from .signature import FunctionKey, Mode, SavingPair, SignatureRecord

PAIRS_LIMIT = 1024  # saving pairs indexed per Einsum (one per exact shapes, dtypes and wrt)


class PairIndex:
    """Saving pairs by array type, shapes, dtypes and ``wrt``; emptied when full, and by the
    Einsum whenever its record cache takes a new signature (an evicted one's code goes)."""

    def __init__(self):
        self.pairs: dict[tuple, SavingPair] = {}

    @staticmethod
    def key(operands, wrt) -> tuple | None:
        """The index key of a call, or None where it has none (scalars); one of symbolic
        sizes does not hash, and is found and kept by neither :meth:`get` nor :meth:`put`."""
        try:
            return (type(operands[0]), tuple([a.shape for a in operands]),
                    tuple([a.dtype for a in operands]), wrt)
        except (AttributeError, IndexError):
            return None

    def get(self, key: tuple | None) -> SavingPair | None:
        try:  # hashed once, by the lookup itself: this is every call's path
            return None if key is None else self.pairs.get(key)
        except TypeError:
            return None

    def put(self, key: tuple | None, pair: SavingPair) -> None:
        if key is None:
            return
        if len(self.pairs) >= PAIRS_LIMIT:
            self.pairs.clear()
        try:
            self.pairs[key] = pair
        except TypeError:  # symbolic sizes: not kept
            pass

    def clear(self) -> None:
        self.pairs.clear()


def pair(record: SignatureRecord, signature, arrays, backend: backends.Backend | None,
         indices: tuple[int, ...]) -> SavingPair:
    """The saving pair of ``record`` for these arrays (of ``backend``'s library; None: numpy)
    and the operands ``indices``: its functions found, cast where the library does not promote
    mixed dtypes, a generic pullback's sizes bound to the arrays' shapes."""
    if backend is None:
        dtype, dialect = (lambda a: a.dtype), backends.NUMPY_DIALECT
    else:
        dtype, dialect = backend.dtype, backend.dialect
    dtypes = tuple([dtype(a) for a in arrays])
    out = scalars.result_type(*dtypes)
    saving_key = FunctionKey(Mode.SAVING, signature, dtypes, indices, None, dialect)
    saving = record.runner(saving_key)
    pullback = record.runner(FunctionKey(Mode.PULLBACK, signature, dtypes, indices, out, dialect))
    if backend is not None and backend.cast is not None and len(set(dtypes + (out,))) > 1:
        saving = backends.casting(saving, out, backend.cast)
        pullback = backends.casting(pullback, out, backend.cast)
    if record.generic:
        pullback = functools.partial(pullback, shapes=tuple([tuple(a.shape) for a in arrays]))
    read, regrouped = record.saved_operands(indices)
    kept = frozenset(k for k in read if k is not None) | record.vjp_operands(indices)
    return SavingPair(saving, pullback, read, regrouped, kept, saving_key)
