"""Host syncs per training step: a callback that splits a `SyncCounter`'s events at step boundaries.

A step's window runs from its `on_step_begin` to the next one (or `on_train_end`), so it holds the
step's forward, backward and update and whatever its log, evaluation and save did. The window is
labelled with the events that fired in it: "update" (on_optimizer_step), "log" (on_log of training
values), "eval" (on_evaluate) and "save" (on_save); an *ordinary* step has nothing but "update".

The Trainer moves a batch to the device only on an accelerator (pinned by its DataLoader, copied
with non_blocking=True); on a CPU run it leaves the batch where the loader made it, which the
counter takes for the host. `gpu_batches` takes the accelerator's branch, so that the batch reaches
the model on the emulated device as it would on a GPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

from accelerate.utils import send_to_device

from tamrin.testing.syncs import SyncCounter, SyncEvent
from tamrin.trainer.callbacks import Callback, TrainerView

__all__ = ["StepSyncs", "SyncSteps", "gpu_batches"]


@contextlib.contextmanager
def gpu_batches(trainer: TrainerView, counter: SyncCounter, *, pinned_eval_batches: bool = False) -> Iterator[None]:
    """Move each batch as `Trainer.prepare_input_batch` does on a CUDA device (non_blocking=True).

    On CUDA the Trainer's training loader pins its batches (pin_memory=True), so their copy does not
    wait; its evaluation loader does not pin them (`pinned_eval_batches` says it does). A batch is an
    evaluation batch when the model is in eval mode.
    """
    original = trainer.prepare_input_batch
    device = trainer.accelerator.device

    def prepare_input_batch(batch: Any) -> Any:
        if trainer.model.training or pinned_eval_batches:
            counter.mark_pinned(batch)
        return original(send_to_device(batch, device, non_blocking=True))

    trainer.prepare_input_batch = prepare_input_batch  # type: ignore[method-assign]
    try:
        yield
    finally:
        del trainer.prepare_input_batch


@dataclasses.dataclass
class StepSyncs:
    """The syncs of one training step's window, and what happened in it."""

    step: int
    kinds: set[str]
    events: list[SyncEvent]

    @property
    def avoidable(self) -> list[SyncEvent]:
        return [event for event in self.events if not event.inherent]

    @property
    def ordinary(self) -> bool:
        """Nothing but the forward, backward and (maybe) an optimizer update: no log, evaluation or save."""
        return self.kinds <= {"update"}


class SyncSteps(Callback):
    """Splits `counter.events` by training step (see the module docstring); add it to the Trainer's callbacks.

    Args:
        counter: the active SyncCounter.
        emulate_gpu_batches: move batches as the Trainer does on a GPU (`gpu_batches`) during `train()`.

    Attributes:
        steps: one StepSyncs per step, in order (complete once training has ended).
    """

    def __init__(self, counter: SyncCounter, *, emulate_gpu_batches: bool = True) -> None:
        self.counter = counter
        self.emulate_gpu_batches = emulate_gpu_batches
        self.steps: list[StepSyncs] = []
        self._start: int | None = None
        self._batches: contextlib.ExitStack = contextlib.ExitStack()

    def of_kind(self, kind: str) -> list[StepSyncs]:
        """The steps whose window holds `kind` ("log", "eval", "save") and no other event but "update"."""
        return [step for step in self.steps if kind in step.kinds and step.kinds <= {kind, "update"}]

    @property
    def ordinary(self) -> list[StepSyncs]:
        return [step for step in self.steps if step.ordinary]

    def _close(self) -> None:
        if self._start is not None:
            self.steps[-1].events = self.counter.events[self._start :]
            self._start = None

    def on_train_begin(self, trainer: TrainerView) -> None:
        if self.emulate_gpu_batches:
            self._batches.enter_context(
                gpu_batches(trainer, self.counter, pinned_eval_batches=True)
            )  # as its CUDA loaders

    def on_step_begin(self, trainer: TrainerView) -> None:
        self._close()
        self.steps.append(StepSyncs(trainer.state.global_step + 1, set(), []))
        self._start = len(self.counter.events)

    def on_optimizer_step(self, trainer: TrainerView) -> None:
        self.steps[-1].kinds.add("update")

    def on_log(self, trainer: TrainerView, logs: dict[str, float]) -> None:
        if self._start is not None and not any(key.startswith("evaluation.") for key in logs):
            self.steps[-1].kinds.add("log")

    def on_evaluate(self, trainer: TrainerView, metrics: dict[str, float]) -> None:
        if self._start is not None:
            self.steps[-1].kinds.add("eval")

    def on_save(self, trainer: TrainerView, path: str) -> None:
        if self._start is not None:
            self.steps[-1].kinds.add("save")

    def on_train_end(self, trainer: TrainerView) -> None:
        self._close()
        self._batches.close()
