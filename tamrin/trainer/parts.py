"""TrainerParts: what a Trainer is made of, built once and held as typed attributes.

`Trainer` (trainer.py) holds the loop; this base class builds and declares every part the loop
uses: the accelerator, the model and optimizer, the data loader and its StepPlan, the metrics
handler, the LR scheduler, the callbacks, the Checkpointer, the loss tracker, the state. Each part
has a `create_*` method (an extension point, as in Hezar and HF Trainer) that a subclass overrides
to replace that part alone; each delegates to a plain function of explicit arguments in
building.py. Saving and restoring go through `self.checkpointer` (checkpoint/).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from tamrin.datasets.sampling.streams import is_stream, shard_stream, stream_name
from tamrin.metrics_handlers import MetricsHandler, check_metric_for_best_model, logged_metric_name
from tamrin.trainer import building
from tamrin.trainer.callbacks import Callback, CallbackHandler, TrainerControl, TrainerView
from tamrin.trainer.checkpoint import Checkpointer
from tamrin.trainer.checkpoint.data_lineage import check_data_against_checkpoint
from tamrin.trainer.checkpoint.publishing import push_trainer_to_hub
from tamrin.trainer.config import TrainerConfig
from tamrin.trainer.interruption import RunInterrupted, StopOnSignal
from tamrin.trainer.logs.logger import TrainingLogger, load_logs
from tamrin.trainer.logs.progress import describe_run, resolve_progress_mode
from tamrin.trainer.loss_tracking import LossTracker
from tamrin.trainer.modeling import adopt_data_preprocessor, forward_keys, prepare_model
from tamrin.trainer.optim import scheduler_cadence
from tamrin.trainer.run_lock import RunLock
from tamrin.trainer.runtime import (
    build_accelerator,
    check_accelerator_accumulation,
    check_supported_engine,
    seed_everything,
)
from tamrin.trainer.sharding import check_strategy, shard_model
from tamrin.trainer.state import TrainerState
from tamrin.trainer.steps import (
    Resumed,
    SkippingEpochPosition,
    StepPlan,
    can_start_mid_epoch,
    check_steps_per_epoch,
    check_train_dataset,
)
from tamrin.trainer.stream_position import StreamEpochPosition

__all__ = ["TrainerParts"]


class TrainerParts:
    """Builds and holds a Trainer's parts; see `Trainer` for the loop that uses them."""

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
        building.check_compute_loss_override(type(self))
        self.accelerator = accelerator or build_accelerator(config)
        check_accelerator_accumulation(self.accelerator, config)
        check_supported_engine(self.accelerator)
        check_strategy(config, self.accelerator.num_processes, optimizer_given=optimizer is not None)
        seed_everything(config.seed)
        train_dataset = building.without_unused_columns(train_dataset, model, config)
        eval_dataset = building.without_unused_columns(eval_dataset, model, config)
        self.train_dataset = train_dataset
        self.eval_dataset = eval_dataset
        self.data_collator = data_collator or getattr(train_dataset, "data_collator", None)
        self.preprocessor = preprocessor
        self.output_dir = Path(config.output_dir)
        self.checkpoints_dir = self.output_dir / config.checkpoints_dir
        self.logs_dir = self.output_dir / config.logs_dir
        self.checkpointer = Checkpointer(self.accelerator, self.checkpoints_dir, self.logs_dir)  # .store: replaceable
        self._run_lock = RunLock(self.output_dir)  # held by the main process from train()'s start to its end
        self.state = TrainerState(world_size=self.accelerator.num_processes)
        self.control = TrainerControl()
        self._signals = StopOnSignal(self.control)  # SIGTERM / Ctrl-C: stop at the next step with a checkpoint
        adopt_data_preprocessor(model, preprocessor or getattr(train_dataset, "preprocessor", None))
        self.model = prepare_model(model, init_weights_from=config.init_weights_from, compile=config.compile)
        for dataset in (train_dataset, eval_dataset):  # e.g. rows longer than the model's context: fail now
            getattr(dataset, "check_model", lambda model: None)(model)
        self._forward_keys = forward_keys(model)  # the model's own forward (a compiled one takes **kwargs)
        # callbacks exist before the data: one may supply the training sampler (e.g. a Curriculum)
        self.callbacks = CallbackHandler(building.default_callbacks(config) + list(callbacks or ()))
        self.train_dataloader = self._checked_train_dataloader(train_dataset)
        self.plan = self.create_plan()
        self.optimizer = self._prepared_model_and_optimizer(optimizer)
        self._backward, self._step_optimizer = building.direct_backward_and_optimizer(self.accelerator, self.optimizer)
        self.metrics_handler = metrics_handler or self.create_metrics_handler()
        self.metric_for_best_model = check_metric_for_best_model(self.metrics_handler, config.metric_for_best_model)
        self._builds_scheduler = lr_scheduler is None  # a resume with another world size rebuilds it
        self.lr_scheduler = lr_scheduler if lr_scheduler is not None else self.create_lr_scheduler()
        self.progress_mode = resolve_progress_mode(config.progress, is_main_process=self.is_main_process)
        self.logger: TrainingLogger | None = None
        self.loss_tracker = LossTracker(self.accelerator.device)
        self.grad_norm: torch.Tensor | None = None  # pre-clip norm of the last update (max_grad_norm set)
        self._eval_loaders: dict[int, DataLoader] = {}
        self._last_logs: dict[str, float] = {}
        self._update_due = True
        self._window = 1  # batches in the current accumulation window (the loss divisor)
        self._accelerate_divisor = self.accelerator.gradient_accumulation_steps  # accelerate's backward divides by it
        self._position = building.epoch_position_for(  # the training loader's place in its epoch (resume-aware)
            self.train_dataloader, num_processes=self.accelerator.num_processes
        )
        if isinstance(self._position, SkippingEpochPosition):
            self.checkpointer.notes["resume"] = self._position.note
        # a stream's place in its pass, which checkpoints save (train/stream_state*.pt); None for map-style data
        self.train_stream = self._position if isinstance(self._position, StreamEpochPosition) else None

    def _prepared_model_and_optimizer(self, optimizer: torch.optim.Optimizer | None) -> Any:
        """Hand the model and optimizer to accelerate (DDP), or shard the model first (strategy="fsdp").

        A sharded model is not given to accelerate: its `prepare` would wrap it in DDP. The optimizer,
        built on the sharded parameters, is prepared alone. Sets `self.model`; returns the optimizer.
        """
        accelerator = self.accelerator
        if self.config.strategy == "fsdp" and accelerator.num_processes > 1:
            self.model = shard_model(self.model, self.config, accelerator.device, accelerator.num_processes)
            return accelerator.prepare_optimizer(self.create_optimizer())
        self.model, prepared = accelerator.prepare(self.model, optimizer or self.create_optimizer())
        return prepared

    @property
    def is_main_process(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def unwrapped_model(self) -> torch.nn.Module:
        """The model without its DDP / compile wrappers (cached: accelerate's unwrap costs ~0.1 ms a call)."""
        if getattr(self, "_unwrapped_for", None) is not self.model:
            self._unwrapped = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
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
        """A DataLoader over `dataset` with `create_train_sampler`'s sampler (O(1) mid-epoch resume).

        A stream (an IterableDataset) has no sampler: this process's shard of it is read in its own
        order (HF streams are split with `datasets.distributed.split_dataset_by_node`).
        """
        accelerator = self.accelerator
        if is_stream(dataset):
            shard = shard_stream(dataset, rank=accelerator.process_index, world_size=accelerator.num_processes)
            return building.build_stream_dataloader(shard, self.config, self.data_collator, accelerator.device.type)
        sampler = self.create_train_sampler(dataset)
        return building.build_train_dataloader(
            dataset, sampler, self.config, self.data_collator, self.accelerator.device.type
        )

    def create_eval_dataloader(self, dataset: Any) -> DataLoader:
        """A DataLoader over an evaluation dataset, in order; accelerate shards it across processes."""
        pin = self.accelerator.device.type == "cuda"
        return building.build_eval_dataloader(dataset, self.config, self.data_collator, pin_memory=pin)

    def create_plan(self, resumed: Resumed | None = None) -> StepPlan | None:
        """The step plan (None without training data); epoch lengths from the sampler's supplier when
        they vary (a curriculum with epoch="admitted"), counted from `resumed` after a resume."""
        if self.train_dataloader is None:
            return None
        if is_stream(self.train_dataloader.dataset):  # no length: max_steps over as many passes as it takes
            return StepPlan.for_stream(self.config, stream_name(self.train_dataloader.dataset))
        supplier = self.callbacks.sampler_supplier()
        lengths = getattr(supplier, "planned_epoch_steps", lambda: None)()
        return StepPlan.from_config(self.config, len(self.train_dataloader), epoch_steps=lengths, resumed=resumed)

    def _replan_after_resume(self) -> None:
        """Re-plan from the resumed point (a no-op unless the world size or the epoch lengths changed).

        After a resume with another number of processes the steps left are counted at the new
        global batch, so `plan.total_steps`, the LR schedule and a curriculum stay in the units the
        sampler draws in. A scheduler the Trainer built is rebuilt over the new total and given the
        saved state (its current learning rate included); one passed in is left as it is.
        """
        state, sampler = self.state, cast(Any, getattr(self.train_dataloader, "sampler", None))
        left = None
        if self.train_dataloader is not None and can_start_mid_epoch(sampler):  # batches left from the position
            sampler.set_epoch(state.epoch)
            sampler.set_start_index(min(state.epoch_samples, sampler.end_index))
            left = len(self.train_dataloader)
            sampler.set_epoch(0)  # back to a whole first epoch, which `create_plan` measures
            sampler.set_start_index(0)
        resumed = Resumed(state.global_step, state.optimizer_steps, state.epoch, state.epoch_step, left)
        plan = self.create_plan(resumed)
        if plan is None or plan == self.plan:
            return
        self.plan = plan
        if self._builds_scheduler and self.lr_scheduler is not None:
            saved, rates = self.lr_scheduler.state_dict(), [g["lr"] for g in self._step_optimizer.param_groups]
            self.lr_scheduler = self.create_lr_scheduler()
            self.lr_scheduler.load_state_dict(saved)
            for group, rate in zip(self._step_optimizer.param_groups, rates, strict=True):
                group["lr"] = rate

    def create_optimizer(self) -> torch.optim.Optimizer:
        """The optimizer named in the config, over the model's trainable parameters."""
        return building.build_config_optimizer(self.config, self.model)

    def create_lr_scheduler(self) -> Any:
        """The scheduler named in the config (None when none is named), sized by the step plan."""
        return building.build_config_lr_scheduler(  # on the optimizer the loop steps, which it counts
            self.config, self._step_optimizer, self.plan, maximize=self._maximize_best_metric()
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
        if is_stream(loader.dataset):  # no length to check: an empty pass is refused when it is read
            return loader
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
        name = logged_metric_name(self.config.metric_for_best_model)
        return handler is not None and handler.objective(name) == "maximize"

    def add_callback(self, callback: Callback) -> None:
        """Add a callback after the others (e.g. a tool that watches a run)."""
        self.callbacks.add(callback)

    def remove_callback(self, callback: Callback | type[Callback]) -> Callback:
        """Remove a callback (an instance, or the first one of a class) and return it."""
        return self.callbacks.remove(callback)

    # -- checkpoints --------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, *, include_logs: bool = True, consolidate: bool = True) -> Path:
        """Save the model, configs, optimizer/scheduler/state, RNG and logs into `path`, atomically.

        Call it on every process. What is written is the table in checkpoint/state_files.py. A
        sharded run (strategy="fsdp") writes its shards, and with `consolidate` the full model
        gathered to the main process as model.safetensors (so `Model.load` reads it in one process).

        Raises:
            CheckpointWriteError: an OSError while writing (e.g. a full disk); nothing half-written is
                left behind and the previous checkpoint is intact (the message names it).
        """
        path = self.checkpointer.save(self, path, include_logs=include_logs, consolidate=consolidate)
        self.callbacks.fire("on_save", self._view(), path=str(path))
        return path

    def _view(self) -> TrainerView:
        """This object as callbacks see it (a TrainerParts is always a Trainer, which has the whole view)."""
        return cast(TrainerView, self)

    def save_checkpoint(self) -> Path:
        """Save this step's checkpoint into checkpoints_dir, then rotate to `save_total_limit`."""
        path = self.checkpointer.step_checkpoint_path(self.state.global_step)
        if self.state.best_step == self.state.global_step:
            self.state.best_checkpoint = str(path)
        self.save(path, include_logs=False, consolidate=False)  # a sharded run's weights are in its shards
        self.checkpointer.rotate(self.config.save_total_limit, keep=[self.state.best_checkpoint])
        return path

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore everything `save` wrote: weights, optimizer, scheduler, state, RNG, callbacks."""
        self.checkpointer.load(self, path)
        self.callbacks.fire("on_load", self._view(), path=str(path))

    def _start_run(self) -> None:
        """Before the first step: lock the output_dir, resume or check a fresh run, open the logs, print the plan.

        Nothing is written into output_dir before the lock is held and the fresh-run check passed.
        """
        if self.is_main_process:
            self._run_lock.acquire()
        try:
            resumed = self._resume_if_requested()
            if resumed:
                self._replan_after_resume()
            self.logger = TrainingLogger(
                self.logs_dir,
                columns=building.log_columns(self.config, self.metrics_handler.metric_names),
                resume_step=self.state.global_step if resumed else None,
                enabled=self.is_main_process,
            )
        except BaseException:
            self._run_lock.release(refused=True)
            raise
        if self.progress_mode != "none" and self.plan is not None:
            print(self._describe_run(self.plan), flush=True)
        self._signals.install()

    def _end_run(self, *, failed: bool = False) -> None:
        """After the last step (or an error): stop listening for signals, close the logs, release the lock.

        Raises:
            RunInterrupted: the run stopped on SIGTERM / Ctrl-C (its checkpoint is written), unless it
                `failed` with another error, which then propagates as it is.
        """
        self._signals.uninstall()
        if self.logger is not None:
            self.logger.close()
        self._run_lock.release()
        signum, self._signals.received = self._signals.received, None
        if signum is not None and not failed:
            latest = self.checkpointer.latest_checkpoint()
            raise RunInterrupted(signum, self.state.global_step, str(latest) if latest else None)

    def _describe_run(self, plan: StepPlan) -> str:
        cadence = (
            ""
            if self.lr_scheduler is None
            else scheduler_cadence(self.config.lr_scheduler, self.config.lr_scheduling_steps)
        )
        samples = None if is_stream(self.train_dataset) else len(self.train_dataset)
        return describe_run(plan, num_samples=samples, batch_size=self.config.batch_size,
                            num_processes=self.accelerator.num_processes, start_step=self.state.global_step,
                            lr_schedule=cadence)  # fmt: skip

    def _resume_if_requested(self) -> Path | None:
        """Load the checkpoint `resume_from_checkpoint` names; None for a fresh run (checked first)."""
        path = self.checkpointer.resume_path(self.config.resume_from_checkpoint)
        if path is None:
            self.checkpointer.clear_for_fresh_run(self.config.overwrite_output_dir)
        else:
            check_data_against_checkpoint(self.train_dataset, self.unwrapped_model, path)
            self.load_checkpoint(path)
            self.checkpointer.set_aside_later_checkpoints(self.state.global_step)
        return path

    def load_csv_logs(self) -> Any:
        """The run's CSV logs as a pandas DataFrame, one row per logged step."""
        return load_logs(self.logs_dir)

    def push_to_hub(
        self, repo_id: str, commit_message: str | None = None, private: bool | None = None, **kwargs: Any
    ) -> str:
        """Push the trained model, configs, state and logs to the Hub in one commit (see tamrin.hub).

        `private=None` keeps the namespace's default visibility for a new repo; `kwargs` go to
        `push_trainer_to_hub` (push_model, push_optimizer, push_logs, revision, token, create_pr,
        delete_patterns).
        """
        return push_trainer_to_hub(self, repo_id, commit_message=commit_message, private=private, **kwargs)
