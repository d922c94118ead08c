"""The parts a Trainer builds before its loop runs, as plain functions of explicit arguments.

The Trainer's `create_*` methods (its extension points, as in Hezar and HF Trainer) call these; a
subclass that overrides one method replaces one part and keeps the rest. Nothing here reads a
Trainer: each function gets exactly what it uses.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from accelerate.utils import DistributedType
from torch.utils.data import DataLoader, DistributedSampler

from tamrin.configs import ConfigError
from tamrin.datasets import RangedSampler
from tamrin.datasets.sampling.streams import has_stream_state, is_stream, stream_name
from tamrin.metrics_handlers import MetricsHandler, build_metrics_handler
from tamrin.trainer.callbacks import Callback, EarlyStopping
from tamrin.trainer.config import TrainerConfig
from tamrin.trainer.modeling import metrics_context, named_forward_arguments
from tamrin.trainer.optim import EPOCH_SCHEDULERS, PLATEAU_SCHEDULERS, build_lr_scheduler, build_optimizer
from tamrin.trainer.steps import (
    EpochPosition,
    SkippingEpochPosition,
    StepPlan,
    can_start_mid_epoch,
)
from tamrin.trainer.stream_position import StreamEpochPosition

__all__ = [
    "build_eval_dataloader",
    "build_stream_dataloader",
    "stateful_dataloader_class",
    "warn_about_idle_workers",
    "build_train_dataloader",
    "build_train_sampler",
    "default_callbacks",
    "log_columns",
    "build_config_optimizer",
    "build_config_lr_scheduler",
    "build_task_metrics_handler",
    "direct_backward_and_optimizer",
    "epoch_position_for",
    "without_unused_columns",
    "check_compute_loss_override",
]


def build_train_dataloader(
    dataset: Any, sampler: Any, config: TrainerConfig, collator: Callable | None, device_type: str
) -> DataLoader:
    """A DataLoader over `dataset` drawing from `sampler` (which resumes mid-epoch in O(1)).

    The loader has its own generator, reseeded each epoch, so creating its iterator never draws
    from the global RNG (which dropout uses) and a resumed run draws the same numbers.
    """
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        collate_fn=collator,
        num_workers=config.num_dataloader_workers,
        generator=torch.Generator(),
        pin_memory=device_type == "cuda",
        persistent_workers=False,
    )


def build_stream_dataloader(
    dataset: Any, config: TrainerConfig, collator: Callable | None, device_type: str
) -> DataLoader:
    """A DataLoader over a stream (an IterableDataset): no sampler, the stream gives its own order.

    With workers and a stream that has a state, torchdata's `StatefulDataLoader`: each worker reads
    its own copy of the stream, and that loader's `state_dict()` holds every worker's place (taken
    after every batch: `snapshot_every_n_steps=1`), so a resume is exact.

    Raises:
        ConfigError: workers with a stream that has a state, and torchdata is not installed.
    """
    workers = config.num_dataloader_workers
    settings: dict[str, Any] = {
        "batch_size": config.batch_size,
        "collate_fn": collator,
        "num_workers": workers,
        "generator": torch.Generator(),
        "pin_memory": device_type == "cuda",
    }
    if workers == 0 or not has_stream_state(dataset):
        return DataLoader(dataset, **settings)
    warn_about_idle_workers(dataset, workers)
    return stateful_dataloader_class(dataset)(dataset, snapshot_every_n_steps=1, **settings)


def stateful_dataloader_class(dataset: Any) -> Any:
    """torchdata's `StatefulDataLoader` (the optional `stream` extra), or a ConfigError saying how to install it."""
    try:
        from torchdata.stateful_dataloader import StatefulDataLoader
    except ImportError as error:
        raise ConfigError(
            f"num_dataloader_workers > 0 with the training stream ({stream_name(dataset)}) needs torchdata's "
            "StatefulDataLoader to save where each worker is in the stream: "
            '`pip install "tamrin[stream]"` (or `pip install torchdata`), or set num_dataloader_workers=0.'
        ) from error
    return StatefulDataLoader


def warn_about_idle_workers(dataset: Any, workers: int) -> None:
    """HF gives each worker whole shards: with fewer shards than workers, the extra workers read nothing."""
    shards = getattr(dataset, "num_shards", None)
    if isinstance(shards, int) and shards < workers:
        warnings.warn(
            f"The training stream ({stream_name(dataset)}) has {shards} shard(s) for num_dataloader_workers="
            f"{workers}: HF gives each worker whole shards, so {workers - shards} worker(s) read nothing. "
            f"Set num_dataloader_workers<={shards}, or save the data in more shards "
            "(`to_iterable_dataset(num_shards=...)`).",
            stacklevel=4,
        )


def build_train_sampler(dataset: Any, config: TrainerConfig, *, num_replicas: int, rank: int) -> RangedSampler:
    """The default training sampler: a seeded, resumable RangedSampler sharded over the processes."""
    return RangedSampler(
        dataset,
        config.batch_size,
        shuffle=config.dataloader_shuffle,
        seed=config.seed,
        num_replicas=num_replicas,
        rank=rank,
    )


def build_eval_dataloader(
    dataset: Any, config: TrainerConfig, collator: Callable | None, *, pin_memory: bool = False
) -> DataLoader:
    """A DataLoader over an evaluation dataset, in order (accelerate shards it across processes)."""
    return DataLoader(
        dataset,
        batch_size=config.eval_batch_size or config.batch_size,
        shuffle=False,
        collate_fn=getattr(dataset, "data_collator", None) or collator,
        num_workers=config.num_dataloader_workers,
        generator=torch.Generator(),  # iterating never draws from the global RNG
        pin_memory=pin_memory,  # on CUDA: the batch copies in prepare_input_batch do not wait
    )


def build_config_optimizer(config: TrainerConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer named in the config, over the model's trainable parameters."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    return build_optimizer(
        config.optimizer,
        parameters,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        kwargs=config.optimizer_kwargs,
    )


def build_config_lr_scheduler(
    config: TrainerConfig, optimizer: torch.optim.Optimizer, plan: StepPlan | None, *, maximize: bool
) -> Any:
    """The scheduler named in the config (None when none is named), sized by the step plan."""
    name = config.lr_scheduler
    if name is None:
        return None
    if config.lr_scheduling_steps is not None and name not in EPOCH_SCHEDULERS | PLATEAU_SCHEDULERS:
        warnings.warn(
            f"`lr_scheduling_steps={config.lr_scheduling_steps}` does not apply to lr_scheduler={name!r}: its "
            "lengths (warmup_steps, the decay) are in optimizer updates and it steps after every update. "
            "lr_scheduling_steps paces Hezar's epoch-style schedulers: " + ", ".join(sorted(EPOCH_SCHEDULERS)) + ".",
            stacklevel=4,
        )
    kwargs = dict(config.lr_scheduler_kwargs)
    if name in PLATEAU_SCHEDULERS:
        kwargs.setdefault("mode", "max" if maximize else "min")
    total = plan.total_updates if plan else 1
    warmup = plan.warmup_steps if plan else 0
    scheduler_steps = plan.scheduler_steps(config.lr_scheduling_steps) if plan else None
    return build_lr_scheduler(
        name, optimizer, total_updates=total, warmup_steps=warmup, kwargs=kwargs, scheduler_steps=scheduler_steps
    )


def build_task_metrics_handler(config: TrainerConfig, model: torch.nn.Module, gather: Callable) -> MetricsHandler:
    """The task's metrics handler, given what it needs from the model (never the trainer)."""
    context = metrics_context(model)
    if config.label_names:
        context["labels_key"] = config.label_names[0]
    return build_metrics_handler(config.task, config.metrics, gather=gather, **context)


def default_callbacks(config: TrainerConfig) -> list[Callback]:
    """The callbacks the config asks for (early stopping), before the user's own."""
    if config.early_stopping_patience is None:
        return []
    return [EarlyStopping(config.early_stopping_patience, config.early_stopping_min_delta)]


def log_columns(config: TrainerConfig, metric_names: Iterable[str]) -> list[str]:
    """The CSV columns known up front, so the log's header is rarely widened."""
    names = ["loss", *(name for name in metric_names if name != "loss")]
    skipped = ["train.skipped_updates"] if config.nan_policy == "skip" else []
    return ["train.loss", "learning_rate", *skipped, *(f"evaluation.{name}" for name in names)]


def direct_backward_and_optimizer(accelerator: Any, optimizer: Any) -> tuple[Callable[[torch.Tensor], None], Any]:
    """`loss.backward` and the torch optimizer itself, where accelerate's wrappers add nothing to this run.

    accelerate's `backward` divides the loss by its accumulation steps (1 here: tamrin accumulates
    itself) and `AcceleratedOptimizer.step` / `zero_grad` look up an optional package and a
    signature on every call (~40-60 µs a step on CPU). Without a GradScaler, DeepSpeed, Megatron
    or XLA, and with accelerate's accumulation at 1, the direct calls do exactly the same work.
    Otherwise (fp16, an accelerator configured for its own accumulation, ...) both stay accelerate's.
    """
    wrapped_engines = {DistributedType.DEEPSPEED, DistributedType.MEGATRON_LM, DistributedType.XLA}
    plain = (
        getattr(accelerator, "scaler", None) is None
        and accelerator.gradient_accumulation_steps == 1
        and accelerator.distributed_type not in wrapped_engines
    )
    if not plain:
        return accelerator.backward, optimizer
    return torch.Tensor.backward, getattr(optimizer, "optimizer", optimizer)


def epoch_position_for(loader: DataLoader | None, *, num_processes: int) -> EpochPosition:
    """How the loop follows `loader` through an epoch: in O(1) with a RangedSampler, by the stream's
    own state over an IterableDataset, else by skipping.

    A `create_train_dataloader` override may return any DataLoader (`shuffle=True`, a torch sampler).
    It trains; a resume skips the epoch's done batches (`SkippingEpochPosition`), and this warns once,
    saying whether that resume is exact.

    Raises:
        ConfigError: several processes and a sampler that does not shard the data (each process
            would train on every sample).
    """
    if loader is not None and is_stream(loader.dataset):
        return StreamEpochPosition(loader.dataset, loader.batch_size or 1, num_processes)
    sampler = getattr(loader, "sampler", None)
    if loader is None or can_start_mid_epoch(sampler):
        return EpochPosition()
    name = type(sampler).__name__
    if num_processes > 1 and not isinstance(sampler, DistributedSampler):
        raise ConfigError(
            f"The training DataLoader's sampler ({name}) does not shard the data across the {num_processes} "
            "processes: each would train on every sample. Use the Trainer's RangedSampler "
            "(`create_train_sampler`) or a torch DistributedSampler."
        )
    exact = callable(getattr(sampler, "set_epoch", None)) or loader.generator is not None
    order = (
        "its order depends only on the epoch, so that resume is exact"
        if exact
        else "its order is drawn from the global random state, so a resumed epoch has another order and the run "
        "is not bitwise equal to an uninterrupted one (give the DataLoader a `generator=torch.Generator()` to fix it)"
    )
    note = (
        f"The training DataLoader's sampler ({name}) cannot start mid-epoch: a resumed run skips the epoch's "
        f"trained batches by loading them (O(batches), as the HF Trainer does) instead of starting there in O(1); "
        f"{order}."
    )
    warnings.warn(f"{note} tamrin's RangedSampler (`create_train_sampler`) resumes exactly in O(1).", stacklevel=4)
    return SkippingEpochPosition(note)


def without_unused_columns(dataset: Any, model: torch.nn.Module, config: TrainerConfig) -> Any:
    """A Hugging Face `datasets.Dataset` without the columns the model's `forward` does not name (HF's
    `remove_unused_columns`), so a leftover `text` column does not reach `DataCollatorWithPadding`.

    Other datasets are returned as they are: their own collators may need every key they give.

    Raises:
        ConfigError: no column would be left (the names of forward's arguments are listed).
    """
    columns = getattr(dataset, "column_names", None)
    if not config.remove_unused_columns or not callable(getattr(dataset, "remove_columns", None)):
        return dataset
    if not isinstance(columns, list):
        return dataset
    keep = named_forward_arguments(model) | set(config.label_names or ["labels"]) | {"label", "label_ids"}
    unused = [column for column in columns if column not in keep]
    if not unused:
        return dataset
    if len(unused) == len(columns):
        raise ConfigError(
            f"None of the dataset's columns {columns} is an argument of {type(model).__name__}.forward "
            f"({sorted(named_forward_arguments(model))}) or a label name: set remove_unused_columns=False, or "
            "rename the columns."
        )
    warnings.warn(
        f"Columns {unused} are not arguments of {type(model).__name__}.forward: they are dropped before "
        "collation (remove_unused_columns=True, as in the HF Trainer).",
        stacklevel=4,
    )
    return dataset.remove_columns(unused)


def check_compute_loss_override(trainer_class: type) -> None:
    """Refuse a `compute_loss` override written for the HF Trainer, before it fails mid-step.

    HF's is `compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None)` and
    calls the model itself; tamrin's is `compute_loss(self, outputs, batch)` and gets the outputs.

    Raises:
        TypeError: the override takes HF's arguments; the message shows how to port it.
    """
    method = getattr(trainer_class, "compute_loss", None)
    if not callable(method):
        return
    names = list(inspect.signature(method).parameters)
    if "inputs" in names or "return_outputs" in names:
        raise TypeError(
            f"{trainer_class.__name__}.compute_loss{inspect.signature(method)} has the HF Trainer's signature. "
            "tamrin calls `compute_loss(self, outputs, batch)` with the model's outputs already computed "
            "(by `forward`) and wants the loss tensor back. Port it as:\n"
            "    def compute_loss(self, outputs, batch):\n"
            "        labels = batch['labels']            # HF's `inputs`\n"
            "        logits = outputs['logits']          # HF called model(**inputs) here\n"
            "        return loss_fn(logits, labels)      # no return_outputs: tamrin keeps the outputs"
        )
