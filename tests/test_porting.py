"""What a Hezar or Hugging Face user ports to tamrin means what they think (issue 14).

Each test takes a habit of those users (an override as Hezar documents it, an Accelerator built as
accelerate documents it, ...) and checks that tamrin trains as the habit means, or says at build
time what it does instead. Reference numbers come from plain torch arithmetic, not from tamrin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import Dataset

from tamrin import Trainer, TrainerConfig
from tamrin.configs import ConfigError


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


# -- accumulation -----------------------------------------------------------------------------------
def test_the_short_last_window_of_an_epoch_is_the_mean_of_its_batches(tmp_path):
    trainer = Trainer(Line(), config(tmp_path, gradient_accumulation_steps=2, num_epochs=1), train_dataset=Pairs(3))
    trainer.train()
    expected = reference_sgd([1.0, 2.0, 3.0], windows=[2, 1], lr=0.01)
    assert trainer.unwrapped_model.w.item() == pytest.approx(expected, rel=1e-6)
    assert trainer.state.optimizer_steps == 2


def test_max_steps_inside_a_window_ends_it_with_the_mean_of_its_batches(tmp_path):
    cfg = config(tmp_path, gradient_accumulation_steps=3, max_steps=4)
    trainer = Trainer(Line(), cfg, train_dataset=Pairs(6))
    trainer.train()
    expected = reference_sgd([1.0, 2.0, 3.0, 4.0], windows=[3, 1], lr=0.01)
    assert trainer.unwrapped_model.w.item() == pytest.approx(expected, rel=1e-6)


def test_an_accelerator_that_accumulates_differently_from_the_config_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"gradient_accumulation_steps=4.*`gradient_accumulation_steps=2`"):
        Trainer(
            Line(),
            config(tmp_path, gradient_accumulation_steps=2),
            train_dataset=Pairs(4),
            accelerator=Accelerator(cpu=True, gradient_accumulation_steps=4),
        )


def test_an_accelerator_with_the_configs_accumulation_trains_like_the_trainers_own(tmp_path):
    own = Trainer(Line(), config(tmp_path / "a", gradient_accumulation_steps=2), train_dataset=Pairs(5))
    own.train()
    given = Trainer(
        Line(),
        config(tmp_path / "b", gradient_accumulation_steps=2),
        train_dataset=Pairs(5),
        accelerator=Accelerator(cpu=True, gradient_accumulation_steps=2),
    )
    given.train()
    assert given.unwrapped_model.w.item() == pytest.approx(own.unwrapped_model.w.item(), rel=1e-6)


def test_fp16_on_cpu_is_refused_with_the_valid_choices(tmp_path):
    with pytest.raises(ConfigError, match=r"`mixed_precision='fp16'` is not available on CPU.*'no', 'bf16'"):
        Trainer(Line(), config(tmp_path, mixed_precision="fp16", use_cpu=True), train_dataset=Pairs(4))


# -- overrides keep the loop's bookkeeping ----------------------------------------------------------
class HezarStyleUpdate(Trainer):
    """optimization_step exactly as Hezar's docs show it."""

    def optimization_step(self) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad()


def test_an_optimization_step_override_as_hezar_documents_keeps_counting_and_scheduling(tmp_path):
    cfg = config(tmp_path, lr_scheduler="linear", num_epochs=2, max_grad_norm=0.5)
    plain = Trainer(Line(), cfg, train_dataset=Pairs(4))
    plain.train()
    overridden = HezarStyleUpdate(Line(), config(tmp_path / "o", lr_scheduler="linear", num_epochs=2, max_grad_norm=0.5),
                                  train_dataset=Pairs(4))  # fmt: skip
    overridden.train()
    assert overridden.state.optimizer_steps == plain.state.optimizer_steps == 8
    assert overridden.optimizer.param_groups[0]["lr"] == plain.optimizer.param_groups[0]["lr"]
    assert overridden.unwrapped_model.w.item() == pytest.approx(plain.unwrapped_model.w.item(), rel=1e-6)
