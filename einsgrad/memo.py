"""A cache that ``torch.compile`` can read: results kept by argument in a plain dict.

``functools.cache`` and ``lru_cache`` are C wrappers that dynamo does not look into: tracing a
call of einsgrad under ``torch.compile`` met four of them on every trace and warned each time
("Dynamo detected a call to a functools.lru_cache-wrapped function"), tracing the wrapped
function anew. A dictionary lookup written in Python is traced as what it is: a lookup.
"""

from __future__ import annotations

import functools
from typing import Callable

_MISSING = object()


def memoized(function: Callable) -> Callable:
    """``function`` (of hashable positional arguments, without side effects) called once per
    distinct arguments; its results kept for the life of the process, as ``functools.cache``
    keeps them."""
    results: dict = {}

    @functools.wraps(function)
    def cached(*args):
        found = results.get(args, _MISSING)
        if found is _MISSING:
            found = results[args] = function(*args)
        return found

    return cached
