"""Small measuring helpers the resume benchmarks share: median time, traced memory peak, formatting."""

from __future__ import annotations

import statistics
import time
import tracemalloc
from collections.abc import Callable


def median_seconds(fn: Callable[[int], object], n: int, repeats: int) -> float:
    """Median wall time of `repeats` calls of `fn(n)`."""
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn(n)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def traced_peak(fn: Callable[[int], object], n: int) -> int:
    """Peak bytes that tracemalloc sees during `fn(n)` (torch tensors' storage is invisible to it)."""
    tracemalloc.start()
    try:
        fn(n)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def fmt_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
