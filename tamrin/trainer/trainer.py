"""The Trainer: the training loop and its overridable steps, nothing else.

The Trainer holds its parts (a Checkpointer, a TrainingLogger, a LossTracker, a CallbackHandler,
a StepPlan); what each part does lives in its own module (checkpoint/, logs/, callbacks/,
building.py, steps.py, modeling.py); this file only says in which order things happen.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import send_to_device
from torch.utils.data import DataLoader

from tamrin.metrics_handlers import MetricsHandler, check_metric_for_best_model
from tamrin.trainer import building
from tamrin.trainer.callbacks import Callback, CallbackHandler, TrainerControl
from tamrin.trainer.checkpoint import Checkpointer
from tamrin.trainer.config import TrainerConfig
from tamrin.trainer.logs.logger import TrainingLogger
from tamrin.trainer.logs.progress import Progress, describe_run, resolve_progress_mode
from tamrin.trainer.loss_tracking import LossTracker
from tamrin.trainer.modeling import (
    adopt_data_preprocessor,
    batch_size_of,
    call_model,
    forward_keys,
    generation_inputs,
    load_model_weights,
    loss_from_outputs,
    prepare_model,
)
from tamrin.trainer.optim import PLATEAU_SCHEDULERS
from tamrin.trainer.runtime import build_accelerator, check_supported_engine, seed_everything
from tamrin.trainer.state import TrainerState
from tamrin.trainer.steps import EpochPosition, StepPlan, check_steps_per_epoch, check_train_dataset

__all__ = ["Trainer"]


class Trainer:
    """Trains a model as `config` says; subclass it and override a step to change one thing.

    The loop, with the overridable methods and the callback events where they run::

        train():
            resume from a checkpoint if asked                    # on_load
            on_train_begin
            for epoch in epochs:                                 # on_epoch_begin
                inner_training_loop(epoch):
                    loader = create_train_dataloader(dataset)    # once, with create_train_sampler(dataset);
                                                                 # the sampler moves per epoch
                    for batch in loader (from the resumed position):
                        on_step_begin
                        batch = prepare_input_batch(batch)
                        loss = training_step(batch)              # forward -> compute_loss -> backward
                        if the accumulation window ends:         # the loop's bookkeeping, around the steps:
                            (nan_policy="skip": drop a window that saw a NaN/inf loss)
                            clip_gradients()                     # max_grad_norm
                            optimization_step()                  # optimizer.step(); optimizer.zero_grad()
                            count the update; lr_scheduling_step(); on_optimizer_step
                        on_step_end(loss)
                        at log_steps:  log(...)                  # on_log
                        at eval_steps: evaluate() -> log(...)    # on_evaluate (epoch end if None)
                        if the epoch ends (or the run stops):
                            on_epoch_end                         # before the save: it holds the changes
                        at save_steps: save checkpoint           # on_save (epoch end if None)
            on_train_end; load the best model if asked
            return the final logs

    `evaluate(dataset)` runs `create_eval_dataloader` and `evaluation_step` per batch. Counting,
    scheduling, NaN checks and events happen in the loop, so an override of any step does only that
    step. The `create_*` methods build the parts once, in `__init__`; `save` / `load_checkpoint`
    go through `self.checkpointer` (the state-file table in checkpoint/state_files.py).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        config: TrainerConfig,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        data_collator: Any = None,
        preprocessor: Any = None,
        metrics_handler: MetricsHandler | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        lr_scheduler: Any = None,
        accelerator: Accelerator | None = None,
        callbacks: Iterable[Callback] | None = None,
    ) -> None:
        if not isinstance(config, TrainerConfig):
            raise TypeError(f"`config` must be a TrainerConfig, got {type(config).__name__}.")
        self.config = config
        self.accelerator = accelerator or build_accelerator(config)
        check_supported_engine(self.accelerator)
        seed_everything(config.seed)
        self.train_dataset = train_dataset
        self.eval_dataset = eval_dataset
        self.data_collator = data_collator or getattr(train_dataset, "data_collator", None)
        self.preprocessor = preprocessor
        self.output_dir = Path(config.output_dir)
        self.checkpoints_dir = self.output_dir / config.checkpoints_dir
        self.logs_dir = self.output_dir / config.logs_dir
        self.checkpointer = Checkpointer(self.accelerator, self.checkpoints_dir, self.logs_dir)  # .store: replaceable
        self.state = TrainerState(world_size=self.accelerator.num_processes)
        self.control = TrainerControl()
        adopt_data_preprocessor(model, preprocessor or getattr(train_dataset, "preprocessor", None))
        self.model = prepare_model(model, init_weights_from=config.init_weights_from, compile=config.compile)
        for dataset in (train_dataset, eval_dataset):  # e.g. rows longer than the model's context: fail now
            getattr(dataset, "check_model", lambda model: None)(model)
        self._forward_keys = forward_keys(self.model)
        # callbacks exist before the data: one may supply the training sampler (e.g. a Curriculum)
        self.callbacks = CallbackHandler(building.default_callbacks(config) + list(callbacks or ()))
        self.train_dataloader = self._checked_train_dataloader(train_dataset)
        self.plan = StepPlan.from_config(config, len(self.train_dataloader)) if self.train_dataloader else None
        self.optimizer = optimizer or self.create_optimizer()
        self.model, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)
        self.metrics_handler = metrics_handler or self.create_metrics_handler()
        check_metric_for_best_model(self.metrics_handler, config.metric_for_best_model)
        self.lr_scheduler = lr_scheduler if lr_scheduler is not None else self.create_lr_scheduler()
        self.progress_mode = resolve_progress_mode(config.progress, is_main_process=self.is_main_process)
        self.logger: TrainingLogger | None = None
        self.loss_tracker = LossTracker(self.accelerator.device)
        self.grad_norm: torch.Tensor | None = None  # pre-clip norm of the last update (max_grad_norm set)
        self._eval_loaders: dict[int, DataLoader] = {}
        self._last_logs: dict[str, float] = {}
        self._update_due = True
        self._position = EpochPosition()  # the training loader's place in its epoch (resume-aware)

    @property
    def is_main_process(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def unwrapped_model(self) -> torch.nn.Module:
        """The model without its DDP / compile wrappers (cached: accelerate's unwrap costs ~0.1 ms a call)."""
        if getattr(self, "_unwrapped_for", None) is not self.model:
            self._unwrapped = self.accelerator.unwrap_model(self.model)
            self._unwrapped_for = self.model
        return self._unwrapped

    # -- the parts, built once in __init__ (override one to replace it) ----------------------------
    def create_train_sampler(self, dataset: Any) -> Any:
        """The training sampler: a callback's (one with `create_train_sampler(trainer, dataset)`, e.g.
        a Curriculum), else a seeded, resumable RangedSampler sharded over the processes.

        The loop moves it with `set_epoch` / `set_start_index` and reads `position_after` and
        `end_index`, so a replacement must offer RangedSampler's interface (subclassing it does).
        """
        supplier = self.callbacks.sampler_supplier()
        if supplier is not None:
            return supplier.create_train_sampler(self, dataset)  # type: ignore[attr-defined]
        accelerator = self.accelerator
        return building.build_train_sampler(
            dataset, self.config, num_replicas=accelerator.num_processes, rank=accelerator.process_index
        )

    def create_train_dataloader(self, dataset: Any) -> DataLoader:
        """A DataLoader over `dataset` with `create_train_sampler`'s sampler (O(1) mid-epoch resume)."""
        sampler = self.create_train_sampler(dataset)
        return building.build_train_dataloader(
            dataset, sampler, self.config, self.data_collator, self.accelerator.device.type
        )

    def create_eval_dataloader(self, dataset: Any) -> DataLoader:
        """A DataLoader over an evaluation dataset, in order; accelerate shards it across processes."""
        return building.build_eval_dataloader(dataset, self.config, self.data_collator)

    def create_optimizer(self) -> torch.optim.Optimizer:
        """The optimizer named in the config, over the model's trainable parameters."""
        return building.build_config_optimizer(self.config, self.model)

    def create_lr_scheduler(self) -> Any:
        """The scheduler named in the config (None when none is named), sized by the step plan."""
        return building.build_config_lr_scheduler(
            self.config, self.optimizer, self.plan, maximize=self._maximize_best_metric()
        )

    def create_metrics_handler(self) -> MetricsHandler:
        """The task's metrics handler, given what it needs from the model (never the trainer)."""
        return building.build_task_metrics_handler(
            self.config, self.unwrapped_model, self.accelerator.gather_for_metrics
        )

    def _checked_train_dataloader(self, dataset: Any) -> DataLoader | None:
        """The training loader, once the data is known to give at least one step per epoch."""
        if dataset is None:
            return None
        check_train_dataset(dataset)
        loader = self.create_train_dataloader(dataset)
        check_steps_per_epoch(
            len(loader),
            dataset_size=len(dataset),
            batch_size=self.config.batch_size,
            num_processes=self.accelerator.num_processes,
        )
        return loader

    def _maximize_best_metric(self) -> bool:
        """Whether a larger metric_for_best_model is better (False before the metrics handler exists)."""
        handler = getattr(self, "metrics_handler", None)
        return handler is not None and handler.objective(self.config.metric_for_best_model) == "maximize"

    def add_callback(self, callback: Callback) -> None:
        """Add a callback after the others (e.g. a tool that watches a run)."""
        self.callbacks.add(callback)

    def remove_callback(self, callback: Callback | type[Callback]) -> Callback:
        """Remove a callback (an instance, or the first one of a class) and return it."""
        return self.callbacks.remove(callback)

    # -- the steps of one batch --------------------------------------------------------------------
    def prepare_input_batch(self, batch: Any) -> Any:
        """Move the batch to the device (override to add per-batch preprocessing)."""
        if self.accelerator.device.type == "cpu":
            return batch  # the loader's tensors are already there; walking the batch costs ~10 µs a step
        return send_to_device(batch, self.accelerator.device, non_blocking=True)

    def forward(self, batch: Any) -> Any:
        """Call the model, passing only the batch keys its `forward` accepts."""
        return call_model(self.model, batch, self._forward_keys)

    def compute_loss(self, outputs: Any, batch: Any) -> torch.Tensor:
        """The loss: the model's `compute_loss`, else its outputs' `loss` (override for your own)."""
        return loss_from_outputs(self.unwrapped_model, outputs, batch)

    def training_step(self, batch: Any) -> torch.Tensor:
        """Forward, loss and backward for one batch; returns the detached loss (on the device).

        Inside an accumulation window DDP's gradient all-reduce is skipped (accelerate's no_sync).
        """
        context = contextlib.nullcontext() if self._update_due else self.accelerator.no_sync(self.model)
        with context:
            outputs = self.forward(batch)
            loss = self.compute_loss(outputs, batch)
            if loss.dim() > 0:  # per-sample losses: their mean is the batch loss
                loss = loss.mean()
            self.accelerator.backward(loss)
        return loss.detach()

    def clip_gradients(self) -> None:
        """Clip the gradients to `max_grad_norm` (if set); the pre-clip norm stays on the device."""
        if self.config.max_grad_norm is not None:
            self.grad_norm = self.accelerator.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)

    def optimization_step(self) -> None:
        """Step the optimizer and clear the gradients (Hezar's minimum: override freely).

        The loop around it counts the update, steps the LR scheduler, drops NaN windows
        (nan_policy="skip") and fires on_optimizer_step, whatever an override does here.
        """
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def lr_scheduling_step(self) -> None:
        """Step the LR scheduler every `lr_scheduling_steps` updates (plateau: after evaluations)."""
        if self.lr_scheduler is None or self.config.lr_scheduler in PLATEAU_SCHEDULERS:
            return
        if self.state.optimizer_steps % (self.config.lr_scheduling_steps or 1) == 0:
            self.lr_scheduler.step()

    def evaluation_step(self, batch: Any) -> None:
        """Forward one evaluation batch; hand the loss and outputs to the metrics handler.

        A `compute_loss` that returns per-sample losses (shape [batch]) makes the evaluation loss
        exact under multi-process padding; a batch mean is weighted by the batch's real samples.
        """
        outputs = self.forward(batch)
        loss = self.compute_loss(outputs, batch)
        self.metrics_handler.update_loss(loss.detach(), batch_size_of(batch))
        if self.config.evaluate_with_generate:
            outputs = self.unwrapped_model.generate(**generation_inputs(batch, self._forward_keys))
        self.metrics_handler.update(outputs, batch)

    # -- the loops ----------------------------------------------------------------------------------
    def train(self) -> dict[str, float]:
        """Train as configured (resuming if asked); returns the final logs."""
        if self.train_dataloader is None:
            raise ValueError("Trainer.train() needs a `train_dataset`.")
        resumed = self._resume_if_requested()
        self.logger = TrainingLogger(
            self.logs_dir,
            columns=building.log_columns(self.config, self.metrics_handler.metric_names),
            resume_step=self.state.global_step if resumed else None,
            enabled=self.is_main_process,
        )
        if self.progress_mode != "none":
            processes, start = self.accelerator.num_processes, self.state.global_step
            print(describe_run(self.plan, num_samples=len(self.train_dataset), batch_size=self.config.batch_size,
                               num_processes=processes, start_step=start), flush=True)  # fmt: skip
        self.callbacks.fire("on_train_begin", self)
        try:
            while self.state.epoch < self.plan.num_epochs and not self._finished():
                self.callbacks.fire("on_epoch_begin", self)
                self.inner_training_loop(self.state.epoch)
            self._check_losses_finite()
        finally:
            self.logger.close()
        self.callbacks.fire("on_train_end", self)
        if self.config.load_best_model_at_end and self.state.best_checkpoint:
            load_model_weights(self.unwrapped_model, self.state.best_checkpoint)
        return dict(self._last_logs)

    def _finished(self) -> bool:
        return self.control.should_stop or self.plan.reached_max_steps(self.state.global_step)

    def inner_training_loop(self, epoch: int) -> None:
        """One epoch, from the sampler's resumed position to its end (or max_steps / a stop).

        on_epoch_end fires once, from `_after_step` before the epoch's last save.
        """
        loader = self.train_dataloader
        self._position.start(loader, epoch=epoch, position=self.state.epoch_samples, seed=self.config.seed)
        progress = Progress(
            self.progress_mode,
            total=self.plan.steps_per_epoch,
            initial=self.state.epoch_step,
            description=f"Epoch {epoch + 1}/{self.plan.num_epochs}",
        )
        self.model.train()
        epoch_ended = False
        try:
            for batch in loader:
                self.callbacks.fire("on_step_begin", self)
                batch = self.prepare_input_batch(batch)
                self._update_due = self.plan.is_update_step(
                    self.state.epoch_step + 1, self.state.global_step + 1, last_batch=self._position.next_is_last()
                )
                loss = self.training_step(batch)
                self._advance(loss)
                if self._update_due:
                    self._update()
                self.callbacks.fire_step_end(self, loss)
                progress.update()
                epoch_ended = self._after_step(progress)
                if epoch_ended or self._finished():
                    break
        finally:
            progress.close()
        if not epoch_ended:  # stopped after the step's save (e.g. by a callback's on_save)
            self.callbacks.fire("on_epoch_end", self)

    def _advance(self, loss: torch.Tensor) -> None:
        """Count the step, move the global sample position, and track the loss (no host sync)."""
        state = self.state
        state.global_step += 1
        state.epoch_step += 1
        state.epoch_samples = self._position.advance()
        self.loss_tracker.add(loss, state)

    def _update(self) -> None:
        """End an accumulation window: the bookkeeping around `clip_gradients` and `optimization_step`.

        With nan_policy="skip", a window that saw a NaN/inf loss is dropped instead (counted in
        `state.skipped_updates` and logged as `train.skipped_updates`).
        """
        if self.config.nan_policy == "skip" and not self.loss_tracker.close_window():
            self.optimizer.zero_grad(set_to_none=True)
            self.state.skipped_updates += 1
        else:
            self.clip_gradients()
            self.optimization_step()
            self.state.optimizer_steps += 1
        self.lr_scheduling_step()
        self.callbacks.fire("on_optimizer_step", self)

    def _after_step(self, progress: Progress) -> bool:
        """Log, evaluate, end the epoch and save when due; returns True when this epoch's loop ends.

        on_epoch_end fires before the save, so a checkpoint written at an epoch's end holds what the
        callbacks changed there (a resumed run does not fire it again).
        """
        end_of_epoch = self._position.at_end()
        step = self.state.global_step
        if end_of_epoch:
            self.state.end_epoch()
        end_of_run = self.plan.reached_max_steps(step) or (end_of_epoch and self.state.epoch >= self.plan.num_epochs)
        when = {"end_of_epoch": end_of_epoch, "end_of_run": end_of_run}
        log_due = self.plan.due(self.plan.log_steps, step, **when)
        evaluate_due = (
            self.config.do_evaluate
            and self.eval_dataset is not None
            and (self.plan.due(self.plan.eval_steps, step, **when) or self.control.should_evaluate)
        )
        save_due = self.plan.due(self.plan.save_steps, step, **when) or self.control.should_save
        if log_due or evaluate_due or save_due:
            self._check_losses_finite()
        if log_due:
            logs = self._training_logs()
            self.log(logs, step)
            progress.show(logs)
        if evaluate_due:
            self.control.should_evaluate = False
            self._evaluate_during_training(step)
        epoch_over = end_of_epoch or self._finished()  # after evaluating: early stopping may end the run
        if epoch_over:
            self.callbacks.fire("on_epoch_end", self)
        if save_due or self.control.should_save:
            self.control.should_save = False
            self.save_checkpoint()
        return epoch_over

    def _check_losses_finite(self) -> None:
        """With nan_policy="stop", raise if any loss since the start was NaN/inf (a host sync)."""
        if self.config.nan_policy == "stop":
            self.loss_tracker.raise_if_nonfinite(self.checkpointer.last_checkpoint_hint)

    def _training_logs(self) -> dict[str, float]:
        """The mean training loss since the last log and the learning rate (a host sync, by design)."""
        logs = {"learning_rate": float(self.optimizer.param_groups[0]["lr"])}
        mean_loss = self.loss_tracker.take_mean(self.state)
        if mean_loss is not None:
            logs["train.loss"] = mean_loss
        if self.config.nan_policy == "skip":
            logs["train.skipped_updates"] = float(self.state.skipped_updates)
        return logs

    def _evaluate_during_training(self, step: int) -> None:
        metrics = {f"evaluation.{key}": value for key, value in self.evaluate().items()}
        value = metrics.get(self.config.metric_for_best_model)
        if self.state.improve_best(value, step, maximize=self._maximize_best_metric()) and (
            self.config.load_best_model_at_end or self.config.save_total_limit
        ):
            self.control.should_save = True  # the best step always gets its own checkpoint
        if self.lr_scheduler is not None and self.config.lr_scheduler in PLATEAU_SCHEDULERS:
            self.lr_scheduler.step(metrics[self.config.metric_for_best_model])
        self.log(metrics, step)
        self.callbacks.fire("on_evaluate", self, metrics=metrics)

    @torch.inference_mode()
    def evaluate(self, dataset: Any = None) -> dict[str, float]:
        """Evaluate on `dataset` (default: the eval dataset); returns {"loss": ..., metric: ...}.

        Writes no logs: the training loop logs what it gets back as `evaluation.<metric>`.
        """
        dataset = self.eval_dataset if dataset is None else dataset
        if dataset is None:
            raise ValueError("Trainer.evaluate() needs a dataset: pass one or give the Trainer an `eval_dataset`.")
        loader = self._eval_loader(dataset)
        was_training = self.model.training
        self.model.eval()
        self.metrics_handler.reset()
        progress = Progress(
            self.progress_mode if self.progress_mode == "bar" else "none", total=len(loader), description="Evaluating"
        )
        for batch in loader:
            self.evaluation_step(self.prepare_input_batch(batch))
            progress.update()
        progress.close()
        self.model.train(was_training)
        return self.metrics_handler.compute()

    def _eval_loader(self, dataset: Any) -> DataLoader:
        """The prepared eval loader of `dataset` (prepared once: accelerate keeps a reference to each)."""
        key = id(dataset)
        if key not in self._eval_loaders:
            self._eval_loaders[key] = self.accelerator.prepare(self.create_eval_dataloader(dataset))
        return self._eval_loaders[key]

    # -- logs ---------------------------------------------------------------------------------------
    def log(self, logs: dict[str, float], step: int) -> None:
        """Write `logs` at `step` to the CSV and TensorBoard logs (main process) and tell callbacks."""
        if self.logger is not None:
            self.logger.log(logs, step=step, epoch=self.state.epoch)
        self._last_logs.update(logs)
        self.callbacks.fire("on_log", self, logs=logs)

    # -- checkpoints --------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, *, include_logs: bool = True) -> Path:
        """Save the model, configs, optimizer/scheduler/state, RNG and logs into `path`, atomically.

        Call it on every process. What is written is the table in checkpoint/state_files.py.

        Raises:
            CheckpointWriteError: an OSError while writing (e.g. a full disk); nothing half-written is
                left behind and the previous checkpoint is intact (the message names it).
        """
        path = self.checkpointer.save(self, path, include_logs=include_logs)
        self.callbacks.fire("on_save", self, path=str(path))
        return path

    def save_checkpoint(self) -> Path:
        """Save this step's checkpoint into checkpoints_dir, then rotate to `save_total_limit`."""
        path = self.checkpointer.step_checkpoint_path(self.state.global_step)
        if self.state.best_step == self.state.global_step:
            self.state.best_checkpoint = str(path)
        self.save(path, include_logs=False)
        self.checkpointer.rotate(self.config.save_total_limit, keep=[self.state.best_checkpoint])
        return path

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore everything `save` wrote: weights, optimizer, scheduler, state, RNG, callbacks."""
        self.checkpointer.load(self, path)
        self.callbacks.fire("on_load", self, path=str(path))

    def _resume_if_requested(self) -> Path | None:
        """Load the checkpoint `resume_from_checkpoint` names; None for a fresh run (checked first)."""
        path = self.checkpointer.resume_path(self.config.resume_from_checkpoint)
        if path is None:
            self.checkpointer.clear_for_fresh_run(self.config.overwrite_output_dir)
        else:
            self.load_checkpoint(path)
        return path

    def load_csv_logs(self) -> Any:
        """The run's CSV logs as a pandas DataFrame, one row per logged step."""
        from tamrin.trainer.logs.logger import load_logs

        return load_logs(self.logs_dir)

    def push_to_hub(self, repo_id: str, commit_message: str | None = None, private: bool = False, **kwargs: Any) -> str:
        """Push the trained model, configs, state and logs to the Hub in one commit (see tamrin.hub)."""
        from tamrin.trainer.checkpoint.publishing import push_trainer_to_hub

        return push_trainer_to_hub(self, repo_id, commit_message=commit_message, private=private, **kwargs)
