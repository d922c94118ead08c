"""The registry of metrics handlers: one handler class per task, built by name.

`TrainerConfig.validate` checks `task` against `available_tasks()`; the Trainer builds its handler
with `build_metrics_handler` and checks `metric_for_best_model` with `check_metric_for_best_model`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tamrin.configs import ConfigError, suggest
from tamrin.metrics_handlers.base import OBJECTIVES, OPTIONS, MetricConfig, MetricsHandler
from tamrin.registry import Registry

__all__ = [
    "METRICS_HANDLERS",
    "available_tasks",
    "build_metrics_handler",
    "check_metric_for_best_model",
    "logged_metric_name",
    "register_metrics_handler",
]

METRICS_HANDLERS: Registry[type[MetricsHandler]] = Registry(
    "metrics handler", hint="Register new ones with @register_metrics_handler(task)."
)
"""Task name -> its `MetricsHandler` class."""


def register_metrics_handler(
    task: str, *, replace: bool = False
) -> Callable[[type[MetricsHandler]], type[MetricsHandler]]:
    """Class decorator: make `cls` the metrics handler of `task` (so `TrainerConfig(task=...)` accepts it).

    Args:
        task: the task name.
        replace: replace another handler registered for `task` (otherwise that is an error).

    Raises:
        TypeError: the class is not a MetricsHandler, or its metric tables are inconsistent.
        ValueError: `task` already has another handler and `replace` is False.
    """

    def decorator(cls: type[MetricsHandler]) -> type[MetricsHandler]:
        _check_handler_class(cls)
        METRICS_HANDLERS.add(task, cls, replace=replace)
        cls.task = task
        return cls

    return decorator


def _check_handler_class(cls: type) -> None:
    if not (isinstance(cls, type) and issubclass(cls, MetricsHandler)):
        raise TypeError(f"register_metrics_handler decorates MetricsHandler subclasses, not {cls!r}.")
    valid = cls.valid_metrics
    if not isinstance(valid, tuple) or not all(isinstance(name, str) for name in valid):
        raise TypeError(f"{cls.__name__}.valid_metrics must be a tuple of metric names, got {valid!r}.")
    for name, objective in cls.objectives.items():
        if name not in valid or objective not in OBJECTIVES:
            raise TypeError(
                f"{cls.__name__}.objectives[{name!r}]={objective!r}: the metric must be in "
                f"valid_metrics and the objective one of {OBJECTIVES}."
            )
    for name, options in cls.metric_options.items():
        if name not in valid or any(option not in OPTIONS for option in options):
            raise TypeError(
                f"{cls.__name__}.metric_options[{name!r}]={options!r}: the metric must be in "
                f"valid_metrics and each option one of {OPTIONS}."
            )


def available_tasks() -> list[str]:
    """Names of the tasks that have a metrics handler."""
    return METRICS_HANDLERS.names()


def build_metrics_handler(
    task: str,
    metrics: Sequence[str | Mapping[str, Any] | MetricConfig] | None = None,
    *,
    gather: Callable[[Any], Any] | None = None,
    **context: Any,
) -> MetricsHandler:
    """Build the registered metrics handler of `task` (see `MetricsHandler` for the arguments).

    Raises:
        ConfigError: the task has no handler, or a metric is invalid for it.
    """
    if task not in METRICS_HANDLERS:
        raise ConfigError(
            f"`task={task!r}` has no metrics handler. Available tasks: "
            f"{', '.join(available_tasks())}.{suggest(task, METRICS_HANDLERS)}"
        )
    return METRICS_HANDLERS.get(task)(metrics, gather=gather, **context)


def logged_metric_name(name: str) -> str:
    """The logged name `metric_for_best_model` means: Hezar's plain "cer" and HF's "eval_cer" are "evaluation.cer"."""
    if "." in name:
        return name
    return f"evaluation.{name.removeprefix('eval_')}"


def check_metric_for_best_model(handler: MetricsHandler | None, name: str) -> str:
    """Check, when the Trainer is built, that some handler logs `metric_for_best_model`; return its logged name.

    Args:
        handler: the run's metrics handler (None: only losses are logged).
        name: "evaluation.loss", "train.loss", "evaluation.<metric>", or a plain / HF `eval_` name.

    Returns:
        The logged name (`logged_metric_name`), e.g. "evaluation.cer" for "cer".

    Raises:
        ConfigError: nothing logs `name`; the message lists what does.
    """
    given, name = name, logged_metric_name(name)
    metrics = handler.metric_names if handler is not None else ()
    valid = ["evaluation.loss", *(f"evaluation.{metric}" for metric in metrics), "train.loss"]
    if name in valid:
        return name
    metric = name.removeprefix("evaluation.")
    if handler is not None and metric in handler.valid_metrics:
        hint = f" Add {metric!r} to `metrics` so that the {handler.task} handler computes it."
    else:
        hint = suggest(name, valid)
    shown = ", ".join(repr(v) for v in valid)
    raise ConfigError(f"`metric_for_best_model={given!r}` is not logged by this run. Valid: {shown}.{hint}")
