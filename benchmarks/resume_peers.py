"""Benchmark: resuming at 99% of an epoch with tamrin, transformers' batch skipping and hezar's RangedSampler.

Run in the peers' environment (see benchmarks/peers.py), which has all three::

    /tmp/peers-venv/bin/python benchmarks/resume_peers.py

For each dataset size N, each way resumes a shuffled epoch at sample 0.99 N and draws the first batch
of 32 indices (the dataset returns its index, so only the resume machinery is measured):

* ``tamrin``: ``RangedSampler(..., start_index=k)`` (a keyed permutation evaluated from position k).
* ``transformers``: what ``transformers.Trainer`` does on resume: a ``RandomSampler`` loader wrapped in
  accelerate's ``skip_first_batches(loader, k // 32)``, which draws ``torch.randperm(N)`` and then
  walks through the k skipped indices.
* ``hezar``: ``hezar.data.RangedSampler(..., start_index=k, shuffle=True)``, which builds
  ``list(range(N))``, shuffles it with ``random.shuffle`` and slices it.

Time: median of ``--repeats`` runs (one run at 1e8). Memory: the tracemalloc peak (Python objects,
numpy arrays); torch tensors are invisible to it, so transformers' column adds the ``randperm``
tensor's 8 N bytes. Hezar above ``--hezar-max`` (a list of 1e8 ints is ~3.7 GB) is skipped.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from measure import fmt_bytes, median_seconds, traced_peak

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tamrin from the checkout

BATCH = 32
SIZES = [10**5, 10**6, 10**7, 10**8]


class Indices(torch.utils.data.Dataset):
    """A dataset of N items whose item i is i: loading costs nothing, so the resume is what is timed."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index


def tamrin_first_batch(n: int) -> list[int]:
    from tamrin.datasets.sampling.ranged_sampler import RangedSampler

    sampler = RangedSampler(Indices(n), BATCH, start_index=n * 99 // 100, shuffle=True, seed=0)
    loader = torch.utils.data.DataLoader(Indices(n), batch_size=BATCH, sampler=sampler)
    return next(iter(loader)).tolist()


def transformers_first_batch(n: int) -> list[int]:
    from accelerate import skip_first_batches

    sampler = torch.utils.data.RandomSampler(Indices(n), generator=torch.Generator().manual_seed(0))
    loader = torch.utils.data.DataLoader(Indices(n), batch_size=BATCH, sampler=sampler)
    return next(iter(skip_first_batches(loader, (n * 99 // 100) // BATCH))).tolist()


def hezar_first_batch(n: int) -> list[int]:
    from hezar.data import RangedSampler

    sampler = RangedSampler(Indices(n), BATCH, start_index=n * 99 // 100, shuffle=True, seed=0)
    loader = torch.utils.data.DataLoader(Indices(n), batch_size=BATCH, sampler=sampler)
    return next(iter(loader)).tolist()


WAYS: dict[str, Callable[[int], list[int]]] = {
    "tamrin": tamrin_first_batch,
    "transformers": transformers_first_batch,
    "hezar": hezar_first_batch,
}


def fmt_time(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hezar-max", type=int, default=10**7)
    args = parser.parse_args(argv)
    for fn in WAYS.values():
        fn(1000)  # imports and first calls
    print(f"## Resume at 99% of a shuffled epoch and load the first batch of {BATCH}\n")
    print("| N | " + " | ".join(f"{name} time | {name} memory" for name in WAYS) + " |")
    print("|---:|" + "---:|---:|" * len(WAYS))
    for n in args.sizes:
        repeats = args.repeats if n < 10**8 else 1
        cells = [f"{n:.0e}"]
        for name, fn in WAYS.items():
            if name == "hezar" and n > args.hezar_max:
                cells += ["skipped", f"(~{fmt_bytes(36 * n)} list)"]
                continue
            seconds = median_seconds(fn, n, repeats)
            peak = traced_peak(fn, n) + (8 * n if name == "transformers" else 0)
            cells += [fmt_time(seconds), fmt_bytes(peak)]
        print("| " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
