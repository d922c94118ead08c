"""A one-weight model and data for the porting tests: every update can be checked by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from tamrin import TrainerConfig
from tamrin.trainer.callbacks import Callback


class Line(nn.Module):
    """y = w * x with one weight: every update can be checked by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        predictions = self.w * x
        out = {"logits": predictions}
        if labels is not None:
            out["loss"] = ((predictions - labels) ** 2).mean()
        return out


class Pairs(Dataset):
    """x = 1..n, labels = 2x: the loss pulls w towards 2."""

    def __init__(self, n: int) -> None:
        self.x = torch.arange(1, n + 1, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[index], "labels": 2 * self.x[index]}


def config(tmp_path: Path, **overrides: Any) -> TrainerConfig:
    settings: dict[str, Any] = {
        "output_dir": str(tmp_path / "run"),
        "task": "regression",
        "metrics": [],
        "batch_size": 1,
        "num_epochs": 1,
        "optimizer": "sgd",
        "learning_rate": 0.01,
        "dataloader_shuffle": False,
        "do_evaluate": False,
        "progress": "none",
        "seed": 0,
    }
    return TrainerConfig(**{**settings, **overrides})


def reference_sgd(xs: list[float], windows: list[int], lr: float) -> float:
    """Plain SGD on y = w x, each update the mean gradient of its window's batches (batch size 1)."""
    w, position = 0.0, 0
    for size in windows:
        batch = xs[position : position + size]
        gradient = sum(2 * (w * x - 2 * x) * x for x in batch) / size
        w -= lr * gradient
        position += size
    return w


class StopAtStep(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer) -> None:
        if trainer.state.global_step == self.step:
            trainer.control.should_save = trainer.control.should_stop = True
