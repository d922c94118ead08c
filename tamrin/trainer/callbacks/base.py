"""Callbacks: code that runs at named points of the loop and may change its flow.

A callback receives the trainer at each event. It may stop training, force a save or an
evaluation through `trainer.control`, or change the data between epochs. A callback with state
returns it from `state_dict()`; the trainer saves it in every checkpoint and hands it back through
`load_state_dict()` on resume, so a resumed run behaves exactly as an uninterrupted one.

Callbacks are typed against `TrainerView`, the small protocol of what they may read and call on
the trainer, so this module never imports the Trainer.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import torch

__all__ = ["EVENTS", "Callback", "TrainerControl", "TrainerView"]

EVENTS = (
    "on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_step_begin", "on_step_end",
    "on_optimizer_step", "on_evaluate", "on_log", "on_save", "on_load",
)  # fmt: skip


@dataclasses.dataclass
class TrainerControl:
    """Flags a callback sets to change the flow; the trainer clears each one when it acts on it."""

    should_stop: bool = False
    should_save: bool = False
    should_evaluate: bool = False


class TrainerView(Protocol):
    """What a callback may read and call on the trainer it is given (the Trainer satisfies it)."""

    config: Any
    state: Any
    control: TrainerControl
    accelerator: Any
    model: torch.nn.Module
    optimizer: Any
    lr_scheduler: Any
    metrics_handler: Any
    plan: Any
    train_dataset: Any
    train_dataloader: Any
    data_collator: Any
    grad_norm: torch.Tensor | None
    progress_mode: str
    metric_for_best_model: str  # the logged name ("evaluation.cer" for a config's "cer")

    @property
    def unwrapped_model(self) -> torch.nn.Module: ...

    def log(self, logs: dict[str, float], step: int) -> None: ...

    def prepare_input_batch(self, batch: Any) -> Any: ...

    def forward(self, batch: Any) -> Any: ...

    def compute_loss(self, outputs: Any, batch: Any) -> torch.Tensor: ...


class Callback:
    """Base class: override the events you need. Each receives the trainer and event details.

    Events (in loop order): on_train_begin, on_epoch_begin, on_step_begin, on_optimizer_step,
    on_step_end(loss), on_log(logs), on_evaluate(metrics), on_epoch_end, on_save(path),
    on_train_end; on_load(path) after a checkpoint was restored. on_epoch_end fires before the
    epoch's last checkpoint is written, so what a callback changes there is in that checkpoint.
    `on_step_end` gets the step's loss as a detached device tensor when it takes a `loss` argument
    (reading it with `.item()` is a host sync: do it only when you need the number). Only the
    events a callback overrides are called, so an unused event costs nothing.
    """

    def on_train_begin(self, trainer: TrainerView) -> None: ...
    def on_train_end(self, trainer: TrainerView) -> None: ...
    def on_epoch_begin(self, trainer: TrainerView) -> None: ...
    def on_epoch_end(self, trainer: TrainerView) -> None: ...
    def on_step_begin(self, trainer: TrainerView) -> None: ...
    def on_step_end(self, trainer: TrainerView, loss: torch.Tensor | None = None) -> None: ...
    def on_optimizer_step(self, trainer: TrainerView) -> None: ...
    def on_evaluate(self, trainer: TrainerView, metrics: dict[str, float]) -> None: ...
    def on_log(self, trainer: TrainerView, logs: dict[str, float]) -> None: ...
    def on_save(self, trainer: TrainerView, path: str) -> None: ...
    def on_load(self, trainer: TrainerView, path: str) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold to resume this callback exactly (plain values or tensors)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
