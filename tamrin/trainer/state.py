"""TrainerState: the counters and trackers that a checkpoint must remember to resume exactly.

`serialized_attributes` is the explicit list of what is saved (as Composer's State does); a field
that is not on it is derived at start-up and never read back from a checkpoint. Each counter means
one thing: `global_step` counts `training_step` calls (batches, as in Hezar), `optimizer_steps`
counts optimizer updates, `epoch` is the epoch in progress and `epoch_step` its batches done.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, ClassVar

from omegaconf import OmegaConf

__all__ = ["TrainerState"]


@dataclasses.dataclass
class TrainerState:
    """Progress of a run.

    Attributes:
        epoch: the epoch in progress (0-based); after the last epoch, `num_epochs`.
        epoch_step: batches (steps) of this process done in the current epoch.
        epoch_samples: samples of the current epoch consumed by all processes together (the
            global sampler position; it lets a run resume with another number of processes).
        global_step: `training_step` calls since the start of training.
        optimizer_steps: optimizer updates since the start of training.
        skipped_updates: updates dropped by `nan_policy="skip"`.
        loss_sum: sum of the training losses since the last log (the running-loss tracker).
        loss_count: how many losses `loss_sum` holds.
        nonfinite_losses: how many of those were NaN/inf (left out of the mean; nan_policy="skip").
        best_metric: the best value of `metric_for_best_model` so far.
        best_step: the global step at which `best_metric` was reached.
        best_checkpoint: the checkpoint directory of the best step, if one was saved.
        world_size: processes of the run that wrote this state.
    """

    serialized_attributes: ClassVar[tuple[str, ...]] = (
        "epoch", "epoch_step", "epoch_samples", "global_step", "optimizer_steps", "skipped_updates",
        "loss_sum", "loss_count", "nonfinite_losses", "best_metric", "best_step",
        "best_checkpoint", "world_size",
    )  # fmt: skip
    retired_attributes: ClassVar[tuple[str, ...]] = ("last_log_step", "last_eval_step")
    """Written by earlier versions and never read: ignored when an older checkpoint is loaded."""

    epoch: int = 0
    epoch_step: int = 0
    epoch_samples: int = 0
    global_step: int = 0
    optimizer_steps: int = 0
    skipped_updates: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    nonfinite_losses: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    best_checkpoint: str | None = None
    world_size: int = 1

    def end_epoch(self) -> None:
        """Move to the next epoch: its step and sample counters start again at 0."""
        self.epoch += 1
        self.epoch_step = 0
        self.epoch_samples = 0

    def improve_best(self, value: float | None, step: int, *, maximize: bool) -> bool:
        """Record `value` of metric_for_best_model at `step` if it beats `best_metric`; returns whether it did.

        A missing or NaN value never counts as best. A new best has no checkpoint yet
        (`best_checkpoint` is set when its step is saved).
        """
        if value is None or math.isnan(value):
            return False
        best = self.best_metric
        if best is not None and not (value > best if maximize else value < best):
            return False
        self.best_metric = value
        self.best_step = step
        self.best_checkpoint = None
        return True

    def state_dict(self) -> dict[str, Any]:
        """The serialized attributes as plain Python values."""
        return {name: getattr(self, name) for name in self.serialized_attributes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the serialized attributes; a missing or unknown key is an error (strict)."""
        missing = [name for name in self.serialized_attributes if name not in state]
        unknown = [n for n in state if n not in self.serialized_attributes and n not in self.retired_attributes]
        if missing or unknown:
            raise ValueError(f"Trainer state does not match TrainerState: missing {missing}, unknown {unknown}.")
        for name in self.serialized_attributes:
            setattr(self, name, state[name])

    def save(self, path: str | os.PathLike) -> None:
        """Write the state as YAML (floats written exactly, so losses resume bit for bit)."""
        Path(path).write_text(OmegaConf.to_yaml(OmegaConf.create(self.state_dict())), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainerState:
        """Read a state written by `save`."""
        state = cls()
        values = OmegaConf.to_container(OmegaConf.load(Path(path)))
        if not isinstance(values, dict):
            raise ValueError(f"{path} is not a trainer state: it holds a {type(values).__name__}, not a mapping.")
        state.load_state_dict({str(key): value for key, value in values.items()})
        return state
