"""Monitors: callbacks that add values to the training logs (CSV and TensorBoard).

Both write at the Trainer's log steps only, next to `train.loss` in the same row:
`LearningRateMonitor` the learning rate (and optionally momentum) of every parameter group,
`GradientNormLogger` the total gradient norm of the last optimizer update before the log.
"""

from __future__ import annotations

from typing import Any

import torch

from tamrin.trainer.callbacks.base import Callback, TrainerView
from tamrin.trainer.callbacks.registry import register_callback

__all__ = ["GradientNormLogger", "LearningRateMonitor"]


def _is_training_log(logs: dict[str, float]) -> bool:
    """The Trainer's training logs carry the learning rate; evaluation logs and monitors' rows do not."""
    return "learning_rate" in logs


@register_callback("learning_rate_monitor")
class LearningRateMonitor(Callback):
    """Log `learning_rate.<group>` for every optimizer parameter group at each log step.

    A group is named by its "name" entry, else `group_<index>`. The value is the rate the next
    update will use (after the scheduler stepped), as the Trainer's `learning_rate` column.

    Args:
        log_momentum: also log `momentum.<group>` (SGD's momentum, or Adam's beta1).
        log_weight_decay: also log `weight_decay.<group>`.
    """

    def __init__(self, log_momentum: bool = False, log_weight_decay: bool = False) -> None:
        self.log_momentum = log_momentum
        self.log_weight_decay = log_weight_decay

    def on_log(self, trainer: TrainerView, logs: dict[str, float]) -> None:
        if not _is_training_log(logs):
            return
        values: dict[str, float] = {}
        for index, group in enumerate(trainer.optimizer.param_groups):
            name = group.get("name") or f"group_{index}"
            values[f"learning_rate.{name}"] = float(group["lr"])
            if self.log_momentum:
                momentum = group["betas"][0] if "betas" in group else group.get("momentum")
                if momentum is not None:
                    values[f"momentum.{name}"] = float(momentum)
            if self.log_weight_decay and "weight_decay" in group:
                values[f"weight_decay.{name}"] = float(group["weight_decay"])
        trainer.log(values, trainer.state.global_step)


@register_callback("gradient_norm_logger")
class GradientNormLogger(Callback):
    """Log `train.grad_norm`: the total L2 gradient norm of the last optimizer update before a log.

    With `max_grad_norm` set it is the norm that clipping measured (before clipping, as HF logs it),
    so no extra work is done; otherwise it is computed on the device, just before the optimizer
    steps, and only for updates that can be the last one before a log. It is read to the host at
    log steps only (never a per-step sync). A log with no update since the previous one has no
    value. The pending norm is saved in checkpoints, so a resumed run logs the same numbers.

    Args:
        key: the log column.
    """

    def __init__(self, key: str = "train.grad_norm") -> None:
        self.key = key
        self._trainer: TrainerView | None = None
        self._norm: torch.Tensor | float | None = None
        self._handle: Any = None

    def on_train_begin(self, trainer: TrainerView) -> None:
        self._trainer = trainer
        optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # accelerate wraps it
        self._handle = optimizer.register_step_pre_hook(self._before_update)

    def on_train_end(self, trainer: TrainerView) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _before_update(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        trainer = self._trainer
        if trainer is None or not _log_before_next_update(trainer):
            return
        if trainer.config.max_grad_norm is not None and trainer.grad_norm is not None:
            self._norm = trainer.grad_norm.detach()
            return
        grads = [p.grad.detach() for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads:
            self._norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))

    def on_log(self, trainer: TrainerView, logs: dict[str, float]) -> None:
        if not _is_training_log(logs) or self._norm is None:
            return
        value = float(self._norm)  # the host read, at a log step only
        self._norm = None
        trainer.log({self.key: value}, trainer.state.global_step)

    def state_dict(self) -> dict[str, Any]:
        return {"pending_norm": None if self._norm is None else float(self._norm)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._norm = state["pending_norm"]


def _log_before_next_update(trainer: TrainerView) -> bool:
    """Whether a log can come before the optimizer's next update (conservative: True when unsure).

    Called while the current step's update runs: `global_step` and `epoch_step` count this step.
    The next update comes at most `accumulation` steps later; a log is due in between at a multiple
    of log_steps, at the epoch's end, or at max_steps.
    """
    plan, state = trainer.plan, trainer.state
    window, step = plan.accumulation, state.global_step
    if plan.steps_in_epoch(state.epoch) - state.epoch_step < window:
        return True
    if plan.max_steps is not None and plan.max_steps - step < window:
        return True
    return plan.log_steps is not None and (-step) % plan.log_steps < window
