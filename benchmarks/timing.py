"""Median wall-clock timing of several functions, interleaved round-robin in one process."""

from __future__ import annotations

import statistics
import time
from typing import Callable, Mapping


def medians(functions: Mapping[str, Callable[[], object]], repeats: int = 7,
            warmup: int = 1, min_seconds: float = 0.0,
            clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Median seconds per call of each function, by ``clock`` (wall time; ``time.thread_time``
    counts only this thread's CPU time, which other processes' load barely moves, and which
    is all of a call's time where the library runs on this thread alone).

    Each function is warmed up, then all are run in turn, ``repeats`` rounds, so that load on
    a shared machine falls on all of them alike. Each round starts one function later than the
    one before, so that no function always runs first, right after the previous round's
    largest frees (the next large allocation then pays the kernel's page faults and
    compaction). A round of a fast function loops until it has run at least ``min_seconds``
    and counts as the mean of its calls.
    """
    loops = {}
    for name, fn in functions.items():
        for _ in range(warmup):
            fn()
        count, start = 0, time.perf_counter()
        while True:
            fn()
            count += 1
            if time.perf_counter() - start >= min_seconds:
                break
        loops[name] = count
    samples: dict[str, list[float]] = {name: [] for name in functions}
    order = list(functions.items())
    for r in range(repeats):
        for name, fn in order[r % len(order):] + order[:r % len(order)]:
            start = clock()
            for _ in range(loops[name]):
                fn()
            samples[name].append((clock() - start) / loops[name])
    return {name: statistics.median(values) for name, values in samples.items()}
