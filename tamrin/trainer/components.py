"""What a Trainer builds before its loop runs: data loaders, sampler, optimizer, scheduler, metrics.

Each part has an overridable `create_*` method, as in Hezar and HF Trainer: a subclass replaces
one part and keeps the rest. These are Trainer methods (a mixin, as checkpoint_io.py is), kept out
of trainer.py so that file holds the loop only. They use the Trainer's attributes (`config`,
`accelerator`, `callbacks`, `plan`, ...), set in `Trainer.__init__` before each is called.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from tamrin.datasets.sampling.ranged_sampler import RangedSampler
from tamrin.metrics_handlers import MetricsHandler, build_metrics_handler
from tamrin.trainer.callbacks import Callback, EarlyStopping
from tamrin.trainer.modeling import metrics_context
from tamrin.trainer.optim import PLATEAU_SCHEDULERS, build_lr_scheduler, build_optimizer
from tamrin.trainer.steps import check_steps_per_epoch, check_train_dataset

__all__ = ["ComponentsMixin"]


class ComponentsMixin:
    """The Trainer's `create_*` methods and the checks that run while it is built."""

    def create_train_dataloader(self, dataset: Any) -> DataLoader:
        """A DataLoader over `dataset` whose sampler (`create_train_sampler`) resumes mid-epoch in O(1).

        The loader has its own generator, reseeded each epoch, so creating its iterator never draws
        from the global RNG (which dropout uses) and a resumed run draws the same numbers.
        """
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
        supplier = self.callbacks.sampler_supplier()
        if supplier is not None:
            return supplier.create_train_sampler(self, dataset)
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
        context = metrics_context(self.unwrapped_model)
        return build_metrics_handler(
            self.config.task, self.config.metrics, gather=self.accelerator.gather_for_metrics, **context
        )

    def _checked_train_dataloader(self, dataset: Any) -> DataLoader | None:
        """The training loader, once the data is known to give at least one step per epoch.

        Raises:
            ConfigError: the dataset is empty, or `batch_size` leaves an epoch without a step.
        """
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

    def _default_callbacks(self) -> list[Callback]:
        """The callbacks the config asks for (early stopping), before the user's own."""
        if self.config.early_stopping_patience is None:
            return []
        return [EarlyStopping(self.config.early_stopping_patience, self.config.early_stopping_min_delta)]

    def _maximize_best_metric(self) -> bool:
        """Whether a larger metric_for_best_model is better (False before the metrics handler exists)."""
        handler = getattr(self, "metrics_handler", None)
        return handler is not None and handler.objective(self.config.metric_for_best_model) == "maximize"

    def _log_columns(self) -> list[str]:
        """The CSV columns known up front, so the log's header is rarely widened."""
        names = ["loss", *(name for name in self.metrics_handler.metric_names if name != "loss")]
        skipped = ["train.skipped_updates"] if self.config.nan_policy == "skip" else []
        return ["train.loss", "learning_rate", *skipped, *(f"evaluation.{name}" for name in names)]
