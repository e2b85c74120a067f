"""Timing code in a notebook: the number the chapters quote when they compare speeds."""
from __future__ import annotations

import time


def best_time(fn, repeat=3):
    """The fastest of ``repeat`` wall-clock timings of fn(), in seconds (the least disturbed run)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
