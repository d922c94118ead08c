"""The training loop's place in a stream (an IterableDataset): passes as epochs, the state a checkpoint saves.

An `EpochPosition` (steps.py) for data with no known length; the stream reading itself (one batch
ahead, sharding, the saved state) is `tamrin.datasets.sampling.streams`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from tamrin.datasets.sampling.streams import LOADER_STATE, StreamReader, has_stream_state, loader_state_workers
from tamrin.trainer.steps import EpochPosition

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

__all__ = ["StreamEpochPosition"]


class StreamEpochPosition(EpochPosition):
    """The position of a loader over a stream (an IterableDataset): one pass is an epoch, read one batch ahead.

    A stream with a state resumes where its saved state says (`resume_state`, set by the checkpoint
    loader): exact, O(1) for HF streams (a shard and an offset). One without state starts the
    resumed epoch again at its beginning (the checkpoint loader warns so). The stream's state after
    the latest trained batch is `state()`, what a checkpoint saves.
    """

    def __init__(self, dataset: Any, batch_size: int, num_processes: int) -> None:
        super().__init__()
        self.dataset = dataset
        self.samples_per_step = batch_size * num_processes
        self.resume_state: Any = None  # the state to start the next (resumed) epoch at
        self.reader: StreamReader | None = None
        self.skip = 0

    def start(self, loader: DataLoader, *, epoch: int, position: int, seed: int, done_steps: int = 0) -> None:
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)
        if self.resume_state is not None:
            self._resume(loader, self.resume_state)
            self.resume_state = None
        if loader.generator is not None:
            loader.generator.manual_seed(seed * 1_000_003 + epoch)
        self.loader = loader
        self.reader = StreamReader(loader, self.dataset)
        self.skip = done_steps
        self.steps = 0
        self.num_batches = 0
        self.last_step = 0

    def _resume(self, loader: Any, state: Any) -> None:
        """Start at a saved state: the loader's (taken with workers) or the dataset's (without).

        Raises:
            ValueError: the state was taken with another num_dataloader_workers (each worker holds
                its own shards of the stream, so the state fits only the same number of workers).
        """
        saved = loader_state_workers(state)
        workers = loader.num_workers if has_stream_state(loader) else 0
        if saved != workers:
            raise ValueError(
                f"The checkpoint's stream state was saved with `num_dataloader_workers={saved}`; this run has "
                f"num_dataloader_workers={workers}. Each worker reads its own shards of the stream, so the state "
                f"resumes only with the same number of workers: set num_dataloader_workers={saved}."
            )
        if saved:
            loader.load_state_dict(state[LOADER_STATE])
        else:
            self.dataset.load_state_dict(state)

    def batches(self) -> Iterable[Any]:
        assert self.reader is not None, "start() comes first"
        return self.reader

    def state(self) -> Any:
        """The stream's state after the latest trained batch (None before one, or without state)."""
        return None if self.reader is None else self.reader.state

    def advance(self) -> int:
        self.steps += 1
        return (self.skip + self.steps) * self.samples_per_step

    def batches_left(self) -> int:
        """Unknown until the pass ends: taken as unbounded, so an accumulation window is cut only by
        max_steps, and a pass's short last window is divided by the full gradient_accumulation_steps
        (its size is known only after its first batches were scaled)."""
        return 1 << 62

    def next_is_last(self) -> bool:
        return self.reader is not None and self.reader.is_last

    def at_end(self) -> bool:
        return self.reader is not None and self.reader.is_last and self.steps > 0
