"""The Trainer: the training loop and its overridable steps, nothing else.

Checkpoint files, logs, step arithmetic, the model contract, callbacks and progress output live in
their own modules beside this one; this file only says in which order they happen.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import send_to_device
from torch.utils.data import DataLoader

from tamrin.configs import ConfigError
from tamrin.datasets.samplers import RangedSampler
from tamrin.metrics_handlers import MetricsHandler, build_metrics_handler, check_metric_for_best_model
from tamrin.trainer.callbacks import Callback, CallbackHandler, EarlyStopping, TrainerControl
from tamrin.trainer.checkpoint_io import CheckpointingMixin
from tamrin.trainer.checkpointing import list_checkpoints
from tamrin.trainer.config import TrainerConfig
from tamrin.trainer.logging import TrainingLogger
from tamrin.trainer.modeling import call_model, forward_keys, load_model_weights, loss_from_outputs
from tamrin.trainer.nonfinite import NonFiniteGuard
from tamrin.trainer.optim import PLATEAU_SCHEDULERS, build_lr_scheduler, build_optimizer
from tamrin.trainer.progress import Progress, resolve_progress_mode
from tamrin.trainer.runtime import build_accelerator, check_supported_engine, seed_everything
from tamrin.trainer.state import TrainerState
from tamrin.trainer.steps import StepPlan

__all__ = ["Trainer"]


class Trainer(CheckpointingMixin):
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
                        if the accumulation window ends:
                            optimization_step()                  # clip, step, zero_grad; on_optimizer_step
                            LR scheduler step
                        on_step_end
                        at log_steps:  log(...)                  # on_log
                        at eval_steps: evaluate() -> log(...)    # on_evaluate (epoch end if None)
                        at save_steps: save checkpoint           # on_save (epoch end if None)
                on_epoch_end
            on_train_end; load the best model if asked
            return the final logs

    `evaluate(dataset)` runs `create_eval_dataloader` and `evaluation_step` per batch.
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
        self.state = TrainerState(world_size=self.accelerator.num_processes)
        self.control = TrainerControl()
        self.model = self._init_weights(model)
        self._forward_keys = forward_keys(self.model)
        # callbacks exist before the data: one may supply the training sampler (e.g. a Curriculum)
        self.callbacks = CallbackHandler(self._default_callbacks() + list(callbacks or ()))
        self.train_dataloader = self.create_train_dataloader(train_dataset) if train_dataset is not None else None
        self.plan = StepPlan.from_config(config, len(self.train_dataloader)) if self.train_dataloader else None
        self.optimizer = optimizer or self.create_optimizer()
        self.model, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)
        self.metrics_handler = metrics_handler or self.create_metrics_handler()
        check_metric_for_best_model(self.metrics_handler, config.metric_for_best_model)
        self.lr_scheduler = lr_scheduler if lr_scheduler is not None else self.create_lr_scheduler()
        self.progress_mode = resolve_progress_mode(config.progress, is_main_process=self.is_main_process)
        self.logger: TrainingLogger | None = None
        self._eval_loaders: dict[int, DataLoader] = {}
        self._running_loss = torch.zeros((), device=self.accelerator.device)
        self._nonfinite = NonFiniteGuard(self.accelerator.device)
        self._last_logs: dict[str, float] = {}
        self._update_due = True
        self.grad_norm: torch.Tensor | None = None  # pre-clip norm of the last update (max_grad_norm set)
        self._loader_steps = 0  # steps since the sampler's start position (resume-aware)

    # -- construction steps ----------------------------------------------------------------------
    @property
    def is_main_process(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def unwrapped_model(self) -> torch.nn.Module:
        return self.accelerator.unwrap_model(self.model)

    def _init_weights(self, model: torch.nn.Module) -> torch.nn.Module:
        """Load `init_weights_from` (a local model directory or a Hub repo id) and compile if asked."""
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}.")
        source = self.config.init_weights_from
        if source:
            directory = Path(source)
            if not directory.exists():
                from tamrin import hub

                if not hub.is_repo_id(source):
                    raise FileNotFoundError(f"`init_weights_from={source!r}`: no such directory or Hub repo id.")
                directory = hub.download(source)
            load_model_weights(model, directory)
        return torch.compile(model) if self.config.compile else model

    def create_train_dataloader(self, dataset: Any) -> DataLoader:
        """A DataLoader over `dataset` whose sampler (`create_train_sampler`) resumes mid-epoch in O(1).

        The loader has its own generator, reseeded each epoch, so creating its iterator never draws
        from the global RNG (which dropout uses) and a resumed run draws the same numbers.
        """
        if len(dataset) == 0:
            raise ValueError("The training dataset is empty.")
        sampler = self.create_train_sampler(dataset)
        return DataLoader(
            dataset,
            batch_size=self.config.batch_size,
            sampler=sampler,
            collate_fn=self.data_collator,
            num_workers=self.config.num_dataloader_workers,
            generator=torch.Generator(),
            pin_memory=self.accelerator.device.type == "cuda",
            persistent_workers=False,
        )

    def create_train_sampler(self, dataset: Any) -> RangedSampler:
        """The training sampler: a callback's (one with `create_train_sampler(trainer, dataset)`, e.g.
        a Curriculum), else a RangedSampler. Override to use your own.

        The loop moves it with `set_epoch` / `set_start_index` and reads `position_after` and
        `end_index`, so a replacement must offer RangedSampler's interface (subclassing it does).
        """
        suppliers = [c for c in self.callbacks.callbacks if callable(getattr(c, "create_train_sampler", None))]
        if len(suppliers) > 1:
            names = ", ".join(type(c).__name__ for c in suppliers)
            raise ConfigError(f"Several callbacks supply the training sampler ({names}); keep one of them.")
        if suppliers:
            return suppliers[0].create_train_sampler(self, dataset)
        return RangedSampler(
            dataset,
            self.config.batch_size,
            shuffle=self.config.dataloader_shuffle,
            seed=self.config.seed,
            num_replicas=self.accelerator.num_processes,
            rank=self.accelerator.process_index,
        )

    def create_eval_dataloader(self, dataset: Any) -> DataLoader:
        """A DataLoader over an evaluation dataset, in order; accelerate shards it across processes."""
        collator = getattr(dataset, "data_collator", None) or self.data_collator
        return DataLoader(
            dataset,
            batch_size=self.config.eval_batch_size or self.config.batch_size,
            shuffle=False,
            collate_fn=collator,
            num_workers=self.config.num_dataloader_workers,
            generator=torch.Generator(),  # iterating never draws from the global RNG
        )

    def create_optimizer(self) -> torch.optim.Optimizer:
        """The optimizer named in the config, over the model's trainable parameters."""
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        return build_optimizer(
            self.config.optimizer,
            parameters,
            learning_rate=self.config.learning_rate,
            weight_decay=self.config.weight_decay,
        )

    def create_lr_scheduler(self) -> Any:
        """The scheduler named in the config (None when none is named)."""
        name = self.config.lr_scheduler
        if name is None:
            return None
        kwargs = dict(self.config.lr_scheduler_kwargs)
        if name in PLATEAU_SCHEDULERS:
            kwargs.setdefault("mode", "max" if self._maximize_best_metric() else "min")
        total = self.plan.total_updates if self.plan else 1
        warmup = self.plan.warmup_steps if self.plan else 0
        return build_lr_scheduler(name, self.optimizer, total_updates=total, warmup_steps=warmup, kwargs=kwargs)

    def create_metrics_handler(self) -> MetricsHandler:
        """The task's metrics handler, given what it needs from the model (never the trainer)."""
        model = self.accelerator.unwrap_model(self.model)
        context: dict[str, Any] = {}
        for name in ("post_process", "decode_labels"):
            if callable(getattr(model, name, None)):
                context[name] = getattr(model, name)
        model_config = getattr(model, "config", None)
        for name in ("id2label", "num_labels"):
            if getattr(model_config, name, None) is not None:
                context[name] = getattr(model_config, name)
        if getattr(model_config, "problem_type", None) == "multi_label_classification":  # Hugging Face models
            context["multilabel"] = True
        return build_metrics_handler(
            self.config.task, self.config.metrics, gather=self.accelerator.gather_for_metrics, **context
        )

    def _default_callbacks(self) -> list[Callback]:
        if self.config.early_stopping_patience is None:
            return []
        return [EarlyStopping(self.config.early_stopping_patience, self.config.early_stopping_min_delta)]

    def _maximize_best_metric(self) -> bool:
        handler = getattr(self, "metrics_handler", None)
        return handler is not None and handler.objective(self.config.metric_for_best_model) == "maximize"

    # -- the steps of one batch --------------------------------------------------------------------
    def prepare_input_batch(self, batch: Any) -> Any:
        """Move the batch to the device (override to add per-batch preprocessing)."""
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

    def optimization_step(self) -> None:
        """Clip gradients to max_grad_norm, step the optimizer and clear the gradients.

        With nan_policy="skip", a window that saw a NaN/inf loss is dropped instead (counted in
        `state.skipped_updates` and logged as `train.skipped_updates`).
        """
        if self.config.nan_policy == "skip":
            finite = self._nonfinite.window_is_finite()
            self._nonfinite.end_window()
            if not finite:
                self.optimizer.zero_grad(set_to_none=True)
                self.state.skipped_updates += 1
                return
        if self.config.max_grad_norm is not None:  # the returned norm stays on the device (no sync)
            self.grad_norm = self.accelerator.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.optimizer_steps += 1

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
        self.metrics_handler.update_loss(loss.detach(), _batch_size(batch))
        if self.config.evaluate_with_generate:
            outputs = self.unwrapped_model.generate(**_model_inputs(batch, self._forward_keys))
        self.metrics_handler.update(outputs, batch)

    # -- the loops ----------------------------------------------------------------------------------
    def train(self) -> dict[str, float]:
        """Train as configured (resuming if asked); returns the final logs."""
        if self.train_dataloader is None:
            raise ValueError("Trainer.train() needs a `train_dataset`.")
        resumed = self._resume_if_requested()
        self.logger = TrainingLogger(
            self.logs_dir,
            columns=self._log_columns(),
            resume_step=self.state.global_step if resumed else None,
            enabled=self.is_main_process,
        )
        if self.progress_mode != "none":
            print(self._describe_run(), flush=True)
        self.callbacks.fire("on_train_begin", self)
        try:
            while self.state.epoch < self.plan.num_epochs and not self._finished():
                self.callbacks.fire("on_epoch_begin", self)
                self.inner_training_loop(self.state.epoch)
                self.callbacks.fire("on_epoch_end", self)
            self._check_losses_finite()
        finally:
            self.logger.close()
        self.callbacks.fire("on_train_end", self)
        if self.config.load_best_model_at_end and self.state.best_checkpoint:
            load_model_weights(self.unwrapped_model, self.state.best_checkpoint)
        return dict(self._last_logs)

    def _describe_run(self) -> str:
        """One line of step arithmetic: samples, global batch, steps and updates."""
        processes, accumulation = self.accelerator.num_processes, self.config.gradient_accumulation_steps
        global_batch = self.config.batch_size * processes * accumulation
        start = f", resuming at step {self.state.global_step}" if self.state.global_step else ""
        return (
            f"Training on {len(self.train_dataset)} samples: global batch {global_batch} "
            f"(batch_size {self.config.batch_size} x {processes} process(es) x {accumulation} accumulation), "
            f"{self.plan.steps_per_epoch} steps/epoch per process, {self.plan.total_steps} steps, "
            f"{self.plan.total_updates} optimizer updates{start}."
        )

    def _finished(self) -> bool:
        return self.control.should_stop or self.plan.reached_max_steps(self.state.global_step)

    def inner_training_loop(self, epoch: int) -> None:
        """One epoch, from the sampler's resumed position to its end (or max_steps / a stop)."""
        loader = self._position_dataloader(epoch)
        progress = Progress(
            self.progress_mode,
            total=self.plan.steps_per_epoch,
            initial=self.state.epoch_step,
            description=f"Epoch {epoch + 1}/{self.plan.num_epochs}",
        )
        self.model.train()
        try:
            for batch in loader:
                self.callbacks.fire("on_step_begin", self)
                batch = self.prepare_input_batch(batch)
                self._update_due = self.plan.is_update_step(
                    self.state.epoch_step + 1, self.state.global_step + 1, last_batch=self._is_last_batch()
                )
                loss = self.training_step(batch)
                self._advance(loss)
                if self._update_due:
                    self.optimization_step()
                    self.lr_scheduling_step()
                    self.callbacks.fire("on_optimizer_step", self)
                self.callbacks.fire("on_step_end", self)
                progress.update()
                if self._after_step(progress) or self._finished():
                    break
        finally:
            progress.close()

    def _position_dataloader(self, epoch: int) -> DataLoader:
        """Point the sampler at `epoch` and the resumed position; reseed the loader's generator."""
        loader = self.train_dataloader
        loader.sampler.set_epoch(epoch)
        loader.sampler.set_start_index(self.state.epoch_samples)
        loader.generator.manual_seed(self.config.seed * 1_000_003 + epoch)
        self._loader_steps = 0
        return loader

    def _is_last_batch(self) -> bool:
        """Whether the next batch is the epoch's last (its window must end with it)."""
        sampler = self.train_dataloader.sampler
        # a sampler that stops short of end_index (drop_last=True) ends the epoch with the loader
        loader_ends = self._loader_steps + 1 >= len(self.train_dataloader)
        return loader_ends or sampler.position_after(self._loader_steps + 1) >= sampler.end_index

    def _advance(self, loss: torch.Tensor) -> None:
        """Count the step, move the global sample position, and track the loss (no host sync)."""
        state = self.state
        state.global_step += 1
        state.epoch_step += 1
        self._loader_steps += 1
        state.epoch_samples = self.train_dataloader.sampler.position_after(self._loader_steps)
        loss = self._nonfinite.observe(loss.float(), state.global_step, state.epoch_step - 1)
        self._running_loss += loss
        state.loss_count += 1

    def _after_step(self, progress: Progress) -> bool:
        """Log, evaluate and save when due; returns True when the epoch ended."""
        end_of_epoch = (
            self.state.epoch_samples >= self.train_dataloader.sampler.end_index
            or self._loader_steps >= len(self.train_dataloader)  # else a drop_last sampler never ends its epoch
        )
        step = self.state.global_step
        if end_of_epoch:
            self._end_epoch_counters()
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
        if save_due or self.control.should_save:
            self.control.should_save = False
            self._save_checkpoint()
        return end_of_epoch

    def _check_losses_finite(self) -> None:
        """With nan_policy="stop", raise if any loss since the start was NaN/inf (a host sync)."""
        if self.config.nan_policy == "stop":
            self._nonfinite.raise_if_seen(self._last_checkpoint_hint)

    def _last_checkpoint_hint(self) -> str:
        latest = list_checkpoints(self.checkpoints_dir)
        return f"The last checkpoint is {latest[-1].path}." if latest else "No checkpoint was saved."

    def _end_epoch_counters(self) -> None:
        state = self.state
        state.epoch += 1
        state.epoch_step = 0
        state.epoch_samples = 0

    def _training_logs(self) -> dict[str, float]:
        """The mean training loss since the last log and the learning rate (a host sync, by design)."""
        logs = {"learning_rate": float(self.optimizer.param_groups[0]["lr"])}
        self.state.nonfinite_losses += self._nonfinite.take_bad_count()
        finite_count = self.state.loss_count - self.state.nonfinite_losses
        if finite_count:
            logs["train.loss"] = float(self._running_loss.item() + self.state.loss_sum) / finite_count
        if self.config.nan_policy == "skip":
            logs["train.skipped_updates"] = float(self.state.skipped_updates)
        self.state.nonfinite_losses = 0
        self._running_loss.zero_()
        self.state.loss_sum = 0.0
        self.state.loss_count = 0
        return logs

    def _evaluate_during_training(self, step: int) -> None:
        metrics = {f"evaluation.{key}": value for key, value in self.evaluate().items()}
        self.state.last_eval_step = step
        self._track_best(metrics, step)
        if self.lr_scheduler is not None and self.config.lr_scheduler in PLATEAU_SCHEDULERS:
            self.lr_scheduler.step(metrics[self.config.metric_for_best_model])
        self.log(metrics, step)
        self.callbacks.fire("on_evaluate", self, metrics=metrics)

    def _track_best(self, metrics: dict[str, float], step: int) -> None:
        value = metrics.get(self.config.metric_for_best_model)
        if value is None or math.isnan(value):
            return
        best = self.state.best_metric
        better = best is None or (value > best if self._maximize_best_metric() else value < best)
        if better:
            self.state.best_metric = value
            self.state.best_step = step
            self.state.best_checkpoint = None
            if self.config.load_best_model_at_end or self.config.save_total_limit:
                self.control.should_save = True  # the best step always gets its own checkpoint

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
        self.state.last_log_step = step
        self._last_logs.update(logs)
        self.callbacks.fire("on_log", self, logs=logs)

    def _log_columns(self) -> list[str]:
        names = ["loss", *(name for name in self.metrics_handler.metric_names if name != "loss")]
        skipped = ["train.skipped_updates"] if self.config.nan_policy == "skip" else []
        return ["train.loss", "learning_rate", *skipped, *(f"evaluation.{name}" for name in names)]

    def load_csv_logs(self) -> Any:
        """The run's CSV logs as a pandas DataFrame, one row per logged step."""
        from tamrin.trainer.logging import load_logs

        return load_logs(self.logs_dir)

    def push_to_hub(self, repo_id: str, commit_message: str | None = None, private: bool = False, **kwargs: Any) -> str:
        """Push the trained model, configs, state and logs to the Hub in one commit (see tamrin.hub)."""
        from tamrin.trainer.publishing import push_trainer_to_hub

        return push_trainer_to_hub(self, repo_id, commit_message=commit_message, private=private, **kwargs)


def _batch_size(batch: Any) -> int:
    """Samples in a batch: the first dimension of its first tensor."""
    if isinstance(batch, Mapping):
        tensors = [v for v in batch.values() if isinstance(v, torch.Tensor) and v.dim() > 0]
    elif isinstance(batch, (tuple, list)):
        tensors = [v for v in batch if isinstance(v, torch.Tensor) and v.dim() > 0]
    else:
        tensors = [batch]
    if not tensors:
        raise ConfigError("Cannot tell the batch size: the batch holds no tensor with a batch dimension.")
    return int(tensors[0].shape[0])


def _model_inputs(batch: Any, accepted: frozenset[str] | None) -> dict[str, Any]:
    if not isinstance(batch, Mapping):
        raise TypeError("evaluate_with_generate needs dict batches.")
    return {k: v for k, v in batch.items() if (accepted is None or k in accepted) and k != "labels"}
