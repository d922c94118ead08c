"""The `MetricsHandler` base (its `MetricConfig` is in `metric_config.py`, the registry in `registry.py`).

A metrics handler turns a stream of evaluation batches into dataset-level metrics, in the
torchmetrics shape: `update(outputs, batch)` once per batch, `compute()` once at the end, `reset()`
before the next evaluation. F1 over the whole evaluation set is not the mean of per-batch F1s, so the
state is sufficient statistics (confusion counts, error sums), never a list of per-batch scores.

In a distributed run each handler passes what it adds to its state through `gather` (the Trainer
hands in `accelerator.gather_for_metrics`, which also drops the samples the distributed sampler
padded in), so every process holds the statistics of the whole evaluation set.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from tamrin.configs import ConfigError, suggest
from tamrin.metrics_handlers.metric_config import AVERAGES, OBJECTIVES, OPTIONS, SCHEMES, MetricConfig

if TYPE_CHECKING:
    from torchmetrics import Metric

# MetricConfig and its choices are re-exported: they belong to the handler's API.
__all__ = [
    "AVERAGES",
    "OBJECTIVES",
    "OPTIONS",
    "SCHEMES",
    "MetricConfig",
    "MetricsHandler",
    "accumulation_dtype",
]


def _identity(data: Any) -> Any:
    return data


def accumulation_dtype(device: torch.device) -> torch.dtype:
    """float64 for running sums, except on MPS, which has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


class MetricsHandler:
    """Base of the metrics handlers: parses and checks the metrics, tracks the loss, computes once.

    A subclass names its metrics in `valid_metrics` (with `objectives` and the `metric_options`
    each takes), implements `update(outputs, batch)`, and either builds torchmetrics metrics in
    `build_metric` (fed with `update_metric`; `compute_metrics` and `reset_metrics` then need no
    override) or keeps its own state and overrides `compute_metrics` and `reset_metrics`.

    Args:
        metrics: metric names, mappings such as `{"name": "f1", "average": "macro"}`, or `MetricConfig`s.
        gather: collects a batch's tensors (or a list of objects) from every process and drops the
            padded duplicates: `accelerator.gather_for_metrics`. None: no gathering (one process).
        **context: what the handler needs from the model and data (e.g. `num_labels`, `id2label`,
            `post_process`); keys a handler does not use are ignored.

    Raises:
        ConfigError: a metric is unknown to the task, listed twice, or given an option it does not take.
    """

    task: ClassVar[str] = ""
    valid_metrics: ClassVar[tuple[str, ...]] = ()
    objectives: ClassVar[Mapping[str, str]] = {}  # metric -> "minimize" | "maximize"; unlisted: maximize
    metric_options: ClassVar[Mapping[str, tuple[str, ...]]] = {}  # metric -> MetricConfig options it takes
    logits_key: ClassVar[str] = "logits"
    labels_key: str = "labels"  # the batch key of the targets; the Trainer sets TrainerConfig.label_names[0]

    def __init__(
        self,
        metrics: Sequence[str | Mapping[str, Any] | MetricConfig] | None = None,
        *,
        gather: Callable[[Any], Any] | None = None,
        **context: Any,
    ) -> None:
        self.metric_configs: dict[str, MetricConfig] = self._parse_metrics(metrics or [])
        self.gather: Callable[[Any], Any] = gather if gather is not None else _identity
        if isinstance(context.get("labels_key"), str):
            self.labels_key = context["labels_key"]
        self.context = context
        self.metrics: dict[str, Metric] = {}
        self._loss_sum: torch.Tensor | None = None
        self._loss_count = 0

    # -- configuration -----------------------------------------------------------------------------
    def _parse_metrics(self, metrics: Sequence[str | Mapping[str, Any] | MetricConfig]) -> dict[str, MetricConfig]:
        if isinstance(metrics, (str, Mapping, MetricConfig)):
            metrics = [metrics]
        where = f"task {self.task!r}" if self.task else type(self).__name__
        configs: dict[str, MetricConfig] = {}
        problems = []
        for index, item in enumerate(metrics):
            config = _as_metric_config(item, index)
            name = config.name
            if name not in self.valid_metrics:
                problems.append(
                    f"`metrics[{index}]={name!r}` is not a metric of {where}. Valid metrics: "
                    f"{', '.join(self.valid_metrics)}.{suggest(name, self.valid_metrics)}"
                )
                continue
            if name in configs:
                problems.append(f"`metrics[{index}]={name!r}` is listed twice; list each metric once.")
                continue
            allowed = self.metric_options.get(name, ())
            extra = [key for key in config.options() if key not in allowed]
            if extra:
                takes = ", ".join(f"`{key}`" for key in allowed) or "no options"
                given = ", ".join(f"`{key}`" for key in extra)
                problems.append(
                    f"`metrics[{index}]` ({name}): option {given} does not apply to `{name}` of "
                    f"{where}; it takes {takes}."
                )
            configs[name] = config
        if problems:
            raise ConfigError(problems, config_name=f"metrics of {where}" if len(problems) > 1 else None)
        return configs

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The metrics `compute()` returns, in the configured order; it adds "loss" once losses were given."""
        return tuple(self.metric_configs)

    def objective(self, metric_name: str) -> str:
        """Whether a metric improves by going down or up: "minimize" or "maximize".

        Args:
            metric_name: "f1", or a logged name such as "evaluation.f1"; "loss" minimises.

        Raises:
            ConfigError: the task has no such metric.
        """
        prefix, _, name = metric_name.rpartition(".")
        if name == "loss" and prefix in ("", "evaluation", "train"):
            return "minimize"
        if name in self.valid_metrics and prefix in ("", "evaluation"):
            return self.objectives.get(name, "maximize")
        valid = ["loss", *self.valid_metrics]
        raise ConfigError(
            f"`{metric_name}` is not a metric of task {self.task!r}. Valid: "
            f"{', '.join(valid)} (optionally prefixed 'evaluation.').{suggest(name, valid)}"
        )

    # -- reading outputs and batches -------------------------------------------------------------------
    def logits(self, outputs: Any) -> torch.Tensor:
        """The model's scores: `outputs` itself when a tensor, else `outputs[self.logits_key]`."""
        if isinstance(outputs, torch.Tensor):
            return outputs
        if isinstance(outputs, Mapping) and self.logits_key in outputs:
            return outputs[self.logits_key]
        if hasattr(outputs, self.logits_key):
            return getattr(outputs, self.logits_key)
        keys = list(outputs) if isinstance(outputs, Mapping) else type(outputs).__name__
        raise ValueError(
            f"{type(self).__name__} reads `{self.logits_key}` from the model outputs, which "
            f"have {keys}. Return a tensor or a dict with `{self.logits_key}` from the model."
        )

    def labels(self, batch: Any) -> torch.Tensor:
        """The targets: `batch[self.labels_key]` for a dict batch, the last element of a tuple batch."""
        if isinstance(batch, Mapping):
            if self.labels_key in batch:
                return batch[self.labels_key]
            raise ValueError(
                f"{type(self).__name__} reads `{self.labels_key}` from the batch, which has "
                f"keys {list(batch)}. Add the targets to the batch under `{self.labels_key}`."
            )
        if isinstance(batch, (tuple, list)) and len(batch) >= 2:
            return batch[-1]
        raise ValueError(
            f"{type(self).__name__} needs the targets: a dict batch with `{self.labels_key}` "
            f"or an (inputs, labels) tuple, not {type(batch).__name__}."
        )

    # -- the update / compute / reset cycle ------------------------------------------------------------
    def update(self, outputs: Any, batch: Any) -> None:
        """Add one evaluation batch to the state (gathered across processes)."""
        raise NotImplementedError(f"{type(self).__name__} must implement `update(outputs, batch)`.")

    def build_metric(self, config: MetricConfig) -> Metric:
        """Create the torchmetrics metric for `config` (called lazily by `update_metric`)."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement `build_metric(config)` or override "
            "`compute_metrics` and `reset_metrics`."
        )

    def update_metric(self, name: str, *args: Any) -> None:
        """Update the torchmetrics metric `name` on the device of the first tensor in `args`."""
        metric = self.metrics.get(name)
        if metric is None:
            metric = self.metrics[name] = self.build_metric(self.metric_configs[name])
            # The inputs are already gathered: a torchmetrics sync on top would count them twice.
            metric.sync_on_compute = False
            metric.dist_sync_on_step = False
        device = next((arg.device for arg in args if isinstance(arg, torch.Tensor)), None)
        if device is not None and metric.device != device:
            metric.to(device)
        metric.update(*args)

    def update_loss(self, loss: torch.Tensor | float, num_samples: int) -> None:
        """Track the evaluation loss; `compute()` reports its mean over all samples as "loss".

        The sum stays on the loss's device (no host sync here). The batch mean is spread over its
        samples before `gather`, so the padded duplicates of a distributed run can be dropped.

        Args:
            loss: the batch's mean loss (a scalar), or one loss per sample (exact under padding).
            num_samples: the number of samples in the batch on this process.
        """
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"`num_samples={num_samples!r}` must be an int >= 1.")
        loss = loss.detach() if isinstance(loss, torch.Tensor) else torch.tensor(float(loss))
        if loss.numel() not in (1, num_samples):
            raise ValueError(
                f"`loss` must be a scalar or hold one value per sample ({num_samples}), got shape {tuple(loss.shape)}."
            )
        values = loss.reshape(-1).to(accumulation_dtype(loss.device)).expand(num_samples).contiguous()
        values = self.gather(values)
        total = values.sum()
        self._loss_sum = total if self._loss_sum is None else self._loss_sum + total.to(self._loss_sum.device)
        self._loss_count += values.shape[0]

    def compute(self) -> dict[str, float]:
        """The metrics over everything since the last `reset()`, plus "loss" when losses were given.

        A metric with no data yet is NaN. This is where values come to the host.
        """
        results = self.compute_metrics()
        if self._loss_sum is not None and self._loss_count:  # the sum is None until a loss is counted
            results["loss"] = (self._loss_sum / self._loss_count).item()
        return results

    def compute_metrics(self) -> dict[str, float]:
        """Compute each torchmetrics metric (override when the handler keeps its own state)."""
        results = {}
        for name in self.metric_names:
            metric = self.metrics.get(name)
            results[name] = math.nan if metric is None or metric.update_count == 0 else float(metric.compute())
        return results

    def reset(self) -> None:
        """Forget all batches and losses, keeping the configuration."""
        self.reset_metrics()
        self._loss_sum = None
        self._loss_count = 0

    def reset_metrics(self) -> None:
        """Reset each torchmetrics metric (override when the handler keeps its own state)."""
        for metric in self.metrics.values():
            metric.reset()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task={self.task!r}, metrics={list(self.metric_names)})"


def _as_metric_config(item: Any, index: int) -> MetricConfig:
    if isinstance(item, MetricConfig):
        return item
    if isinstance(item, str):
        return MetricConfig(name=item)
    if isinstance(item, Mapping):
        if not isinstance(item.get("name"), str):
            raise ConfigError(f"`metrics[{index}]={dict(item)!r}` needs a `name` key, e.g. {{'name': 'f1'}}.")
        try:
            return MetricConfig.from_dict(item)
        except ConfigError as err:
            where = f"`metrics[{index}]` ({item['name']})"
            raise ConfigError([f"{where}: {problem}" for problem in err.problems]) from None
    raise ConfigError(
        f"`metrics[{index}]={item!r}` must be a metric name, a mapping with a `name` key, or a MetricConfig."
    )
