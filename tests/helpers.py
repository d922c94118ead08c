"""What many test files (and the job scripts in tests/jobs/) share, written once: the tiny regression
model and its data, a Trainer factory, the callbacks that stop or record a run, the launcher of the
job scripts, and an edit distance.

Each test file that needs other numbers says so with arguments (a wider model, noiseless data,
other config defaults) instead of a copy: the factory's defaults are those of tests/test_trainer.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from tamrin import Trainer, TrainerConfig
from tamrin.trainer.callbacks import EVENTS, Callback

__all__ = [
    "DEFAULT_SETTINGS",
    "JOB_MODEL",
    "REGRESSION_SETTINGS",
    "TESTS_DIR",
    "EventRecorder",
    "RegressionData",
    "StopAt",
    "TinyRegressor",
    "job_command",
    "job_env",
    "levenshtein",
    "make_config",
    "make_trainer",
    "parameters",
    "run_job",
    "tiny_regressor",
]

TESTS_DIR = Path(__file__).resolve().parent


# -- the tiny model and its data ------------------------------------------------------------------
class TinyRegressor(nn.Module):
    """An MLP regressor: Linear -> [activation] -> [Dropout] -> Linear; its outputs carry the MSE loss
    when `labels` are given.

    Args:
        inputs: input features.
        hidden: hidden units.
        activation: the activation's class, or None for none.
        dropout: the dropout probability; 0 leaves the layer out (a test's layer names stay the same).
    """

    def __init__(
        self, inputs: int = 4, hidden: int = 8, *, activation: type[nn.Module] | None = nn.Tanh, dropout: float = 0.0
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(inputs, hidden)]
        layers += [activation()] if activation is not None else []
        layers += [nn.Dropout(dropout)] if dropout else []
        self.layers = nn.Sequential(*layers, nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        logits = self.layers(x).squeeze(-1)
        outputs = {"logits": logits}
        if labels is not None:
            outputs["loss"] = nn.functional.mse_loss(logits, labels)
        return outputs


# The model of the job scripts (and of the tests that train it in-process): wider, with dropout.
JOB_MODEL: dict[str, Any] = {"inputs": 8, "hidden": 32, "activation": nn.ReLU, "dropout": 0.3}


def tiny_regressor(**options: Any) -> TinyRegressor:
    """A `TinyRegressor(**options)` initialised from seed 0 (the same weights on every call)."""
    torch.manual_seed(0)
    return TinyRegressor(**options)


class RegressionData(Dataset):
    """Deterministic regression data: labels = sign * sum of the inputs + noise, drawn from `seed`.

    Items are {"x": features, "labels": label}. The same tensors in every process of a job.
    """

    def __init__(self, size: int, seed: int = 0, *, features: int = 4, noise: float = 0.1, sign: float = 1.0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(size, features, generator=generator)
        self.y = sign * self.x.sum(dim=1)
        if noise:
            self.y = self.y + noise * torch.randn(size, generator=generator)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[index], "labels": self.y[index]}


# -- a Trainer in one call ------------------------------------------------------------------------
# A regression run without a progress bar; every other field keeps TrainerConfig's default.
REGRESSION_SETTINGS: dict[str, Any] = {"task": "regression", "metrics": ["mse"], "batch_size": 4, "progress": "none"}

# The factory's default: one epoch of plain SGD, no shuffle, no log row before the end.
DEFAULT_SETTINGS: dict[str, Any] = {
    **REGRESSION_SETTINGS,
    "num_epochs": 1,
    "optimizer": "sgd",
    "learning_rate": 0.05,
    "dataloader_shuffle": False,
    "log_steps": 1000,
    "seed": 0,
}


def make_config(
    output_dir: Path | str, *, settings: Mapping[str, Any] = DEFAULT_SETTINGS, **overrides: Any
) -> TrainerConfig:
    """A TrainerConfig of `settings` (default: `DEFAULT_SETTINGS`) and `overrides`, which win."""
    return TrainerConfig(**{"output_dir": str(output_dir), **settings, **overrides})


def make_trainer(
    output_dir: Path | str,
    model: nn.Module | None = None,
    train: Any = None,
    evaluation: Any = None,
    *,
    callbacks: Sequence[Callback] | None = None,
    trainer_class: type[Trainer] = Trainer,
    model_options: Mapping[str, Any] | None = None,
    train_size: int = 20,
    data_options: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] = DEFAULT_SETTINGS,
    **overrides: Any,
) -> Trainer:
    """A Trainer of `make_config(output_dir, settings=settings, **overrides)`.

    Args:
        output_dir: the run's folder.
        model: the model; None builds `tiny_regressor(**model_options)` (seed 0).
        train: the train dataset; None is `RegressionData(train_size, seed=0, **data_options)`.
        evaluation: the eval dataset (None: no evaluation data).
        callbacks: the callbacks.
        trainer_class: a Trainer subclass to build instead.
        model_options: the `TinyRegressor` arguments of the default model.
        train_size: the size of the default train dataset.
        data_options: the `RegressionData` arguments of the default train dataset.
        settings: the TrainerConfig fields to start from: `DEFAULT_SETTINGS`, or `REGRESSION_SETTINGS`
            for TrainerConfig's own defaults.
        **overrides: TrainerConfig fields over `settings`.
    """
    if model is None:
        model = tiny_regressor(**(model_options or {}))
    if train is None:
        train = RegressionData(train_size, seed=0, **(data_options or {}))
    return trainer_class(
        model=model,
        config=make_config(output_dir, settings=settings, **overrides),
        train_dataset=train,
        eval_dataset=evaluation,
        callbacks=list(callbacks) if callbacks is not None else None,
    )


def parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every named parameter."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


# -- callbacks ------------------------------------------------------------------------------------
class StopAt(Callback):
    """Stops training after a step, as an interrupted run would (a checkpoint due at that step is
    still written); None never stops (so a reference run has the same callbacks as the stopped one)."""

    def __init__(self, step: int | None) -> None:
        self.step = step

    def on_step_end(self, trainer: Trainer) -> None:
        if trainer.state.global_step == self.step:
            trainer.control.should_stop = True


class EventRecorder(Callback):
    """Records every event as (event, global_step, *detail): on_log adds "train" or "evaluation",
    on_save and on_load the checkpoint's folder name."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def record(self, event: str, trainer: Trainer, **details: Any) -> None:
        extra: tuple[str, ...] = ()
        if "logs" in details:
            extra = ("train" if "train.loss" in details["logs"] else "evaluation",)
        elif "path" in details:
            extra = (Path(details["path"]).name,)
        self.events.append((event, trainer.state.global_step, *extra))

    @property
    def names(self) -> list[str]:
        """The events in the order they fired."""
        return [entry[0] for entry in self.events]

    def steps_of(self, event: str) -> list[int]:
        """The global steps at which `event` fired."""
        return [entry[1] for entry in self.events if entry[0] == event]


def _recording(event: str) -> Callable[..., None]:
    def handler(self: EventRecorder, trainer: Trainer, **details: Any) -> None:
        self.record(event, trainer, **details)

    handler.__name__ = event
    return handler


for _event in EVENTS:  # every event, so that a new one is recorded without a change here
    setattr(EventRecorder, _event, _recording(_event))


# -- the job scripts (tests/jobs/) ----------------------------------------------------------------
def job_command(job: str, *args: str) -> list[str]:
    """The `-m jobs.<job> ARGS` part of a job's command line; run it with `env=job_env()`.

    Jobs run as modules of the `jobs` package so that they import `helpers` and `jobs.builder`
    the way the tests do; a launcher (torchrun) puts its own options before this.
    """
    return ["-m", f"jobs.{job}", *args]


def job_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) with tests/ first on PYTHONPATH, so that
    `python -m jobs.<job>` finds the jobs from any working directory."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")]))
    return env


def run_job(job: str, output_dir: Path, *args: str, timeout: float = 300) -> int:
    """Run a job script to its end or its SIGKILL; returns 0 or -SIGKILL (anything else fails the test)."""
    result = subprocess.run(
        [sys.executable, *job_command(job, str(output_dir), *args)],
        env=job_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"job {job} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.returncode


# -- text -----------------------------------------------------------------------------------------
def levenshtein(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Edit distance (insertions, deletions, substitutions) between two strings or word lists."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]
