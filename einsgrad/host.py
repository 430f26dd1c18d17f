"""This host's memory, and the refusal of values it could never hold.

A plan's shapes are known before anything runs, so a value larger than physical memory (or
than an int64 counts) is an error naming the step that makes it, not a failed allocation in
the middle of a run.
"""

from __future__ import annotations

import math
import os

from .errors import EinsumSpecError
from .steps import Plan


def _host_memory() -> int:
    """Bytes of physical memory on this host (the int64 limit where the OS does not say)."""
    try:
        return min(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), INT64_MAX)
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        return INT64_MAX


INT64_MAX = 2**63 - 1
HOST_MEMORY = _host_memory()


def check_fits(program: Plan, itemsize: int, where: str) -> None:
    """Refuses, before anything is allocated, a plan making a value larger than this host's
    memory (or than an int64 counts): no such array can exist, so the run could only fail.

    Args:
        program: the plan to run.
        itemsize: bytes per element of its values (the signature's common dtype).
        where: what the plan computes, for the message (``"the forward of 'i->ii'"``).
    """
    for step in program.steps:
        value = "the output" if step.target == "y" else f"the step {step.spec} (value {step.target})"
        check_fits_shape(step.shape, itemsize, where, value)


def check_fits_shape(shape: tuple[int, ...], itemsize: int, where: str, value: str = "the result") -> None:
    """Refuses an array of ``shape`` that this host's memory could never hold (see
    :func:`check_fits`); ``value`` names it in the message."""
    count = math.prod(shape)
    if count * itemsize > HOST_MEMORY:
        raise EinsumSpecError(
            f"{value} in {where} would hold {count:,} elements of shape {shape} "
            f"({count * itemsize:,} bytes), more than this host's {HOST_MEMORY:,} bytes of memory")
