"""The one timing rule the benchmarks share: a warm-up call, then the median over repeats."""

from __future__ import annotations

import statistics
import time


def median_time(fn, repeats: int, clock=time.process_time) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls after one warm-up call. The default clock
    is this process's CPU time: on a shared machine other processes change wall time, hardly it."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return statistics.median(times)
