"""Benchmark: the cost of resuming an epoch at 99% with RangedSampler vs. a materialised order.

Run ``python benchmarks/resume.py``. For each dataset size it builds a shuffling sampler that
starts at 99% of the epoch and draws the first batch of 32 indices, and reports the median time
of 5 runs and the peak memory (tracemalloc, in a separate run so tracing does not slow the
timing). For comparison, the naive ways: ``torch.randperm(N)`` then a slice (torch's allocator is
invisible to tracemalloc, so its memory column is the permutation tensor's size), and Hezar's
``torch.randperm(N).tolist()`` then a slice. A second table times whole-epoch iteration of 1e6
indices against torch's ``RandomSampler``.
"""

from __future__ import annotations

import itertools
import statistics
import sys
import time
from pathlib import Path

import torch
from measure import fmt_bytes, median_seconds, traced_peak
from torch.utils.data import RandomSampler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from tamrin.datasets.sampling.ranged_sampler import RangedSampler  # noqa: E402

BATCH = 32
REPEATS = 5
SIZES = [10**5, 10**6, 10**7, 10**8, 10**9]
NAIVE_MAX = 10**8  # randperm of 1e9 int64 is 8 GB
HEZAR_MAX = 10**7  # a Python list of 1e8 ints is ~4 GB


class _Sized:
    """A dataset stand-in with only a length, so the benchmark measures the sampler alone."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def ours(n: int) -> list[int]:
    sampler = RangedSampler(_Sized(n), BATCH, start_index=n * 99 // 100, shuffle=True, seed=0)
    return list(itertools.islice(iter(sampler), BATCH))


def naive_randperm(n: int) -> list[int]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    start = n * 99 // 100
    return order[start : start + BATCH].tolist()


def hezar_tolist(n: int) -> list[int]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()
    start = n * 99 // 100
    return order[start:][:BATCH]


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms" if seconds < 1 else f"{seconds:.2f} s"


def resume_table() -> None:
    print(f"## Resume at 99% of an epoch and draw one batch of {BATCH} (median of {REPEATS})\n")
    print(
        "| N | RangedSampler time | RangedSampler peak mem | randperm+slice time "
        "| randperm mem | Hezar randperm.tolist() time | Hezar peak mem |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    ours(10)  # warm up imports and numpy
    for n in SIZES:
        row = [f"{n:.0e}", fmt_ms(median_seconds(ours, n, REPEATS)), fmt_bytes(traced_peak(ours, n))]
        if n <= NAIVE_MAX:
            row += [fmt_ms(median_seconds(naive_randperm, n, REPEATS)), fmt_bytes(8 * n)]
        else:
            row += ["skipped", f"({fmt_bytes(8 * n)})"]
        if n <= HEZAR_MAX:
            hezar_peak = traced_peak(hezar_tolist, n)
            row += [fmt_ms(median_seconds(hezar_tolist, n, REPEATS)), fmt_bytes(hezar_peak)]
        else:
            row += ["skipped", "skipped"]
        print("| " + " | ".join(row) + " |", flush=True)


def throughput_table(n: int = 10**6) -> None:
    print(f"\n## Iterate a whole epoch of {n:.0e} indices (median of {REPEATS})\n")
    print("| sampler | time | indices/s |")
    print("|---|---:|---:|")
    cases = {
        "RangedSampler(shuffle=True)": lambda: RangedSampler(_Sized(n), BATCH, shuffle=True),
        "RangedSampler(shuffle=True, num_replicas=2)": lambda: RangedSampler(
            _Sized(n), BATCH, shuffle=True, num_replicas=2
        ),
        "RangedSampler(shuffle=False)": lambda: RangedSampler(_Sized(n), BATCH),
        "torch RandomSampler": lambda: RandomSampler(range(n), generator=torch.Generator().manual_seed(0)),
    }
    for name, build in cases.items():
        times, count = [], 0
        for _ in range(REPEATS):
            began = time.perf_counter()
            count = sum(1 for _ in build())
            times.append(time.perf_counter() - began)
        seconds = statistics.median(times)
        print(f"| {name} | {fmt_ms(seconds)} | {count / seconds:,.0f} |", flush=True)


if __name__ == "__main__":
    resume_table()
    throughput_table()
