"""glibc malloc settings for timed benchmark processes, and the re-execution that sets them.

glibc reads ``MALLOC_*`` variables only when a process starts, so a command that wants them
re-executes itself (:func:`reexecute_under`) unless they are set already or
``--default-malloc`` keeps glibc's defaults. ``benchmarks.training`` and
``benchmarks.networks`` both run so.
"""

from __future__ import annotations

import os
import sys

MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(2**25), "MALLOC_TRIM_THRESHOLD_": str(2**30)}
"""Blocks up to 32 MiB (the most glibc allows) come from the heap, and the heap is not given
back, so that each call reuses the last one's memory. Under glibc's defaults the heap is
trimmed now and then and the next call faults its pages in again: over 31 grouped bfloat16
training steps, a mean of 65 minor faults a step for torch.einsum and 132-360 for einsgrad
(up to 1500-3000 in one step), against 0-49 with both settings; noise on both sides, more on
einsgrad's. Either setting alone is worse (the trim threshold alone fixes the mmap threshold
at 128 KiB: 9354 faults every step). A 16x16 grid's one-shot vjp faults about 15,500 pages a
call under the defaults and none under these."""


def reexecute_under(module: str, argv: list[str]) -> None:
    """Re-executes ``python -m module *argv`` with :data:`MALLOC` in its environment, unless it
    is there already or ``--default-malloc`` is in ``argv``; returns only then."""
    if "--default-malloc" in argv or all(os.environ.get(k) == v for k, v in MALLOC.items()):
        return
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", module, *argv], {**os.environ, **MALLOC})


def settings_text() -> str:
    """The malloc settings this process runs under, as a line's end."""
    return " ".join(f"{name}={os.environ[name]}" for name in MALLOC if name in os.environ) or "glibc's defaults"


def settings() -> dict:
    """The malloc settings this process runs under, for a JSON document (None: unset)."""
    return {name: os.environ.get(name) for name in MALLOC}
