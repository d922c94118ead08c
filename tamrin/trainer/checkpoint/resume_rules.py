"""The rules a resume follows where the checkpoint and the current run differ.

- The current config wins; each differing field is named in one warning (`warn_config_differences`),
  and a changed learning rate or weight decay is applied over the restored optimizer state.
- A trainer_state.yaml with values of the wrong type is refused by name (`check_loaded_state`).
- Another number of processes continues the same global sample position; per-process RNG streams
  cannot be carried over, and a warning says so (`restore_process_rng`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tamrin.trainer.checkpoint.rng import restore_rng_state
from tamrin.trainer.checkpoint.store import CheckpointStore
from tamrin.trainer.config import TrainerConfig
from tamrin.trainer.runtime import seed_everything
from tamrin.trainer.state import TrainerState

__all__ = [
    "apply_current_optimizer_settings",
    "check_loaded_state",
    "restore_process_rng",
    "warn_config_differences",
]


def warn_config_differences(saved_config: TrainerConfig, config: TrainerConfig) -> None:
    """Warn, naming each field, where the config differs from the checkpoint's (the current values win)."""
    saved = saved_config.to_dict()
    current = config.to_dict()
    ignored = {"resume_from_checkpoint", "overwrite_output_dir"}  # how a run starts, not what it trains
    differences = [
        f"{key}: checkpoint {saved[key]!r} -> now {current[key]!r}"
        for key in current
        if key not in ignored and saved.get(key) != current[key]
    ]
    if differences:
        warnings.warn(
            "The trainer config differs from the checkpoint's; the current values win:\n  " + "\n  ".join(differences),
            stacklevel=4,
        )


def apply_current_optimizer_settings(trainer: Any, saved: TrainerConfig) -> None:
    """Make the current learning_rate / weight_decay win over the restored optimizer state.

    `optimizer.load_state_dict` brings back the checkpoint's param groups (their lr and weight
    decay), and a scheduler its `base_lrs`; the config-difference warning promises the current
    values. A changed learning rate rescales every group's lr and the scheduler's base, so a
    schedule continues from the same point with the new peak.
    """
    old, new = saved.learning_rate, trainer.config.learning_rate
    if old != new:

        def rescale(lr: float) -> float:  # exact where the saved value is the configured one
            return new if lr == old else lr * (new / old)

        for group in trainer.optimizer.param_groups:
            for key in ("lr", "initial_lr"):
                if isinstance(group.get(key), (int, float)):
                    group[key] = rescale(group[key])
        if isinstance(getattr(trainer.lr_scheduler, "base_lrs", None), list):
            trainer.lr_scheduler.base_lrs = [rescale(lr) for lr in trainer.lr_scheduler.base_lrs]
    if saved.weight_decay != trainer.config.weight_decay:
        for group in trainer.optimizer.param_groups:
            group["weight_decay"] = trainer.config.weight_decay


def restore_process_rng(
    trainer: Any, train_dir: Path, store: CheckpointStore, rng_file: Callable[[int, int], str]
) -> None:
    """Restore this process's RNG; after a change of world size, continue the same data instead.

    Positions are global (`epoch_samples`), so a run resumed with another number of processes
    sees each remaining sample of the epoch once. Per-process RNG streams cannot be carried over,
    so that run is not bitwise equal to one that kept its world size; the warning says so.
    """
    rank, world = trainer.accelerator.process_index, trainer.accelerator.num_processes
    saved_world = trainer.state.world_size
    if saved_world == world:
        restore_rng_state(store.load_torch(train_dir / rng_file(rank, world)))
        return
    state = trainer.state
    state.epoch_step = math.ceil(state.epoch_samples / (trainer.config.batch_size * world))
    state.world_size = world
    warnings.warn(
        f"Resuming a {saved_world}-process checkpoint with {world} process(es): training continues from "
        f"global sample {state.epoch_samples} of epoch {state.epoch}, so no sample is repeated or skipped, "
        "but per-process random streams restart and results are not bitwise equal to a run that kept "
        f"{saved_world} process(es).",
        stacklevel=4,
    )
    own = train_dir / rng_file(rank, saved_world)
    if rank < saved_world and own.is_file():
        restore_rng_state(store.load_torch(own))
    else:
        seed_everything(trainer.config.seed + 7919 * state.global_step + rank)


_STATE_COUNTERS = (
    "epoch", "epoch_step", "epoch_samples", "global_step", "optimizer_steps", "skipped_updates",
    "loss_count", "nonfinite_losses", "world_size",
)  # fmt: skip


def check_loaded_state(state: TrainerState, path: Path) -> None:
    """Refuse a trainer_state.yaml whose values have the wrong types (damaged, or not written by tamrin).

    The step becomes checkpoint names and log rows: a hostile `global_step: ../../x` must fail here,
    by name, not later in arithmetic or in a path.
    """

    def is_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    def is_number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    values = state.state_dict()
    problems = [f"`{name}={values[name]!r}` must be an int >= 0" for name in _STATE_COUNTERS
                if not is_int(values[name]) or values[name] < 0]  # fmt: skip
    checks = {
        "loss_sum": is_number(state.loss_sum),
        "best_metric": state.best_metric is None or is_number(state.best_metric),
        "best_step": state.best_step is None or is_int(state.best_step),
        "best_checkpoint": state.best_checkpoint is None or isinstance(state.best_checkpoint, str),
    }
    problems += [f"`{name}={values[name]!r}` has the wrong type" for name, ok in checks.items() if not ok]
    if problems:
        raise ValueError(
            f"Cannot resume from {path}: " + "; ".join(problems) + ". The file is damaged or was not written by "
            "tamrin; resume from another checkpoint."
        )
