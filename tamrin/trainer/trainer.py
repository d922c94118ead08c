"""The Trainer: the training loop and its overridable steps, nothing else.

The Trainer holds its parts (a Checkpointer, a TrainingLogger, a LossTracker, a CallbackHandler,
a StepPlan), built by its base `TrainerParts` (parts.py, with the `create_*` extension points and
save/load); what each part does lives in its own module (checkpoint/, logs/, callbacks/,
building.py, steps.py, modeling.py). This file only says in which order things happen.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from accelerate.utils import send_to_device
from torch.utils.data import DataLoader

from tamrin.trainer.logs.progress import Progress
from tamrin.trainer.modeling import (
    batch_size_of,
    call_model,
    generation_inputs,
    loss_from_outputs,
    step_loss,
)
from tamrin.trainer.optim import EPOCH_SCHEDULERS, PLATEAU_SCHEDULERS
from tamrin.trainer.parts import TrainerParts
from tamrin.trainer.sharding import gathered_for_generation, inference_context
from tamrin.trainer.steps import StepPlan

__all__ = ["Trainer"]


class Trainer(TrainerParts):
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
            self.backward(loss)
        return loss.detach()

    def backward(self, loss: torch.Tensor) -> None:
        """Backpropagate a batch's loss, scaled for its accumulation window (call it from an override).

        The gradient of an update is the mean of its batches' gradients: each loss is divided by the
        number of batches its window really holds, so the epoch's short last window counts as much as
        a full one (the HF Trainer does the same). Token-level losses are averaged per batch first.
        """
        window, divisor = self._window, self._accelerate_divisor
        if window != divisor:  # an Accelerator passed in with the config's accumulation divides by it
            loss = loss / window if divisor == 1 else loss * (divisor / window)
        self._backward(loss)  # accelerate's backward, or loss.backward() where that is all it does

    def clip_gradients(self) -> None:
        """Clip the gradients to `max_grad_norm` (if set); the pre-clip norm stays on the device."""
        if self.config.max_grad_norm is not None:
            self.grad_norm = self.accelerator.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)

    def optimization_step(self) -> None:
        """Step the optimizer and clear the gradients (Hezar's minimum: override freely).

        The loop around it counts the update, steps the LR scheduler, drops NaN windows
        (nan_policy="skip") and fires on_optimizer_step, whatever an override does here.
        """
        optimizer = self._step_optimizer  # `self.optimizer`, or the torch optimizer it wraps (same work, ~50 µs less)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def lr_scheduling_step(self) -> None:
        """Step the LR scheduler after an update, by the rule `optim.scheduler_cadence` states.

        Per-update schedules (warmup, one_cycle, ...) step after every update; Hezar's epoch-style
        ones once per epoch, or once per `lr_scheduling_steps` steps crossed by this update's window;
        reduce_on_plateau after evaluations (not here).
        """
        scheduler, name, every = self.lr_scheduler, self.config.lr_scheduler, self.config.lr_scheduling_steps
        if scheduler is None or name in PLATEAU_SCHEDULERS:
            return
        if name not in EPOCH_SCHEDULERS and (every is None or name is not None):
            scheduler.step()
        elif every is None:
            if self._position.at_end():  # the epoch's last update
                scheduler.step()
        else:  # each multiple of `every` among the steps of this update's window
            step = self.state.global_step
            for _ in range(step // every - (step - self._window) // every):
                scheduler.step()

    def evaluation_step(self, batch: Any) -> None:
        """Forward one evaluation batch; hand the loss and outputs to the metrics handler.

        A `compute_loss` that returns per-sample losses (shape [batch]) makes the evaluation loss
        exact under multi-process padding; a batch mean is weighted by the batch's real samples.
        """
        outputs = self.forward(batch)
        loss = self.compute_loss(outputs, batch)
        self.metrics_handler.update_loss(loss.detach(), batch_size_of(batch))
        if self.config.evaluate_with_generate:
            generate = self.unwrapped_model.generate  # evaluate_with_generate: the model must define generate()
            with gathered_for_generation(self.model):  # a sharded model: no collective call per token
                outputs = generate(**generation_inputs(batch, self._forward_keys))  # type: ignore[operator]
        if self.metrics_handler.metric_names:  # no metrics asked for: the targets are not read at all
            self.metrics_handler.update(outputs, batch)

    # -- the loops ----------------------------------------------------------------------------------
    def train(self) -> dict[str, float]:
        """Train as configured (resuming if asked); returns the final logs."""
        if self.train_dataloader is None or self.plan is None:
            raise ValueError("Trainer.train() needs a `train_dataset`.")
        self._start_run()  # lock the output_dir, resume (or check a fresh run), open the logs, print the plan
        try:
            self.callbacks.fire("on_train_begin", self)
            while self.state.epoch < self._plan.num_epochs and not self._finished():
                self.callbacks.fire("on_epoch_begin", self)
                self.inner_training_loop(self.state.epoch)
            self._check_losses_finite()
        except BaseException:
            self._end_run(failed=True)
            raise
        self._end_run()  # close the logs, release the lock; RunInterrupted after a SIGTERM / Ctrl-C stop
        self.callbacks.fire("on_train_end", self)
        if self.config.load_best_model_at_end and self.state.best_checkpoint:
            self.checkpointer.load_weights(self, self.state.best_checkpoint)
        return dict(self._last_logs)

    @property
    def _plan(self) -> StepPlan:
        """The step plan of a Trainer that has training data (train() checked that it has)."""
        assert self.plan is not None, "only a Trainer with a train_dataset has a step plan"
        return self.plan

    @property
    def _loader(self) -> DataLoader:
        assert self.train_dataloader is not None, "only a Trainer with a train_dataset has a training loader"
        return self.train_dataloader

    def _finished(self) -> bool:
        return self.control.should_stop or self._plan.reached_max_steps(self.state.global_step)

    def inner_training_loop(self, epoch: int) -> None:
        """One epoch, from the sampler's resumed position to its end (or max_steps / a stop).

        on_epoch_end fires once, from `_after_step` before the epoch's last save.
        """
        loader = self._loader
        self._position.start(
            loader,
            epoch=epoch,
            position=self.state.epoch_samples,
            seed=self.config.seed,
            done_steps=self.state.epoch_step,
        )
        progress = Progress(
            self.progress_mode,
            total=self.state.epoch_step + self._position.batches_left(),  # this epoch's length, resumed or not
            initial=self.state.epoch_step,
            description=f"Epoch {epoch + 1}/{self._plan.num_epochs}",
        )
        self.model.train()
        epoch_ended = False
        try:
            for batch in self._position.batches():
                self.callbacks.fire("on_step_begin", self)
                batch = self.prepare_input_batch(batch)
                self._update_due = self._plan.is_update_step(
                    self.state.epoch_step + 1, self.state.global_step + 1, last_batch=self._position.next_is_last()
                )
                if self._plan.accumulation > 1:
                    self._window = self._window_size()
                loss = step_loss(self.training_step(batch), self.accelerator.device)
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

    def _window_size(self) -> int:
        """The batches in the accumulation window of the coming step (the epoch's or run's end cuts it short)."""
        state, plan = self.state, self._plan
        last = state.epoch_step + self._position.batches_left()
        if plan.max_steps is not None:
            last = min(last, state.epoch_step + plan.max_steps - state.global_step)
        return plan.window_size(state.epoch_step + 1, last)

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
        end_of_run = self._plan.reached_max_steps(step) or (end_of_epoch and self.state.epoch >= self._plan.num_epochs)
        when = {"end_of_epoch": end_of_epoch, "end_of_run": end_of_run}
        log_due = self._plan.due(self._plan.log_steps, step, **when)
        evaluate_due = (
            self.config.do_evaluate
            and self.eval_dataset is not None
            and (self._plan.due(self._plan.eval_steps, step, **when) or self.control.should_evaluate)
        )
        save_due = self._plan.due(self._plan.save_steps, step, **when) or self.control.should_save
        if log_due or evaluate_due or save_due:
            self._check_losses_finite()
        if log_due:
            logs = self._training_logs()
            self._track_best(logs, step)
            self.log(logs, step)
            progress.show(logs)
        if evaluate_due:
            self.control.should_evaluate = False
            metrics = self._evaluate_during_training(step)
            progress.report(f"Evaluation at step {step}", metrics)
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

    def _evaluate_during_training(self, step: int) -> dict[str, float]:
        metrics = {f"evaluation.{key}": value for key, value in self.evaluate().items()}
        self._track_best(metrics, step)
        self.log(metrics, step)
        self.callbacks.fire("on_evaluate", self, metrics=metrics)
        return metrics

    def _track_best(self, logs: dict[str, float], step: int) -> None:
        """Follow metric_for_best_model in training or evaluation logs: the best step, reduce_on_plateau."""
        value = logs.get(self.metric_for_best_model)
        if value is None:
            return
        if self.state.improve_best(value, step, maximize=self._maximize_best_metric()) and (
            self.config.load_best_model_at_end or self.config.save_total_limit
        ):
            self.control.should_save = True  # the best step always gets its own checkpoint
        if self.lr_scheduler is not None and self.config.lr_scheduler in PLATEAU_SCHEDULERS:
            self.lr_scheduler.step(value)

    def evaluate(self, dataset: Any = None) -> dict[str, float]:
        """Evaluate on `dataset` (default: the eval dataset); returns {"loss": ..., metric: ...}.

        Writes no logs: the training loop logs what it gets back as `evaluation.<metric>`. Runs in
        inference mode (no_grad for a sharded model: `sharding.inference_context` says why).
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
        with inference_context(self.model):
            for batch in loader:
                self.evaluation_step(self.prepare_input_batch(batch))
                progress.update()
        progress.close()
        self.model.train(was_training)
        return self.metrics_handler.compute()

    def _eval_loader(self, dataset: Any) -> DataLoader:
        """The prepared eval loader of `dataset` (prepared once: accelerate keeps a reference to each).

        accelerate shards it across processes; `prepare_input_batch` moves its (pinned) batches without
        waiting, where accelerate's device placement would copy every tensor blocking.
        """
        key = id(dataset)
        if key not in self._eval_loaders:
            loader = self.create_eval_dataloader(dataset)
            self._eval_loaders[key] = self.accelerator.prepare_data_loader(loader, device_placement=False)
        return self._eval_loaders[key]

    # -- logs ---------------------------------------------------------------------------------------
    def log(self, logs: dict[str, float], step: int) -> None:
        """Write `logs` at `step` to the CSV and TensorBoard logs (main process) and tell callbacks."""
        if self.logger is not None:
            self.logger.log(logs, step=step, epoch=self.state.epoch)
        self._last_logs.update(logs)
        self.callbacks.fire("on_log", self, logs=logs)
