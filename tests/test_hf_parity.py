"""Differential tests: the HF Trainer (transformers) and a plain torch loop decide what tamrin must compute.

Each test trains the same tiny model from the same initial weights on the same data, in the same
order (no shuffle on either side: tamrin's `dataloader_shuffle=False`, HF's
`train_sampling_strategy="sequential"`), with the same optimizer and schedule, and compares the final
weights to 1e-6. A few dozen optimizer updates each, CPU only, well under a second per run.

What the two trainers would otherwise do differently, and how these tests line them up:

- Weight decay: HF's `create_optimizer` exempts biases and LayerNorm weights (`get_decay_parameter_names`);
  tamrin, like Hezar, decays every parameter. `TinyRegressor` has neither, so both decay the same
  tensors. (With biases the two differ by design; that is not what these tests are about.)
- Clipping: HF clips at `max_grad_norm=1.0` unless told otherwise; tamrin does not clip unless
  `max_grad_norm` is set. `Setting.max_grad_norm=None` becomes HF's `0.0` (off).
- No scheduler: tamrin's `lr_scheduler=None` is HF's `"constant"`; tamrin's `"constant"` (with warmup)
  is HF's `"constant_with_warmup"`.
- The loss: `TinyRegressor.forward` takes no `**kwargs`, so HF does not pass `num_items_in_batch` and
  divides each batch-mean loss by the batches of its accumulation window (`len(batch_samples)`,
  fewer in an epoch's last, short window): the "batch-mean" normalisation.

These tests were written before issue 14's fixes, with strict xfail markers on the cases tamrin got
wrong (the short last accumulation window, the warmup formula, the epoch-style cadence,
`lr_scheduling_steps` stretching warmup); each marker was removed with its fix.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import Trainer as HFTrainer
from transformers import TrainingArguments, get_scheduler

from tamrin import Trainer, TrainerConfig
from tamrin.trainer.callbacks import Callback

ATOL = 1e-6

# -- one model, one data set, one setting for both trainers ------------------------------------------


class TinyRegressor(nn.Module):
    """tanh MLP without biases (so weight decay means the same thing to both trainers), loss in its outputs."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)  # the same initial weights on every call, whatever the global seed
        self.hidden = nn.Linear(4, 3, bias=False)
        self.out = nn.Linear(3, 1, bias=False)
        with torch.no_grad():
            self.hidden.weight.copy_(torch.randn(3, 4, generator=generator))
            self.out.weight.copy_(torch.randn(1, 3, generator=generator))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        prediction = self.out(torch.tanh(self.hidden(x))).squeeze(-1)
        return {"loss": nn.functional.mse_loss(prediction, labels)}


def make_data(size: int) -> list[dict[str, torch.Tensor]]:
    """`size` samples of {x, labels}; both trainers collate them with torch's default stacking."""
    generator = torch.Generator().manual_seed(1)
    return [
        {"x": torch.randn(4, generator=generator), "labels": torch.randn((), generator=generator)} for _ in range(size)
    ]


@dataclasses.dataclass(frozen=True)
class Setting:
    """One training setting in tamrin's terms; `hf_arguments` translates it for the HF Trainer."""

    samples: int = 24
    batch_size: int = 4
    num_epochs: int = 4
    learning_rate: float = 0.05
    optimizer: str = "adamw"
    lr_scheduler: str | None = None
    warmup_steps: int = 0
    gradient_accumulation_steps: int = 1
    max_grad_norm: float | None = None
    weight_decay: float = 0.0

    def tamrin_fields(self) -> dict[str, object]:
        fields = dataclasses.asdict(self)
        del fields["samples"]
        return fields

    def hf_arguments(self) -> dict[str, object]:
        schedulers = {None: "constant", "linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}
        return {
            "per_device_train_batch_size": self.batch_size,
            "num_train_epochs": self.num_epochs,
            "learning_rate": self.learning_rate,
            "optim": {"adamw": "adamw_torch", "sgd": "sgd"}[self.optimizer],
            "lr_scheduler_type": schedulers[self.lr_scheduler],
            "warmup_steps": self.warmup_steps,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "max_grad_norm": self.max_grad_norm or 0.0,  # HF's default is 1.0; 0 turns clipping off
            "weight_decay": self.weight_decay,
        }


def train_with_hf(setting: Setting, output_dir: Path) -> nn.Module:
    model = TinyRegressor()
    arguments = TrainingArguments(
        output_dir=str(output_dir),
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        train_sampling_strategy="sequential",
        remove_unused_columns=False,
        seed=42,
        **setting.hf_arguments(),
    )
    HFTrainer(model=model, args=arguments, train_dataset=make_data(setting.samples)).train()
    return model


def train_with_tamrin(
    setting: Setting, output_dir: Path, callbacks: list[Callback] | None = None, **extra: object
) -> Trainer:
    config = TrainerConfig(
        output_dir=str(output_dir),
        task="regression",
        dataloader_shuffle=False,
        do_evaluate=False,
        log_steps=None,
        progress="none",
        use_cpu=True,
        seed=42,
        **setting.tamrin_fields(),
        **extra,
    )
    trainer = Trainer(
        model=TinyRegressor(), config=config, train_dataset=make_data(setting.samples), callbacks=callbacks
    )
    trainer.train()
    return trainer


def assert_same_weights(actual: nn.Module, expected: nn.Module) -> None:
    for (name, got), (_, want) in zip(actual.named_parameters(), expected.named_parameters(), strict=True):
        torch.testing.assert_close(got.detach(), want.detach(), atol=ATOL, rtol=0, msg=lambda m, n=name: f"{n}: {m}")


def assert_matches_hf(setting: Setting, tmp_path: Path) -> None:
    expected = train_with_hf(setting, tmp_path / "hf")
    trainer = train_with_tamrin(setting, tmp_path / "tamrin")
    assert_same_weights(trainer.unwrapped_model, expected)


# -- against the HF Trainer --------------------------------------------------------------------------


def test_adamw_without_a_schedule_matches_hf(tmp_path: Path) -> None:
    """The baseline the other tests build on: model, data order, optimizer and loss agree."""
    assert_matches_hf(Setting(), tmp_path)


def test_linear_decay_matches_hf(tmp_path: Path) -> None:
    assert_matches_hf(Setting(lr_scheduler="linear"), tmp_path)


def test_linear_warmup_and_decay_matches_hf(tmp_path: Path) -> None:
    assert_matches_hf(Setting(lr_scheduler="linear", warmup_steps=5), tmp_path)


def test_cosine_decay_matches_hf(tmp_path: Path) -> None:
    assert_matches_hf(Setting(lr_scheduler="cosine"), tmp_path)


def test_cosine_with_warmup_matches_hf(tmp_path: Path) -> None:
    assert_matches_hf(Setting(lr_scheduler="cosine", warmup_steps=5), tmp_path)


def test_constant_with_warmup_matches_hf(tmp_path: Path) -> None:
    assert_matches_hf(Setting(lr_scheduler="constant", warmup_steps=5), tmp_path)


def test_gradient_accumulation_with_full_windows_matches_hf(tmp_path: Path) -> None:
    """4 batches an epoch, 2 per update: every window is full, so no normalisation question arises."""
    assert_matches_hf(
        Setting(samples=32, batch_size=8, optimizer="sgd", learning_rate=0.1, gradient_accumulation_steps=2), tmp_path
    )


def test_gradient_accumulation_with_a_short_last_window_matches_hf(tmp_path: Path) -> None:
    """3 batches an epoch, 2 per update: each epoch's second update has one batch, which HF divides by 1.

    SGD, because Adam's normalisation would hide most of a gradient scaled by 1/2.
    """
    setting = Setting(
        samples=24, batch_size=8, num_epochs=10, optimizer="sgd", learning_rate=0.1, gradient_accumulation_steps=2
    )
    assert_matches_hf(setting, tmp_path)


def test_gradient_clipping_matches_hf(tmp_path: Path) -> None:
    """A norm small enough that most updates are clipped (the first gradients' norm is above 1)."""
    assert_matches_hf(Setting(optimizer="sgd", learning_rate=0.1, max_grad_norm=0.3), tmp_path)


def test_gradient_clipping_with_accumulation_matches_hf(tmp_path: Path) -> None:
    """Clipping applies to the summed gradient of a full window, once per update."""
    setting = Setting(
        samples=32, batch_size=8, optimizer="sgd", learning_rate=0.1, gradient_accumulation_steps=2, max_grad_norm=0.3
    )
    assert_matches_hf(setting, tmp_path)


def test_adamw_weight_decay_matches_hf(tmp_path: Path) -> None:
    """Decoupled decay on every parameter (the model has no bias or LayerNorm for HF to exempt)."""
    assert_matches_hf(Setting(weight_decay=0.1, lr_scheduler="linear"), tmp_path)


def test_sgd_weight_decay_matches_hf(tmp_path: Path) -> None:
    """torch's SGD adds weight_decay * w to the gradient (L2), on both sides."""
    assert_matches_hf(Setting(optimizer="sgd", learning_rate=0.1, weight_decay=0.1), tmp_path)


# -- lr_scheduling_steps with the warmup schedules ------------------------------------------------------


class LearningRates(Callback):
    """Records the learning rate each step's update uses (read before the step, so the order of the
    optimizer step, the scheduler step and `on_optimizer_step` inside an update does not matter)."""

    def __init__(self) -> None:
        self.used: list[float] = []

    def on_step_begin(self, trainer: Trainer) -> None:
        self.used.append(trainer.optimizer.param_groups[0]["lr"])


def hf_learning_rates(name: str, *, peak: float, warmup_steps: int, total_updates: int) -> list[float]:
    """The learning rate of each update under transformers' `get_scheduler` (then the one after the run)."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=peak)
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_updates)
    rates = []
    for _ in range(total_updates + 1):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_lr_scheduling_steps_does_not_stretch_a_linear_warmup_schedule(tmp_path: Path) -> None:
    """Warmup and decay are counted in optimizer updates whatever lr_scheduling_steps is.

    20 updates, warmup 5, scheduler stepped every 5 updates: the LR is at its peak from the 6th update
    and 0 after the run, as under HF's schedule, whether the scheduler then steps every update or
    every 5th (today: still warming up at the 6th update, and 0.83 of the peak at the end).
    """
    setting = Setting(samples=20, lr_scheduler="linear", warmup_steps=5)
    rates = LearningRates()
    trainer = train_with_tamrin(setting, tmp_path, callbacks=[rates], lr_scheduling_steps=5)
    expected = hf_learning_rates("linear", peak=setting.learning_rate, warmup_steps=5, total_updates=20)
    assert len(rates.used) == 20
    assert rates.used[5] == pytest.approx(expected[5])  # the peak
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(expected[20], abs=1e-12)  # 0


# -- Hezar's epoch-style schedulers against a plain torch loop ------------------------------------------


def train_with_torch_loop(
    setting: Setting, scheduler_name: str, kwargs: dict[str, object], every: int | None
) -> nn.Module:
    """Hezar's loop: one update per batch, the scheduler stepped every `every` updates (None: once per epoch)."""
    model = TinyRegressor()
    optimizer = torch.optim.SGD(model.parameters(), lr=setting.learning_rate)
    schedulers = {
        "exponential": torch.optim.lr_scheduler.ExponentialLR,
        "step": torch.optim.lr_scheduler.StepLR,
        "multi_step": torch.optim.lr_scheduler.MultiStepLR,
    }
    scheduler = schedulers[scheduler_name](optimizer, **kwargs)
    loader = torch.utils.data.DataLoader(make_data(setting.samples), batch_size=setting.batch_size, shuffle=False)
    updates = 0
    for _ in range(setting.num_epochs):
        for batch in loader:
            model(**batch)["loss"].backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            updates += 1
            if every is not None and updates % every == 0:
                scheduler.step()
        if every is None:
            scheduler.step()
    return model


EPOCH_SCHEDULERS = [
    ("exponential", {"gamma": 0.5}),
    ("step", {"step_size": 2, "gamma": 0.1}),
    ("multi_step", {"milestones": [1, 3], "gamma": 0.3}),
]


@pytest.mark.parametrize(("name", "kwargs"), EPOCH_SCHEDULERS, ids=[name for name, _ in EPOCH_SCHEDULERS])
def test_epoch_style_scheduler_steps_once_per_epoch_by_default(tmp_path: Path, name: str, kwargs: dict) -> None:
    """Hezar: lr_scheduling_steps=None means "the steps in one full epoch" (6 updates an epoch here)."""
    setting = Setting(optimizer="sgd", learning_rate=0.1, lr_scheduler=name)
    trainer = train_with_tamrin(setting, tmp_path, lr_scheduler_kwargs=kwargs)
    assert_same_weights(trainer.unwrapped_model, train_with_torch_loop(setting, name, kwargs, every=None))


@pytest.mark.parametrize(("name", "kwargs"), EPOCH_SCHEDULERS, ids=[name for name, _ in EPOCH_SCHEDULERS])
def test_epoch_style_scheduler_steps_every_lr_scheduling_steps(tmp_path: Path, name: str, kwargs: dict) -> None:
    """lr_scheduling_steps=4 steps the scheduler every 4 updates (one batch per update, so Hezar's count
    of steps and tamrin's count of updates agree), across epoch boundaries."""
    setting = Setting(optimizer="sgd", learning_rate=0.1, lr_scheduler=name)
    trainer = train_with_tamrin(setting, tmp_path, lr_scheduler_kwargs=kwargs, lr_scheduling_steps=4)
    assert_same_weights(trainer.unwrapped_model, train_with_torch_loop(setting, name, kwargs, every=4))


def test_the_torch_loop_reference_is_not_trivially_equal_across_cadences() -> None:
    """Guards the two tests above: stepping per epoch and every 4 updates give different weights."""
    setting = Setting(optimizer="sgd", learning_rate=0.1)
    per_epoch = train_with_torch_loop(setting, "exponential", {"gamma": 0.5}, every=None)
    every_four = train_with_torch_loop(setting, "exponential", {"gamma": 0.5}, every=4)
    difference = max((a - b).abs().max().item() for a, b in zip(per_epoch.parameters(), every_four.parameters()))
    assert difference > 1e-3
