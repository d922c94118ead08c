"""What a Hezar or Hugging Face user ports to tamrin means what they think (issue 14): the training loop.

Each test takes a habit of those users (an override as Hezar documents it, an Accelerator built as
accelerate documents it, ...) and checks that tamrin trains as the habit means, or says at build
time what it does instead. Reference numbers come from plain torch arithmetic, not from tamrin.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from accelerate import Accelerator
from porting_models import Line, Pairs, StopAtStep, config, reference_sgd
from torch.utils.data import DataLoader

from tamrin import Trainer
from tamrin.configs import ConfigError
from tamrin.trainer.callbacks import Callback


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


# -- the LR schedule's cadence ----------------------------------------------------------------------
class Rates(Callback):
    """The learning rate each update uses."""

    def __init__(self) -> None:
        self.used: list[float] = []

    def on_step_begin(self, trainer) -> None:
        self.used.append(trainer.optimizer.param_groups[0]["lr"])


def test_lr_scheduling_steps_on_a_warmup_schedule_warns_that_it_does_not_apply(tmp_path):
    with pytest.warns(UserWarning, match=r"`lr_scheduling_steps=5` does not apply to lr_scheduler='linear'"):
        Trainer(Line(), config(tmp_path, lr_scheduler="linear", lr_scheduling_steps=5), train_dataset=Pairs(4))


def test_the_first_line_of_a_run_says_when_the_scheduler_steps(tmp_path, capsys):
    cfg = config(tmp_path, lr_scheduler="exponential", lr_scheduler_kwargs={"gamma": 0.5}, progress="plain")
    Trainer(Line(), cfg, train_dataset=Pairs(4)).train()
    first_line = capsys.readouterr().out.splitlines()[0]
    assert first_line.endswith("LR scheduler 'exponential' steps once per epoch.")


def test_lr_scheduling_steps_counts_training_steps_as_hezar_does(tmp_path):
    """Accumulation 2, lr_scheduling_steps=3: the scheduler steps after the updates whose window holds
    step 3, 6, 9, ... (Hezar counts batches), not every third update."""
    rates = Rates()
    cfg = config(
        tmp_path,
        gradient_accumulation_steps=2,
        lr_scheduler="exponential",
        lr_scheduler_kwargs={"gamma": 0.5},
        lr_scheduling_steps=3,
        learning_rate=1.0,
    )
    Trainer(Line(), cfg, train_dataset=Pairs(12), callbacks=[rates]).train()
    # steps 1-2 (update 1), 3-4 (update 2: holds step 3), 5-6 (holds 6), 7-8, 9-10 (holds 9), 11-12 (holds 12)
    assert rates.used == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0.125, 0.125]


def test_cosine_annealing_per_epoch_spans_the_run_in_epochs(tmp_path):
    """T_max defaults to the scheduler steps of the run (4 epochs), so the LR reaches 0 at the end."""
    cfg = config(tmp_path, lr_scheduler="cosine_annealing", num_epochs=4, learning_rate=1.0)
    trainer = Trainer(Line(), cfg, train_dataset=Pairs(3))
    trainer.train()
    assert trainer.lr_scheduler.T_max == 4
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


# -- what a training_step override may return --------------------------------------------------------
class ReturnsDict(Trainer):
    """The HF / Lightning habit: return a dict holding the loss."""

    def training_step(self, batch):
        outputs = self.forward(batch)
        self.backward(outputs["loss"])
        return {"loss": outputs["loss"].detach(), "logits": outputs["logits"]}


class ReturnsFloat(Trainer):
    def training_step(self, batch):
        outputs = self.forward(batch)
        self.backward(outputs["loss"])
        return outputs["loss"].item()


class ReturnsNothing(Trainer):
    def training_step(self, batch):
        self.backward(self.forward(batch)["loss"])


@pytest.mark.parametrize("trainer_class", [ReturnsDict, ReturnsFloat])
def test_a_training_step_returning_a_dict_or_a_float_trains_and_logs_its_loss(tmp_path, trainer_class):
    plain = Trainer(Line(), config(tmp_path / "plain", log_steps=2), train_dataset=Pairs(4))
    plain.train()
    trainer = trainer_class(Line(), config(tmp_path / "run", log_steps=2), train_dataset=Pairs(4))
    trainer.train()
    assert trainer.unwrapped_model.w.item() == plain.unwrapped_model.w.item()
    assert trainer.load_csv_logs()["train.loss"].tolist() == pytest.approx(plain.load_csv_logs()["train.loss"].tolist())


def test_a_training_step_returning_nothing_is_a_clear_error(tmp_path):
    trainer = ReturnsNothing(Line(), config(tmp_path), train_dataset=Pairs(4))
    with pytest.raises(TypeError, match=r"training_step returned NoneType; it must return the step's loss"):
        trainer.train()


# -- a plain DataLoader from create_train_dataloader ----------------------------------------------------
class ShuffledLoader(Trainer):
    """docs/training.md invites this override: a plain DataLoader with shuffle=True."""

    def __init__(self, *args: Any, generator: bool = True, **kwargs: Any) -> None:
        self.with_generator = generator
        super().__init__(*args, **kwargs)

    def create_train_dataloader(self, dataset):
        generator = torch.Generator() if self.with_generator else None
        return DataLoader(dataset, batch_size=2, shuffle=True, generator=generator)


def test_a_plain_shuffled_dataloader_trains_and_resumes_exactly_mid_epoch(tmp_path):
    cfg = {"num_epochs": 3, "batch_size": 2, "save_steps": 100}
    with pytest.warns(UserWarning, match=r"sampler \(RandomSampler\) cannot start mid-epoch.*resume is exact"):
        straight = ShuffledLoader(Line(), config(tmp_path / "a", **cfg), train_dataset=Pairs(8))
    straight.train()
    with pytest.warns(UserWarning):
        first = ShuffledLoader(Line(), config(tmp_path / "b", **cfg), train_dataset=Pairs(8), callbacks=[StopAtStep(7)])
    first.train()
    with pytest.warns(UserWarning):
        resumed = ShuffledLoader(
            Line(), config(tmp_path / "b", resume_from_checkpoint=True, **cfg), train_dataset=Pairs(8)
        )
    resumed.train()
    assert resumed.state.global_step == straight.state.global_step == 12
    assert resumed.unwrapped_model.w.item() == straight.unwrapped_model.w.item()
    manifest = (tmp_path / "b" / "run" / "checkpoints" / "00000007" / "manifest.yaml").read_text()
    assert "cannot start mid-epoch" in manifest


def test_a_dataloader_without_a_generator_warns_that_its_resume_is_not_exact(tmp_path):
    with pytest.warns(UserWarning, match=r"drawn from the global random state.*generator=torch.Generator\(\)"):
        ShuffledLoader(Line(), config(tmp_path), train_dataset=Pairs(8), generator=False)
