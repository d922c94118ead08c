"""Optimizer and LR-scheduler registries: names in a config become torch objects.

Optimizers by name (adam, adamw, sgd); any `torch.optim.Optimizer` passed to the Trainer is used as
is. Schedulers by name: the torch schedulers Hezar lists plus `linear` and `cosine` with warmup.
Both are `tamrin.registry.Registry` instances: register a new one with
`OPTIMIZERS.add("lion", Lion)` or `@LR_SCHEDULERS.register("my_schedule")` before the config is built.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import lr_scheduler as torch_schedulers

from tamrin.configs import ConfigError, check_choice
from tamrin.registry import Registry

__all__ = [
    "OPTIMIZERS",
    "LR_SCHEDULERS",
    "EPOCH_SCHEDULERS",
    "PLATEAU_SCHEDULERS",
    "scheduler_cadence",
    "build_optimizer",
    "build_lr_scheduler",
]

OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer")
OPTIMIZERS.add("adam", torch.optim.Adam)
OPTIMIZERS.add("adamw", torch.optim.AdamW)
OPTIMIZERS.add("sgd", torch.optim.SGD)


def _warmup_then(decay: Callable[[float], float]) -> Callable[..., torch_schedulers.LambdaLR]:
    """Build a scheduler factory: linear warmup for `warmup_steps`, then `decay(progress)`."""

    def factory(
        optimizer: torch.optim.Optimizer, *, warmup_steps: int = 0, total_steps: int, **kwargs: Any
    ) -> torch_schedulers.LambdaLR:
        if kwargs:
            raise ConfigError(
                f"`lr_scheduler_kwargs` has unknown keys {sorted(kwargs)}; the warmup schedules 'linear', 'cosine' "
                "and 'constant' (the HF Trainer's) take none: set warmup_steps. torch's LinearLR and ConstantLR "
                "(Hezar's 'linear' and 'constant') are 'linear_lr' and 'constant_lr'."
            )

        def multiplier(update: int) -> float:
            if update < warmup_steps:  # as the HF Trainer: the first update runs at 0, the (warmup+1)-th at the peak
                return update / warmup_steps
            span = max(1, total_steps - warmup_steps)
            return decay(min(1.0, (update - warmup_steps) / span))

        return torch_schedulers.LambdaLR(optimizer, multiplier)

    return factory


LR_SCHEDULERS: Registry[Callable[..., Any]] = Registry("lr_scheduler")
LR_SCHEDULERS.add("linear", _warmup_then(lambda progress: 1.0 - progress))
LR_SCHEDULERS.add("cosine", _warmup_then(lambda progress: 0.5 * (1.0 + math.cos(math.pi * progress))))
LR_SCHEDULERS.add("constant", _warmup_then(lambda progress: 1.0))
LR_SCHEDULERS.add("reduce_on_plateau", torch_schedulers.ReduceLROnPlateau)
LR_SCHEDULERS.add("step", torch_schedulers.StepLR)
LR_SCHEDULERS.add("multi_step", torch_schedulers.MultiStepLR)
LR_SCHEDULERS.add("exponential", torch_schedulers.ExponentialLR)
LR_SCHEDULERS.add("cosine_annealing", torch_schedulers.CosineAnnealingLR)
LR_SCHEDULERS.add("cyclic", torch_schedulers.CyclicLR)
LR_SCHEDULERS.add("one_cycle", torch_schedulers.OneCycleLR)
LR_SCHEDULERS.add("polynomial", torch_schedulers.PolynomialLR)
LR_SCHEDULERS.add("linear_lr", torch_schedulers.LinearLR)  # Hezar's "linear"
LR_SCHEDULERS.add("constant_lr", torch_schedulers.ConstantLR)  # Hezar's "constant"
"""Scheduler names. linear/cosine/constant take `warmup_steps`; the others take their torch kwargs."""

PLATEAU_SCHEDULERS = frozenset({"reduce_on_plateau"})
"""Schedulers stepped with the evaluation metric after each evaluation, not per update."""

EPOCH_SCHEDULERS = frozenset({"step", "multi_step", "exponential", "cosine_annealing", "linear_lr", "constant_lr"})
"""Hezar's epoch-style schedulers: stepped every `lr_scheduling_steps` steps, by default once per epoch."""

_WARMUP_SCHEDULERS = frozenset({"linear", "cosine", "constant"})


def scheduler_cadence(name: str | None, lr_scheduling_steps: int | None) -> str:
    """The one rule of when the LR scheduler steps, in words (the first line a run prints says it).

    Warmup schedules and the other per-update schedules count their lengths in optimizer updates
    and step after every update, whatever `lr_scheduling_steps` is; Hezar's epoch-style schedulers
    step every `lr_scheduling_steps` training steps (batches), by default once per epoch;
    reduce_on_plateau steps after each evaluation. A scheduler passed to the Trainer steps after
    every update, or every `lr_scheduling_steps` steps when that is set.
    """
    if name in PLATEAU_SCHEDULERS:
        return f"LR scheduler {name!r} steps after each evaluation"
    if name in EPOCH_SCHEDULERS:
        every = "once per epoch" if lr_scheduling_steps is None else f"every {lr_scheduling_steps} steps"
        return f"LR scheduler {name!r} steps {every}"
    if name is None and lr_scheduling_steps is not None:
        return f"LR scheduler steps every {lr_scheduling_steps} steps"
    return "LR scheduler" + (f" {name!r}" if name else "") + " steps after every optimizer update"


def build_optimizer(
    name: str, parameters: Iterable[torch.nn.Parameter], *, learning_rate: float, weight_decay: float
) -> torch.optim.Optimizer:
    """Create the optimizer called `name` over `parameters`."""
    problem = check_choice("optimizer", name, OPTIMIZERS)
    if problem:
        raise ConfigError(problem)
    return OPTIMIZERS[name](parameters, lr=learning_rate, weight_decay=weight_decay)


def build_lr_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    *,
    total_updates: int,
    warmup_steps: int,
    kwargs: dict[str, Any],
    scheduler_steps: int | None = None,
) -> Any:
    """Create the scheduler called `name`; `total_updates` counts optimizer updates of the run.

    `scheduler_steps` is how often an epoch-style scheduler will step in the run (cosine_annealing's
    default `T_max`); see `scheduler_cadence` for when each kind steps.

    Raises:
        ConfigError: unknown name, or kwargs the torch scheduler does not accept.
    """
    problem = check_choice("lr_scheduler", name, LR_SCHEDULERS)
    if problem:
        raise ConfigError(problem)
    factory = LR_SCHEDULERS[name]
    kwargs = dict(kwargs)
    if name in _WARMUP_SCHEDULERS:
        return factory(optimizer, warmup_steps=warmup_steps, total_steps=total_updates, **kwargs)
    if name == "one_cycle":
        kwargs.setdefault("max_lr", [group["lr"] for group in optimizer.param_groups])
        kwargs.setdefault("total_steps", total_updates)
    if name == "cosine_annealing":
        kwargs.setdefault("T_max", scheduler_steps or total_updates)
    if name == "polynomial":
        kwargs.setdefault("total_iters", total_updates)
    try:
        return factory(optimizer, **kwargs)
    except TypeError as err:
        raise ConfigError(
            f"`lr_scheduler_kwargs={kwargs}` do not fit lr_scheduler={name!r} ({factory.__name__}): {err}"
        ) from err
