"""Streaming training data: an `IterableDataset` read in its own order, sharded, resumable from its state.

A stream has no length and no index, so a RangedSampler cannot place it. What places it is the
stream's own state: HF `datasets.IterableDataset.state_dict()` (the shard and the example within
it), or that of any torch `IterableDataset` with `state_dict()` / `load_state_dict()`. A
`StreamReader` reads the DataLoader one batch ahead (so the loop knows which batch ends the epoch)
and keeps the state *after each yielded batch*, which is what a checkpoint saves: the look-ahead
batch is not counted as read.

With DataLoader workers, each worker reads its own copy of the stream (an HF stream gives each
worker its own shards; a torch IterableDataset splits itself by `get_worker_info()`), so the main
process's dataset does not know where they are. The loader is then torchdata's
`StatefulDataLoader` (the optional `stream` extra), whose `state_dict()` holds every worker's
stream state and which batches were yielded; the reader keeps *its* state, saved wrapped as
`{LOADER_STATE: ..., "num_dataloader_workers": n}` so a resume can tell the two kinds apart.

An epoch over a stream is one pass over it, to its end; `set_epoch(epoch)` is called on the
dataset first (an HF stream reshuffles its shards and shuffle buffer by it).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from torch.utils.data import IterableDataset

__all__ = [
    "LOADER_STATE",
    "StreamReader",
    "has_stream_state",
    "is_stream",
    "loader_state_workers",
    "shard_stream",
    "stream_name",
]

LOADER_STATE = "stateful_dataloader"  # the key of a saved StatefulDataLoader state (workers > 0)


def loader_state_workers(state: Any) -> int:
    """The num_dataloader_workers a saved stream state was taken with (0: the dataset's own state)."""
    if isinstance(state, dict) and LOADER_STATE in state:
        return int(state["num_dataloader_workers"])
    return 0


def is_stream(dataset: Any) -> bool:
    """Whether `dataset` is iterable-style (a torch or HF `IterableDataset`): read in order, no index."""
    return isinstance(dataset, IterableDataset)


def has_stream_state(dataset: Any) -> bool:
    """Whether a stream can say where it is (`state_dict`) and start there again (`load_state_dict`)."""
    return callable(getattr(dataset, "state_dict", None)) and callable(getattr(dataset, "load_state_dict", None))


def stream_name(dataset: Any) -> str:
    return type(dataset).__name__


def shard_stream(dataset: Any, *, rank: int, world_size: int) -> Any:
    """This process's share of a stream: `datasets.distributed.split_dataset_by_node` for an HF stream.

    HF gives each process whole shards when the shard count divides the world size, else every
    `world_size`-th example; the DataLoader's workers then split the process's shards again (HF
    does that itself). A plain torch IterableDataset is returned as it is: like under torch DDP, it
    shards itself by rank (`torch.distributed.get_rank()`) and by worker (`get_worker_info()`).
    """
    if world_size == 1:
        return dataset
    import datasets
    from datasets.distributed import split_dataset_by_node

    if isinstance(dataset, datasets.IterableDataset):
        return split_dataset_by_node(dataset, rank=rank, world_size=world_size)
    return dataset


class StreamReader:
    """Iterates a stream's DataLoader one batch ahead, keeping the stream state after each yielded batch.

    With a stateful loader (torchdata's `StatefulDataLoader`, used with workers), the state kept is
    the loader's, which holds each worker's stream state; else the dataset's.

    Attributes:
        is_last: the batch just yielded is the stream's last of this pass.
        state: the stream's state after the batch just yielded (None for a stream without state).
    """

    _END = object()

    def __init__(self, loader: Any, dataset: Any) -> None:
        self.loader = loader
        self.dataset = dataset
        self._stateful = has_stream_state(dataset)
        self._loader_state = self._stateful and has_stream_state(loader)
        self.is_last = False
        self.state: Any = None

    def _snapshot(self) -> Any:
        if self._loader_state:
            workers = self.loader.num_workers
            return {LOADER_STATE: copy.deepcopy(self.loader.state_dict()), "num_dataloader_workers": workers}
        return copy.deepcopy(self.dataset.state_dict()) if self._stateful else None

    def __iter__(self) -> Iterator[Any]:
        batches = iter(self.loader)
        current = next(batches, self._END)
        if current is self._END:
            raise ValueError(
                f"The training stream ({stream_name(self.dataset)}) yielded no batch in this pass: an epoch over a "
                "stream must give at least one step. Check its data files, filters and, with several processes "
                "or workers, that each gets a shard (HF: `n_shards` at least the number of processes x workers)."
            )
        current_state = self._snapshot()
        while True:
            following = next(batches, self._END)
            following_state = None if following is self._END else self._snapshot()
            self.is_last, self.state = following is self._END, current_state
            yield current
            if following is self._END:
                return
            current, current_state = following, following_state
