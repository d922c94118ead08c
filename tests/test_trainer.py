"""The Trainer's loop as a user sees it: parity with a plain torch loop, gradient accumulation and
its counters, the model contract, no per-step host sync, CSV logs, callback events, LR schedulers
and step settings (max_steps, fractions).

Every test is a tiny CPU run (an MLP, a few dozen samples, no shuffle unless it matters).
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from typing import Any

import pandas as pd
import pytest
import torch
from helpers import EventRecorder, RegressionData, StopAt, TinyRegressor, make_config, make_trainer, parameters
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tamrin import Trainer
from tamrin.configs import ConfigError
from tamrin.datasets.sampling.ranged_sampler import RangedSampler
from tamrin.trainer.callbacks import EVENTS, Callback
from tamrin.trainer.checkpoint.files import list_checkpoints
from tamrin.trainer.checkpoint.store import load_torch
from tamrin.trainer.config import resolve_steps

# -- 1. parity with a plain torch loop ------------------------------------------------------------


def test_trainer_equals_a_plain_torch_loop_bitwise(tmp_path):
    """Same init, no shuffle, Adam: the Trainer's weights are bitwise those of a hand-written loop.

    Evaluations between epochs must not disturb training, and the logged train.loss is the mean of
    the step losses since the previous log.
    """
    train, evaluation = (
        RegressionData(22, seed=0),
        RegressionData(6, seed=1),
    )  # 22 samples: a partial last batch per epoch
    torch.manual_seed(0)
    model = TinyRegressor()
    reference = copy.deepcopy(model)
    trainer = make_trainer(
        tmp_path, model, train, evaluation, optimizer="adam", learning_rate=0.01, num_epochs=2, log_steps=3
    )
    trainer.train()

    optimizer = torch.optim.Adam(reference.parameters(), lr=0.01)
    losses = []
    for _ in range(2):
        for batch in DataLoader(train, batch_size=4, shuffle=False):
            loss = reference(**batch)["loss"]
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())

    assert trainer.state.global_step == len(losses) == 12
    for name, value in parameters(trainer.model).items():
        assert torch.equal(value, dict(reference.named_parameters())[name]), f"{name} differs from the plain loop"
    logs = trainer.load_csv_logs().set_index("step")["train.loss"].dropna()
    expected = {step: sum(losses[step - 3 : step]) / 3 for step in (3, 6, 9, 12)}
    assert list(logs.index) == list(expected)
    for step, value in expected.items():
        assert logs[step] == pytest.approx(value, rel=1e-6)  # float32 running sum vs Python floats


# -- 2. gradient accumulation ---------------------------------------------------------------------


def test_accumulating_two_batches_of_4_equals_one_batch_of_8(tmp_path):
    """SGD: batch_size=4 x gradient_accumulation_steps=2 gives the weights of batch_size=8."""

    def run(name: str, batch_size: int, accumulation: int) -> dict[str, torch.Tensor]:
        trainer = make_trainer(
            tmp_path / name,
            train=RegressionData(24),
            batch_size=batch_size,
            gradient_accumulation_steps=accumulation,
            num_epochs=2,
            learning_rate=0.1,
        )
        trainer.train()
        assert trainer.state.optimizer_steps == 6
        return parameters(trainer.model)

    accumulated, large_batch = run("accumulated", 4, 2), run("large", 8, 1)
    for name in large_batch:
        # summation order differs (two means of 4 vs one mean of 8), so equal up to float32 rounding
        torch.testing.assert_close(accumulated[name], large_batch[name], rtol=1e-5, atol=1e-6)


def test_optimizer_steps_count_updates_and_global_step_counts_batches(tmp_path):
    """5 batches per epoch, accumulation 2: updates after batches 2, 4 and 5 (the partial window) of each epoch."""
    recorder = EventRecorder()
    trainer = make_trainer(
        tmp_path,
        train=RegressionData(20),
        batch_size=4,
        gradient_accumulation_steps=2,
        num_epochs=2,
        callbacks=[recorder],
    )
    trainer.train()

    assert trainer.state.global_step == 10
    assert trainer.state.optimizer_steps == 6 == 2 * math.ceil(5 / 2)
    assert recorder.steps_of("on_optimizer_step") == [2, 4, 5, 7, 9, 10]
    assert all(p.grad is None for p in trainer.model.parameters()), "the last, partial window was not applied"


def test_max_steps_inside_an_accumulation_window_applies_it(tmp_path):
    recorder = EventRecorder()
    trainer = make_trainer(
        tmp_path, train=RegressionData(40), gradient_accumulation_steps=3, max_steps=4, callbacks=[recorder]
    )
    trainer.train()
    assert trainer.state.global_step == 4
    assert recorder.steps_of("on_optimizer_step") == [3, 4]
    assert all(p.grad is None for p in trainer.model.parameters())


class DropLastTrainer(Trainer):
    """Drops each epoch's incomplete last batch, as Hezar does (a RangedSampler with drop_last=True)."""

    def create_train_sampler(self, dataset: Any) -> RangedSampler:
        return RangedSampler(dataset, self.config.batch_size, drop_last=True)


class EpochGuard(Callback):
    """Fails instead of hanging when the loop starts more epochs than the run has."""

    def __init__(self, num_epochs: int) -> None:
        self.num_epochs, self.begun = num_epochs, 0

    def on_epoch_begin(self, trainer: Trainer) -> None:
        self.begun += 1
        if self.begun > self.num_epochs:
            raise AssertionError(f"epoch {trainer.state.epoch} began {self.begun} times: the epoch never ends")


def test_a_drop_last_sampler_ends_each_epoch_with_its_last_full_batch(tmp_path):
    """10 samples, batch 4: 2 steps per epoch. (The loop used to wait for position 10 forever.)"""
    recorder = EventRecorder()
    trainer = make_trainer(
        tmp_path, train=RegressionData(10), evaluation=RegressionData(4, seed=1), num_epochs=2, gradient_accumulation_steps=3,
        trainer_class=DropLastTrainer, callbacks=[recorder, EpochGuard(2)],
    )  # fmt: skip
    trainer.train()
    assert (trainer.state.global_step, trainer.state.epoch) == (4, 2)
    assert recorder.steps_of("on_optimizer_step") == [2, 4]  # each epoch's window ends with its last batch
    assert recorder.steps_of("on_evaluate") == recorder.steps_of("on_epoch_end") == [2, 4]


def test_a_batch_size_above_the_dataset_size_trains_one_short_batch_per_epoch(tmp_path):
    """As in HF Trainer: the last, incomplete batch is kept, so 20 samples at batch_size=64 is one step."""
    trainer = make_trainer(tmp_path, train=RegressionData(20), batch_size=64, num_epochs=2)
    trainer.train()
    assert (trainer.plan.steps_per_epoch, trainer.state.global_step, trainer.state.optimizer_steps) == (1, 2, 2)


def test_a_batch_size_that_leaves_an_epoch_without_a_step_fails_when_the_trainer_is_built(tmp_path):
    """A drop_last sampler at batch_size=64 over 20 samples yields no batch (it used to crash in train())."""
    with pytest.raises(ConfigError, match=r"`batch_size=64` gives 0 training steps.*20 samples.*at most 20"):
        make_trainer(tmp_path, train=RegressionData(20), batch_size=64, trainer_class=DropLastTrainer)


def test_an_empty_train_dataset_fails_when_the_trainer_is_built(tmp_path):
    with pytest.raises(ConfigError, match=r"`train_dataset` \(RegressionData\) is empty: 0 samples"):
        make_trainer(tmp_path, train=RegressionData(0))


# -- 3. the model contract ------------------------------------------------------------------------


class ModelWithComputeLoss(nn.Module):
    """Outputs without a loss; the model computes it (L1, to tell it apart from the outputs' MSE)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = TinyRegressor()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.net(x)["logits"]}

    def compute_loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.calls += 1
        return nn.functional.l1_loss(outputs["logits"], batch["labels"])


class LogitsOnly(nn.Module):
    """No loss anywhere: outputs hold logits only and there is no compute_loss."""

    def __init__(self) -> None:
        super().__init__()
        self.net = TinyRegressor()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.net(x)["logits"]}


class HuberTrainer(Trainer):
    """A Trainer subclass with its own loss (it wins over the outputs' loss)."""

    calls = 0

    def compute_loss(self, outputs: Any, batch: Any) -> torch.Tensor:
        type(self).calls += 1
        return nn.functional.huber_loss(outputs["logits"], batch["labels"])


def test_the_models_compute_loss_is_used(tmp_path):
    torch.manual_seed(0)
    model = ModelWithComputeLoss()
    trainer = make_trainer(tmp_path, model, evaluation=RegressionData(8, seed=1))
    logs = trainer.train()
    assert model.calls == 5 + 2  # 5 training batches, 2 evaluation batches

    with torch.no_grad():
        predictions = model(RegressionData(8, seed=1).x)["logits"]
    expected_l1 = nn.functional.l1_loss(predictions, RegressionData(8, seed=1).y).item()
    assert logs["evaluation.loss"] == pytest.approx(expected_l1, rel=1e-5)


def test_a_trainer_subclass_compute_loss_wins_over_the_outputs_loss(tmp_path):
    HuberTrainer.calls = 0
    trainer = make_trainer(tmp_path, evaluation=RegressionData(8, seed=1), trainer_class=HuberTrainer)
    logs = trainer.train()
    assert HuberTrainer.calls == 5 + 2

    with torch.no_grad():
        predictions = trainer.model(RegressionData(8, seed=1).x)["logits"]
    expected = nn.functional.huber_loss(predictions, RegressionData(8, seed=1).y).item()
    assert logs["evaluation.loss"] == pytest.approx(expected, rel=1e-5)
    assert logs["evaluation.loss"] != pytest.approx(logs["evaluation.mse"], rel=1e-3)  # not the outputs' MSE


def test_the_outputs_loss_is_used_when_nothing_else_defines_one(tmp_path):
    trainer = make_trainer(tmp_path, evaluation=RegressionData(8, seed=1))
    logs = trainer.train()
    assert logs["evaluation.loss"] == pytest.approx(logs["evaluation.mse"], rel=1e-5)  # the outputs' MSE


def test_no_loss_anywhere_is_a_clear_error(tmp_path):
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, LogitsOnly())
    with pytest.raises(ValueError, match="No loss for LogitsOnly") as info:
        trainer.train()
    message = str(info.value)
    for fix in ("`compute_loss` method on the model", "`loss` in the model's outputs", "Trainer.compute_loss"):
        assert fix in message


class ExtraKeysData(RegressionData):
    """Items with keys the model's forward does not take."""

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {**super().__getitem__(index), "sample_id": torch.tensor(index), "weight": torch.tensor(1.0)}


def test_forward_receives_only_the_batch_keys_it_accepts(tmp_path):
    received: list[set[str]] = []

    class Spy(TinyRegressor):
        def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
            received.append({"x", "labels"} if labels is not None else {"x"})
            return super().forward(x, labels)

    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, Spy(), ExtraKeysData(8), ExtraKeysData(4))
    logs = trainer.train()
    assert trainer.state.global_step == 2
    assert received == [{"x", "labels"}] * 3
    assert math.isfinite(logs["train.loss"]) and math.isfinite(logs["evaluation.mse"])


class TupleData(RegressionData):
    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.y[index]


class TupleModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = TinyRegressor()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["logits"]

    def compute_loss(self, outputs: torch.Tensor, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return nn.functional.mse_loss(outputs, batch[1])


def test_an_inputs_labels_tuple_batch_trains_and_evaluates(tmp_path):
    torch.manual_seed(0)
    model = TupleModel()
    before = parameters(model)
    trainer = make_trainer(tmp_path, model, TupleData(12), TupleData(6, seed=1), num_epochs=2)
    logs = trainer.train()
    assert trainer.state.global_step == 6
    assert any(not torch.equal(before[n], p) for n, p in parameters(model).items())
    with torch.no_grad():
        expected = nn.functional.mse_loss(model(TupleData(6, seed=1).x), TupleData(6, seed=1).y).item()
    assert logs["evaluation.mse"] == pytest.approx(expected, rel=1e-5)


class TokenData(Dataset):
    """Token sequences whose label is whether token 7 occurs."""

    def __init__(self, size: int, length: int = 8) -> None:
        generator = torch.Generator().manual_seed(0)
        self.input_ids = torch.randint(1, 50, (size, length), generator=generator)
        self.labels = (self.input_ids == 7).any(dim=1).long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ids = self.input_ids[index]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": self.labels[index]}


def test_a_tiny_hugging_face_model_trains_with_the_loss_from_its_outputs(tmp_path):
    transformers = pytest.importorskip("transformers")
    from tamrin.trainer.modeling import load_model_weights

    bert_config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=16, num_labels=2,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(bert_config)
    before = parameters(model)
    config = make_config(
        tmp_path, task="text_classification", metrics=["accuracy"], optimizer="adamw", learning_rate=1e-2
    )
    trainer = Trainer(model=model, config=config, train_dataset=TokenData(16), eval_dataset=TokenData(8))
    logs = trainer.train()

    assert trainer.state.global_step == 4
    assert math.isfinite(logs["train.loss"]) and math.isfinite(logs["evaluation.loss"])
    assert 0.0 <= logs["evaluation.accuracy"] <= 1.0
    assert any(not torch.equal(before[n], p) for n, p in parameters(model).items())
    checkpoint = list_checkpoints(trainer.checkpoints_dir)[-1].path
    assert (checkpoint / "model.safetensors").is_file() and (checkpoint / "config.json").is_file()
    reloaded = transformers.BertForSequenceClassification(bert_config)
    load_model_weights(reloaded, checkpoint)
    for name, value in parameters(reloaded).items():
        assert torch.equal(value, dict(model.named_parameters())[name]), name


# -- 4. no host sync per step ---------------------------------------------------------------------

SYNCING_METHODS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__")


def test_training_reads_tensors_to_the_host_per_event_not_per_step(tmp_path, monkeypatch):
    """200 steps, 2 logs and 2 saves: host reads are bounded by the events, not by the steps.

    SGD, because torch's single-tensor Adam reads its (CPU) step counter with `.item()` each update.
    """
    trainer = make_trainer(
        tmp_path, train=RegressionData(100), batch_size=1, num_epochs=2, log_steps=100, do_evaluate=False
    )
    calls: Counter[str] = Counter()
    for name in SYNCING_METHODS:
        original = getattr(torch.Tensor, name)

        def counting(
            self: torch.Tensor, *args: Any, _original: Any = original, _name: str = name, **kwargs: Any
        ) -> Any:
            calls[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    trainer.train()
    monkeypatch.undo()

    assert trainer.state.global_step == 200
    events = 4  # logs at steps 100 and 200, saves at the two epoch ends
    assert sum(calls.values()) <= 5 * events, f"host reads during 200 steps: {dict(calls)}"


# -- 5. logs --------------------------------------------------------------------------------------


def test_csv_logs_have_train_rows_at_log_steps_and_evaluation_columns_after_evaluations(tmp_path):
    trainer = make_trainer(
        tmp_path, train=RegressionData(16), evaluation=RegressionData(8, seed=1), num_epochs=2, log_steps=2
    )
    final_logs = trainer.train()

    df = trainer.load_csv_logs()
    assert isinstance(df, pd.DataFrame)
    assert list(df["step"]) == [2, 4, 6, 8]
    assert {"step", "epoch", "train.loss", "learning_rate", "evaluation.loss", "evaluation.mse"} <= set(df.columns)
    assert df["train.loss"].notna().all()
    assert (df["learning_rate"] == 0.05).all()
    evaluated = df[df["evaluation.mse"].notna()]
    assert list(evaluated["step"]) == [4, 8]  # the epoch ends
    assert df["epoch"].is_monotonic_increasing
    last = df.iloc[-1]
    assert set(final_logs) == {"train.loss", "learning_rate", "evaluation.loss", "evaluation.mse"}
    for key, value in final_logs.items():
        assert value == pytest.approx(last[key], rel=1e-12), key


def test_the_csv_epoch_column_holds_whole_epochs_as_integers(tmp_path):
    """The Trainer logs `state.epoch` (an int: epochs done); the CSV says 1, not 1.0."""
    trainer = make_trainer(tmp_path, train=RegressionData(16), num_epochs=2, log_steps=2)
    trainer.train()
    lines = (trainer.logs_dir / "training_logs.csv").read_text().splitlines()
    assert lines[0].startswith("step,epoch,")
    assert [line.split(",")[:2] for line in lines[1:]] == [["2", "0"], ["4", "1"], ["6", "1"], ["8", "2"]]


def test_evaluate_on_another_dataset_returns_exact_metrics_and_writes_no_log_row(tmp_path):
    trainer = make_trainer(tmp_path, evaluation=RegressionData(8, seed=1))
    trainer.train()
    csv_file = trainer.logs_dir / "training_logs.csv"
    written = csv_file.read_bytes()

    other = RegressionData(10, seed=2)
    metrics = trainer.evaluate(other)

    assert csv_file.read_bytes() == written
    with torch.no_grad():
        expected = nn.functional.mse_loss(trainer.model(other.x)["logits"].double(), other.y.double()).item()
    assert metrics["mse"] == pytest.approx(expected, rel=1e-6)  # over the set, not a mean of batch MSEs
    assert set(metrics) == {"loss", "mse"}


# -- 7. callbacks ---------------------------------------------------------------------------------


def expected_events() -> list[tuple[Any, ...]]:
    """10 samples, batch 2 (5 steps/epoch), accumulation 2, 2 epochs, log every 4 steps, evaluate and
    save at each epoch end (on_epoch_end fires before that save, so the checkpoint holds its effects)."""
    events: list[tuple[Any, ...]] = [("on_train_begin", 0)]
    for epoch in range(2):
        events.append(("on_epoch_begin", 5 * epoch))
        for step in range(5 * epoch + 1, 5 * epoch + 6):
            events.append(("on_step_begin", step - 1))
            if (step - 5 * epoch) in (2, 4, 5):
                events.append(("on_optimizer_step", step))
            events.append(("on_step_end", step))
            if step % 4 == 0 or step == 10:
                events.append(("on_log", step, "train"))
            if step % 5 == 0:
                events += [("on_log", step, "evaluation"), ("on_evaluate", step), ("on_epoch_end", step)]
                events.append(("on_save", step, f"{step:08d}"))
    events.append(("on_train_end", 10))
    return events


def test_every_callback_event_fires_in_order_the_right_number_of_times(tmp_path):
    recorder = EventRecorder()
    trainer = make_trainer(
        tmp_path,
        train=RegressionData(10),
        evaluation=RegressionData(4, seed=1),
        batch_size=2,
        gradient_accumulation_steps=2,
        num_epochs=2,
        log_steps=4,
        callbacks=[recorder],
    )
    trainer.train()
    assert recorder.events == expected_events()
    fired = {entry[0] for entry in recorder.events}
    assert fired == set(EVENTS) - {"on_load"}


def test_a_callback_stops_training_at_its_step(tmp_path):
    recorder = EventRecorder()
    trainer = make_trainer(tmp_path, num_epochs=3, callbacks=[StopAt(3), recorder])
    trainer.train()
    assert trainer.state.global_step == 3
    assert recorder.steps_of("on_step_end") == [1, 2, 3]
    assert recorder.steps_of("on_train_end") == [3]


def test_early_stopping_stops_after_patience_evaluations_without_improvement(tmp_path):
    recorder = EventRecorder()
    trainer = make_trainer(
        tmp_path,
        train=RegressionData(40),
        evaluation=RegressionData(8, seed=1),
        eval_steps=2,
        early_stopping_patience=2,
        early_stopping_min_delta=1e9,  # nothing counts as an improvement after the first evaluation
        metric_for_best_model="evaluation.mse",
        callbacks=[recorder],
    )
    trainer.train()
    assert recorder.steps_of("on_evaluate") == [2, 4, 6]
    assert trainer.state.global_step == 6  # of 10


class StepCounter(Callback):
    """A stateful callback: counts steps and updates; the count must survive a resume."""

    def __init__(self) -> None:
        self.steps = 0
        self.updates = 0

    def on_step_end(self, trainer: Trainer) -> None:
        self.steps += 1

    def on_optimizer_step(self, trainer: Trainer) -> None:
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps, self.updates = state["steps"], state["updates"]


def test_callback_state_is_saved_in_checkpoints_and_restored_on_resume(tmp_path):
    """A run stopped after its step-6 checkpoint and resumed ends like an uninterrupted run, callback
    state included (20 samples, batch 2, accumulation 4: the checkpoint sits inside a window)."""
    settings = {"train": RegressionData(20), "batch_size": 2, "gradient_accumulation_steps": 4, "save_steps": 6}
    straight = StepCounter()
    reference = make_trainer(tmp_path / "straight", callbacks=[straight, StopAt(None)], **settings)
    reference.train()

    first = StepCounter()
    make_trainer(tmp_path / "resumed", callbacks=[first, StopAt(6)], **settings).train()
    assert (first.steps, first.updates) == (6, 1)
    resumed_counter = StepCounter()
    resumed = make_trainer(
        tmp_path / "resumed",
        callbacks=[EventRecorder(), resumed_counter, StopAt(None)],  # a stateless recorder more: no obstacle
        resume_from_checkpoint=True,
        **settings,
    )
    resumed.train()
    assert (resumed_counter.steps, resumed_counter.updates) == (straight.steps, straight.updates) == (10, 3)
    for name, value in parameters(reference.model).items():
        assert torch.equal(value, dict(resumed.model.named_parameters())[name]), name


class EpochCounter(Callback):
    """A stateful callback that changes its state at epoch end."""

    def __init__(self) -> None:
        self.ended = 0

    def on_epoch_end(self, trainer: Trainer) -> None:
        self.ended += 1

    def state_dict(self) -> dict[str, Any]:
        return {"ended": self.ended}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ended = state["ended"]


def test_on_epoch_end_fires_before_the_epoch_end_checkpoint_so_a_resume_keeps_its_changes(tmp_path):
    """2 epochs of 5 steps, saved at each epoch end; the run stops after epoch 1 and is resumed."""
    settings = {"train": RegressionData(10), "batch_size": 2, "num_epochs": 2}
    straight = EpochCounter()
    make_trainer(tmp_path / "straight", callbacks=[straight, StopAt(None)], **settings).train()

    first = EpochCounter()
    make_trainer(tmp_path / "resumed", callbacks=[first, StopAt(5)], **settings).train()
    saved = load_torch(tmp_path / "resumed" / "checkpoints" / "00000005" / "train" / "callbacks.pt")
    assert saved["EpochCounter"] == {"ended": 1}  # the epoch-end checkpoint holds epoch 1's on_epoch_end

    resumed = EpochCounter()
    make_trainer(
        tmp_path / "resumed", callbacks=[resumed, StopAt(None)], resume_from_checkpoint=True, **settings
    ).train()
    assert resumed.ended == straight.ended == 2


# -- 8. LR schedulers and step settings -----------------------------------------------------------


class LearningRates(Callback):
    """The learning rate each optimizer update uses, and the one after each evaluation."""

    def __init__(self) -> None:
        self.per_update: list[float] = []
        self.after_evaluation: list[float] = []
        self._lr = float("nan")

    def on_step_begin(self, trainer: Trainer) -> None:
        self._lr = trainer.optimizer.param_groups[0]["lr"]

    def on_optimizer_step(self, trainer: Trainer) -> None:
        self.per_update.append(self._lr)

    def on_evaluate(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        self.after_evaluation.append(trainer.optimizer.param_groups[0]["lr"])


@pytest.mark.parametrize("warmup_steps", [3, 0.3])
def test_linear_schedule_with_warmup_gives_the_expected_learning_rates(tmp_path, warmup_steps):
    """10 updates, 3 of warmup: lr * k/3 while warming up (HF's get_linear_schedule_with_warmup: the
    first update at 0), then linear decay to 0 after the last."""
    rates = LearningRates()
    trainer = make_trainer(
        tmp_path,
        train=RegressionData(20),
        batch_size=2,
        learning_rate=0.1,
        lr_scheduler="linear",
        warmup_steps=warmup_steps,
        callbacks=[rates],
    )
    trainer.train()
    expected = [0.1 * (k / 3 if k < 3 else 1 - (k - 3) / 7) for k in range(10)]
    assert rates.per_update == pytest.approx(expected, rel=1e-12)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-15)


def test_reduce_on_plateau_steps_after_evaluations_on_the_best_model_metric(tmp_path):
    rates = LearningRates()
    trainer = make_trainer(
        tmp_path,
        train=RegressionData(24),
        evaluation=RegressionData(8, seed=1),
        learning_rate=1e-7,  # the metric stalls: no relative improvement of 1e-4
        lr_scheduler="reduce_on_plateau",
        lr_scheduler_kwargs={"factor": 0.5, "patience": 0},
        eval_steps=2,
        metric_for_best_model="evaluation.mse",
        callbacks=[rates],
    )
    trainer.train()
    assert rates.after_evaluation == pytest.approx([1e-7, 5e-8, 2.5e-8], rel=1e-12)
    assert rates.per_update == pytest.approx([1e-7] * 4 + [5e-8] * 2, rel=1e-12)


@pytest.mark.parametrize(("max_steps", "expected_step"), [(7, 7), (0.35, 6)])
def test_max_steps_stops_at_the_right_global_step(tmp_path, max_steps, expected_step):
    """3 epochs of 5 steps (15 in all): max_steps=7, or 0.35 of 15 = 5.25, rounded up to 6."""
    trainer = make_trainer(tmp_path, num_epochs=3, max_steps=max_steps, log_steps=5)
    logs = trainer.train()
    assert trainer.state.global_step == expected_step
    assert trainer.state.epoch == 1 and trainer.state.epoch_step == expected_step - 5
    assert trainer.load_csv_logs()["step"].tolist() == [5, expected_step]  # the last step is always logged
    assert list_checkpoints(trainer.checkpoints_dir)[-1].global_step == expected_step
    assert "train.loss" in logs
    assert trainer.config.max_steps == max_steps  # resolved into the plan, the config stays as given


def test_fractional_log_save_and_eval_steps_resolve_against_the_total_steps(tmp_path):
    """10 steps: log_steps=0.25 -> every 3 (fractions round up), save_steps=0.45 -> every 5,
    eval_steps=0.2 -> every 2; each is also due at the last step."""
    trainer = make_trainer(
        tmp_path,
        train=RegressionData(20),
        evaluation=RegressionData(4, seed=1),
        batch_size=2,
        log_steps=0.25,
        save_steps=0.45,
        eval_steps=0.2,
    )
    trainer.train()
    assert (trainer.plan.log_steps, trainer.plan.save_steps, trainer.plan.eval_steps) == (3, 5, 2)
    df = trainer.load_csv_logs()
    assert df.loc[df["train.loss"].notna(), "step"].tolist() == [3, 6, 9, 10]
    assert df.loc[df["evaluation.mse"].notna(), "step"].tolist() == [2, 4, 6, 8, 10]
    assert [c.global_step for c in list_checkpoints(trainer.checkpoints_dir)] == [5, 10]
    assert (trainer.config.log_steps, trainer.config.save_steps, trainer.config.eval_steps) == (0.25, 0.45, 0.2)


@pytest.mark.parametrize(
    ("fraction", "total", "expected"),
    [(0.07, 100, 7), (0.14, 100, 14), (0.56, 100, 56), (0.29, 100, 29), (0.35, 15, 6), (0.001, 10, 1)],
)
def test_fractional_steps_resolve_without_float_error(fraction, total, expected):
    """0.07 * 100 is 7.000000000000001 in floating point: it must give 7 steps, not 8."""
    assert resolve_steps(fraction, total, "save_steps") == expected


def test_a_fractional_save_steps_gives_the_whole_number_of_steps_it_names(tmp_path):
    trainer = make_trainer(tmp_path, train=RegressionData(400), save_steps=0.07)  # 100 steps
    assert trainer.plan.save_steps == 7
