"""Steady-state loading speed of Arrow rows vs tensors in memory, and the cost of resuming at 99% of an epoch.

    python benchmarks/data_throughput.py --folder /tmp/data_scale/corpus_10000000

Reads a dataset folder written by benchmarks/data_scale.py (run that first: it fills the datasets
cache, so `Dataset.load` here is a cache hit). Prints, as Markdown:

- samples/s of the training DataLoader (RangedSampler, shuffled, the dataset's collator, 0 workers)
  over the Arrow-backed dataset, and over the same items held as tensors in a Python list (what a
  small in-memory dataset costs); the ratio is the price of keeping rows on disk;
- the time from building a resumed loader at sample 0.99 * N of an epoch to its first batch, and at
  sample 0, for the ranged sampler (O(1): it starts there without listing the epoch's indices).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from torch.utils.data import DataLoader

from tamrin.datasets import Dataset, RangedSampler

BATCH = 32


def samples_per_second(dataset: object, collator: object, batches: int) -> float:
    sampler = RangedSampler(dataset, BATCH, shuffle=True, seed=0)
    loader = DataLoader(dataset, batch_size=BATCH, sampler=sampler, collate_fn=collator)  # type: ignore[arg-type]
    iterator = iter(loader)
    next(iterator)  # warm-up
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * BATCH / (time.perf_counter() - start)


def resume_seconds(dataset: object, collator: object, fraction: float) -> float:
    start = time.perf_counter()
    sampler = RangedSampler(dataset, BATCH, shuffle=True, seed=0)
    sampler.set_epoch(3)
    sampler.set_start_index(int(fraction * len(dataset)))  # type: ignore[arg-type]
    loader = DataLoader(dataset, batch_size=BATCH, sampler=sampler, collate_fn=collator)  # type: ignore[arg-type]
    next(iter(loader))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--batches", type=int, default=300)
    args = parser.parse_args()
    dataset = Dataset.load(args.folder)
    collator = dataset.data_collator
    arrow = samples_per_second(dataset, collator, args.batches)
    in_memory = [dataset[i] for i in range(min(len(dataset), 200_000))]  # the same items, as tensors in a list
    tensors = samples_per_second(in_memory, collator, args.batches)
    print(f"| rows | Arrow-backed (samples/s) | tensors in memory (samples/s) | ratio |\n|---|---|---|---|\n"
          f"| {len(dataset):.0e} | {arrow:,.0f} | {tensors:,.0f} | {arrow / tensors:.2f} |\n")  # fmt: skip
    at_start, at_end = resume_seconds(dataset, collator, 0.0), resume_seconds(dataset, collator, 0.99)
    print(f"| rows | first batch at sample 0 (s) | first batch at 99% of the epoch (s) |\n|---|---|---|\n"
          f"| {len(dataset):.0e} | {at_start:.4f} | {at_end:.4f} |")  # fmt: skip


if __name__ == "__main__":
    main()
