"""Saving and restoring a Trainer: what goes into a checkpoint, and resuming from one.

`Trainer.save(path)` writes the model (safetensors) and its config, the trainer config, the
TrainerState, optimizer / scheduler / AMP-scaler state, every process's RNG state, the callbacks'
state and any gradients of an unfinished accumulation window, into a directory that appears
atomically (see checkpointing.py). `load_checkpoint(path)` restores all of it. These are Trainer
methods (a mixin), kept out of trainer.py so that file holds the loop only.
"""

from __future__ import annotations

import math
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

from tamrin.configs import ConfigError
from tamrin.trainer import checkpointing as ckpt
from tamrin.trainer.config import TrainerConfig
from tamrin.trainer.modeling import load_model_weights, save_model_weights
from tamrin.trainer.runtime import run_info, seed_everything
from tamrin.trainer.state import TrainerState

__all__ = ["CheckpointingMixin"]


class CheckpointingMixin:
    """The Trainer's save / resume methods (they use the Trainer's attributes)."""

    def save(self, path: str | os.PathLike, *, include_logs: bool = True) -> Path:
        """Save the model, configs, optimizer/scheduler/state, RNG and logs into `path`, atomically.

        Raises:
            CheckpointWriteError: an OSError while writing (e.g. a full disk); nothing half-written is
                left behind and the previous checkpoint is intact (the message names it).
        """
        path = Path(path)
        rng_states = self._gather_rng_states()
        if self.is_main_process:
            info = run_info(self.config, self.accelerator.num_processes, self.state.global_step)
            try:
                with ckpt.atomic_directory(path, info) as staging:
                    self._write_checkpoint(staging, rng_states, include_logs=include_logs)
            except Exception as err:  # e.g. a full disk: say what happened, where, and that the last one is intact
                os_error = ckpt.os_error_in(err)
                if os_error is None:
                    raise
                raise ckpt.checkpoint_write_error(os_error, path, self.checkpoints_dir) from err
        self.accelerator.wait_for_everyone()
        self.callbacks.fire("on_save", self, path=str(path))
        return path

    def _gather_rng_states(self) -> list[dict[str, Any]]:
        state = ckpt.capture_rng_state()
        if self.accelerator.num_processes == 1:
            return [state]
        from accelerate.utils import gather_object

        return gather_object([state])

    def _write_checkpoint(self, staging: Path, rng_states: list[dict[str, Any]], *, include_logs: bool) -> None:
        save_model_weights(self.unwrapped_model, staging)
        train_dir = staging / ckpt.TRAIN_DIR
        train_dir.mkdir()
        self.config.save(train_dir)
        dataset_config = getattr(self.train_dataset, "config", None)
        if callable(getattr(dataset_config, "save", None)):  # a tamrin Dataset: its config travels with the run
            dataset_config.save(train_dir)
        self._loss_tracker.fold_into(self.state)  # the device-side running loss resumes from the state
        self.state.save(train_dir / "trainer_state.yaml")
        ckpt.save_torch(self.optimizer.state_dict(), train_dir / "optimizer.pt")
        if self.lr_scheduler is not None:
            ckpt.save_torch(self.lr_scheduler.state_dict(), train_dir / "lr_scheduler.pt")
        scaler = getattr(self.accelerator, "scaler", None)
        if scaler is not None:
            ckpt.save_torch(scaler.state_dict(), train_dir / "scaler.pt")
        for rank, rng_state in enumerate(rng_states):
            ckpt.save_torch(rng_state, train_dir / _rng_file(rank, len(rng_states)))
        ckpt.save_torch(self.callbacks.state_dict(), train_dir / "callbacks.pt")
        gradients = {n: p.grad for n, p in self.unwrapped_model.named_parameters() if p.grad is not None}
        if gradients:  # a save inside an accumulation window keeps the window's gradients
            ckpt.save_torch(gradients, train_dir / "gradients.pt")
        if include_logs and (self.logs_dir / "training_logs.csv").is_file():
            (staging / "logs").mkdir()
            shutil.copy2(self.logs_dir / "training_logs.csv", staging / "logs" / "training_logs.csv")

    def _save_checkpoint(self) -> None:
        path = self.checkpoints_dir / ckpt.checkpoint_name(self.state.global_step)
        if self.state.best_step == self.state.global_step:
            self.state.best_checkpoint = str(path)
        self.save(path, include_logs=False)
        if self.is_main_process:
            ckpt.rotate_checkpoints(
                self.checkpoints_dir, self.config.save_total_limit, keep=[self.state.best_checkpoint]
            )

    def _last_checkpoint_hint(self) -> str:
        """Where a user can go back to after a failure (read from disk only when an error is raised)."""
        latest = ckpt.list_checkpoints(self.checkpoints_dir)
        return f"The last checkpoint is {latest[-1].path}." if latest else "No checkpoint was saved."

    def _resume_if_requested(self) -> Path | None:
        """Load the checkpoint to resume from; None for a fresh run (after `_clear_for_fresh_run`)."""
        path = self._checkpoint_to_resume()
        if path is None:
            self._clear_for_fresh_run()
        return path

    def _clear_for_fresh_run(self) -> None:
        """A fresh run must not meet another run's checkpoints: a later resume would pick theirs.

        Raises:
            ConfigError: the checkpoints dir holds checkpoints and `overwrite_output_dir` is False.
        """
        existing = ckpt.list_checkpoints(self.checkpoints_dir)
        if not existing:
            return
        if not self.config.overwrite_output_dir:
            raise ConfigError(
                f"{self.checkpoints_dir} holds checkpoints of an earlier run (latest: step "
                f"{existing[-1].global_step}); a new run there would mix with them. Resume it with "
                "`resume_from_checkpoint=True`, pick another `output_dir`, or set `overwrite_output_dir=True` "
                "to delete them and their logs first."
            )
        if self.is_main_process:
            for directory in (self.checkpoints_dir, self.logs_dir):
                if directory.exists():
                    shutil.rmtree(directory)
        self.accelerator.wait_for_everyone()

    def _checkpoint_to_resume(self) -> Path | None:
        request = self.config.resume_from_checkpoint
        if not request:
            return None
        if self.is_main_process:
            ckpt.remove_stale_directories(self.checkpoints_dir)
        self.accelerator.wait_for_everyone()
        if request is True:
            path = ckpt.latest_valid_checkpoint(self.checkpoints_dir)
            if path is None:
                self.accelerator.print(f"No checkpoint in {self.checkpoints_dir}: starting a new run.")
                return None
        else:
            path = self._checkpoint_source(str(request))
            problem = ckpt.verify_checkpoint(path)
            if problem:
                raise ValueError(f"Cannot resume from {path}: {problem}.")
        self.load_checkpoint(path)
        return path

    @staticmethod
    def _checkpoint_source(request: str) -> Path:
        """A local checkpoint directory, or a Hub repo id downloaded through the HF cache."""
        path = Path(request)
        if path.is_dir():
            return path
        from tamrin import hub

        if not path.exists() and hub.is_repo_id(request):
            return hub.download(request)
        raise FileNotFoundError(f"`resume_from_checkpoint={request!r}`: no such checkpoint directory or Hub repo id.")

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore everything `save` wrote: weights, optimizer, scheduler, state, RNG, callbacks."""
        path = Path(path)
        train_dir = path / ckpt.TRAIN_DIR
        self._warn_config_differences(train_dir)
        load_model_weights(self.unwrapped_model, path)
        self.optimizer.load_state_dict(ckpt.load_torch(train_dir / "optimizer.pt"))
        if self.lr_scheduler is not None:
            self.lr_scheduler.load_state_dict(ckpt.load_torch(train_dir / "lr_scheduler.pt"))
        self._apply_current_optimizer_settings(TrainerConfig.load(train_dir))
        scaler = getattr(self.accelerator, "scaler", None)
        if scaler is not None:
            scaler.load_state_dict(ckpt.load_torch(train_dir / "scaler.pt"))
        state = TrainerState.load(train_dir / "trainer_state.yaml")
        _check_loaded_state(state, train_dir / "trainer_state.yaml")
        self.state.load_state_dict(state.state_dict())
        self.callbacks.load_state_dict(ckpt.load_torch(train_dir / "callbacks.pt"))
        self._load_gradients(train_dir / "gradients.pt")
        self._restore_process_rng(train_dir)
        self.callbacks.fire("on_load", self, path=str(path))

    def _restore_process_rng(self, train_dir: Path) -> None:
        """Restore this process's RNG; after a change of world size, continue the same data instead.

        Positions are global (`epoch_samples`), so a run resumed with another number of processes
        sees each remaining sample of the epoch once. Per-process RNG streams cannot be carried over,
        so that run is not bitwise equal to one that kept its world size; the warning says so.
        """
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        saved_world = self.state.world_size
        if saved_world == world:
            ckpt.restore_rng_state(ckpt.load_torch(train_dir / _rng_file(rank, world)))
            return
        state = self.state
        state.epoch_step = math.ceil(state.epoch_samples / (self.config.batch_size * world))
        state.world_size = world
        warnings.warn(
            f"Resuming a {saved_world}-process checkpoint with {world} process(es): training continues from "
            f"global sample {state.epoch_samples} of epoch {state.epoch}, so no sample is repeated or skipped, "
            "but per-process random streams restart and results are not bitwise equal to a run that kept "
            f"{saved_world} process(es).",
            stacklevel=3,
        )
        own = train_dir / _rng_file(rank, saved_world)
        if rank < saved_world and own.is_file():
            ckpt.restore_rng_state(ckpt.load_torch(own))
        else:
            seed_everything(self.config.seed + 7919 * state.global_step + rank)

    def _load_gradients(self, path: Path) -> None:
        gradients = ckpt.load_torch(path) if path.is_file() else {}
        for name, parameter in self.unwrapped_model.named_parameters():
            parameter.grad = gradients[name].to(parameter.device) if name in gradients else None

    def _apply_current_optimizer_settings(self, saved: TrainerConfig) -> None:
        """Make the current learning_rate / weight_decay win over the restored optimizer state.

        `optimizer.load_state_dict` brings back the checkpoint's param groups (their lr and weight
        decay), and a scheduler its `base_lrs`; the config-difference warning promises the current
        values. A changed learning rate rescales every group's lr and the scheduler's base, so a
        schedule continues from the same point with the new peak.
        """
        old, new = saved.learning_rate, self.config.learning_rate
        if old != new:

            def rescale(lr: float) -> float:  # exact where the saved value is the configured one
                return new if lr == old else lr * (new / old)

            for group in self.optimizer.param_groups:
                for key in ("lr", "initial_lr"):
                    if isinstance(group.get(key), (int, float)):
                        group[key] = rescale(group[key])
            if isinstance(getattr(self.lr_scheduler, "base_lrs", None), list):
                self.lr_scheduler.base_lrs = [rescale(lr) for lr in self.lr_scheduler.base_lrs]
        if saved.weight_decay != self.config.weight_decay:
            for group in self.optimizer.param_groups:
                group["weight_decay"] = self.config.weight_decay

    def _warn_config_differences(self, train_dir: Path) -> None:
        saved = TrainerConfig.load(train_dir).to_dict()
        current = self.config.to_dict()
        ignored = {"resume_from_checkpoint", "overwrite_output_dir"}  # how a run starts, not what it trains
        differences = [
            f"{key}: checkpoint {saved[key]!r} -> now {current[key]!r}"
            for key in current
            if key not in ignored and saved.get(key) != current[key]
        ]
        if differences:
            warnings.warn(
                "The trainer config differs from the checkpoint's; the current values win:\n  "
                + "\n  ".join(differences),
                stacklevel=3,
            )


_STATE_COUNTERS = (
    "epoch", "epoch_step", "epoch_samples", "global_step", "optimizer_steps", "skipped_updates",
    "loss_count", "nonfinite_losses", "last_log_step", "last_eval_step", "world_size",
)  # fmt: skip


def _check_loaded_state(state: TrainerState, path: Path) -> None:
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


def _rng_file(rank: int, world_size: int) -> str:
    return "rng_state.pt" if world_size == 1 else f"rng_state_{rank}.pt"
