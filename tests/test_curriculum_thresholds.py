"""Curricula in the user's units: threshold schedules, epochs over the admitted set, columns of the data.

References are plain numpy comparisons (`confidence >= t`, `loss <= t`) and a recomputation of the
model's losses, never the sampler's own arithmetic.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import JOB_MODEL, REGRESSION_SETTINGS, RegressionData, make_trainer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tamrin.cli import main as cli_main
from tamrin.configs import ConfigError
from tamrin.datasets.sampling import CurriculumSampler, ThresholdPacing, build_pacing
from tamrin.recipes import build_trainer, load_recipe
from tamrin.trainer.callbacks.curriculum import Curriculum, SelfPacedCurriculum

CONFIDENCE = np.random.default_rng(3).random(24)
POST = {"name": "threshold", "start": 0.9, "change": -0.3, "higher_is_easier": True}  # 0.9, 0.6, 0.3, 0.0


def _drawn(sampler: CurriculumSampler, epoch: int) -> list[int]:
    sampler.set_epoch(epoch)
    sampler.set_start_index(0)
    return list(sampler)


def test_threshold_schedule_is_in_the_users_units() -> None:
    pacing = ThresholdPacing(start=0.9, change=-0.05, higher_is_easier=True)
    assert [pacing.threshold(epoch) for epoch in range(4)] == pytest.approx([0.9, 0.85, 0.8, 0.75])
    assert ThresholdPacing(start=0.9, change=-0.3, stop=0.5, higher_is_easier=True).threshold(3) == 0.5
    assert ThresholdPacing(values=(1.0, 2.0)).threshold(5) == 2.0  # the last value holds
    assert ThresholdPacing(values=lambda epoch: 0.1 * epoch).threshold(3) == pytest.approx(0.3)
    assert build_pacing({"name": "threshold", "start": 0.5, "change": 0.1}) == ThresholdPacing(start=0.5, change=0.1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"start": 0.9, "change": 0.05, "higher_is_easier": True}, r"`change=0.05` narrows the admitted set"),
        ({"values": (1.0, 0.5)}, r"narrows the admitted set at index 1 \(1.0 -> 0.5\)"),
        ({"start": 0.9, "values": (0.9,)}, "exactly one of `start`"),
        ({"start": 0.9, "per": "batch"}, r"`per='batch'` is not valid. Valid: epoch, step"),
        ({"start": 0.9, "higer_is_easier": True}, "does not take"),
    ],
)
def test_a_schedule_that_cannot_work_is_refused_by_name(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_pacing({"name": "threshold", **options})


def test_admitted_set_is_what_passes_the_threshold_in_either_direction() -> None:
    confidence = np.random.default_rng(0).random(200)
    sampler = CurriculumSampler(range(200), 4, scores=confidence, pacing=POST, seed=1)
    for epoch in range(4):
        threshold, step = 0.9 - 0.3 * epoch, epoch * sampler.steps_per_epoch
        passing = np.flatnonzero(confidence >= threshold)
        assert sampler.threshold(step) == pytest.approx(threshold)
        assert sampler.admitted_count(step) == sampler.eligible_count(step) == passing.size
        assert set(_drawn(sampler, epoch)) <= set(passing.tolist())  # epoch="full": only admitted ones, repeated
    losses = np.random.default_rng(1).exponential(size=200)
    self_paced = CurriculumSampler(
        range(200), 4, scores=losses, pacing={"name": "threshold", "start": 0.5, "change": 1}
    )
    for epoch in range(3):
        passing = np.flatnonzero(losses <= 0.5 + epoch)
        assert self_paced.admitted_count(epoch * 50) == passing.size
        assert set(_drawn(self_paced, epoch)) <= set(passing.tolist())


@pytest.mark.parametrize("replicas", [1, 2])
def test_an_admitted_epoch_draws_each_admitted_sample_once(replicas: int) -> None:
    confidence = np.random.default_rng(2).random(101)
    shards = [
        CurriculumSampler(
            range(101), 3, scores=confidence, pacing=POST, epoch="admitted", seed=5, num_replicas=replicas, rank=r
        )
        for r in range(replicas)
    ]
    for epoch in range(4):
        admitted = np.flatnonzero(confidence >= 0.9 - 0.3 * epoch).tolist()
        drawn = sum((_drawn(shard, epoch) for shard in shards), [])
        assert set(drawn) == set(admitted)  # nothing outside, nothing missing
        assert len(drawn) - len(admitted) < replicas  # repeats: only the last round's padding
        assert shards[0].steps_per_epoch == math.ceil(math.ceil(len(admitted) / replicas) / 3)
        first_step = sum(shards[0].steps_in_epoch(earlier) for earlier in range(epoch))
        assert shards[0].threshold(first_step) == pytest.approx(0.9 - 0.3 * epoch)  # a step knows its epoch


def test_per_step_thresholds_move_inside_an_epoch() -> None:
    losses = np.arange(40.0)
    sampler = CurriculumSampler(
        range(40), 4, scores=losses, pacing={"name": "threshold", "start": 3, "change": 4, "per": "step"}
    )
    indices = _drawn(sampler, 0)
    for step in range(10):
        batch = indices[4 * step : 4 * step + 4]
        assert max(losses[batch]) <= 3 + 4 * step, (step, batch)
    assert sampler.eligible_count(0) == 4 and sampler.eligible_count(5) == 24


def test_epochs_over_the_admitted_set_need_per_epoch_thresholds() -> None:
    with pytest.raises(ConfigError, match="`epoch='admitted'` .* needs a threshold pacing that moves per epoch"):
        Curriculum(scores=CONFIDENCE, pacing="linear", epoch="admitted")
    with pytest.raises(ConfigError, match="`epoch='pass'` is not valid. Valid: full, admitted"):
        Curriculum(scores=CONFIDENCE, pacing=POST, epoch="pass")


def _trainer(tmp_path: Path, callback, **overrides):
    return make_trainer(
        tmp_path,
        train=RegressionData(24, seed=0, features=8),
        callbacks=[callback],
        model_options=JOB_MODEL,
        settings=REGRESSION_SETTINGS,
        **{"learning_rate": 0.01, "seed": 3, "lr_scheduler": "linear", "log_steps": 1, **overrides},
    )


def test_the_plan_knows_admitted_epochs_and_the_logs_show_the_users_threshold(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, Curriculum(scores=CONFIDENCE, pacing=POST, epoch="admitted"), num_epochs=4)
    counts = [int((0.9 - 0.3 * epoch <= CONFIDENCE).sum()) for epoch in range(4)]
    eligible = [max(count, 4) for count in counts]  # never fewer than one global batch
    assert counts[0] < 4 and all(count >= 4 for count in counts[1:])
    steps = [math.ceil(count / 4) for count in eligible]
    assert trainer.plan.epoch_steps == tuple(steps) and trainer.plan.total_steps == sum(steps)
    trainer.train()
    assert trainer.state.global_step == sum(steps)
    assert trainer.optimizer.param_groups[0]["lr"] == 0.0  # the linear schedule ends with the run
    logs = pd.read_csv(tmp_path / "logs" / "training_logs.csv").dropna(subset=["train.loss"])
    epoch_of_step = np.repeat(np.arange(4), steps)
    assert logs["curriculum.threshold"].tolist() == pytest.approx([0.9 - 0.3 * e for e in epoch_of_step])
    assert logs["curriculum.admitted"].tolist() == [counts[e] for e in epoch_of_step]
    assert logs["curriculum.eligible"].tolist() == [eligible[e] for e in epoch_of_step]
    assert logs["curriculum.fraction"].tolist() == pytest.approx([eligible[e] / 24 for e in epoch_of_step])
    events = EventAccumulator(str(tmp_path / "logs"))
    events.Reload()
    tags = events.Tags()["scalars"]
    threshold_tag = next(tag for tag in tags if tag.endswith("threshold"))
    assert [e.value for e in events.Scalars(threshold_tag)] == pytest.approx(logs["curriculum.threshold"].tolist())


def test_self_paced_thresholds_admit_by_the_current_loss_and_never_collapse(tmp_path: Path) -> None:
    callback = SelfPacedCurriculum(pacing={"name": "threshold", "start": 0.05, "change": 0.5})
    trainer = _trainer(tmp_path / "a", callback, num_epochs=2)
    callback.on_epoch_begin(trainer)
    data, model = trainer.train_dataset, trainer.unwrapped_model.eval()
    with torch.no_grad():
        losses = ((model(data.x, data.y)["logits"] - data.y) ** 2).double().numpy()
    sampler = trainer.train_dataloader.sampler
    assert sampler.admitted_count(0) == int((losses <= 0.05).sum())
    assert sampler.admitted_count(sampler.steps_per_epoch) == int((losses <= 0.55).sum())
    nothing = SelfPacedCurriculum(pacing={"name": "threshold", "values": [-1.0]})  # no loss is below -1
    trainer = _trainer(tmp_path / "b", nothing, num_epochs=1)
    trainer.train()
    logs = pd.read_csv(tmp_path / "b" / "logs" / "training_logs.csv").dropna(subset=["train.loss"])
    assert set(logs["curriculum.admitted"]) == {0} and set(logs["curriculum.eligible"]) == {4}  # one global batch


def test_self_paced_admitted_epochs_say_the_plan_is_a_bound(tmp_path: Path) -> None:
    callback = SelfPacedCurriculum(pacing={"name": "threshold", "start": 0.1, "change": 0.5}, epoch="admitted")
    with pytest.warns(UserWarning, match=r"full-length bound \(6 steps/epoch\).*does not reach its end"):
        trainer = _trainer(tmp_path, callback, num_epochs=3)
    assert trainer.plan.total_steps == 18
    trainer.train()
    assert trainer.state.epoch == 3 and trainer.state.global_step < 18


def _csv_recipe(tmp_path: Path, scores: str) -> Path:
    rng = np.random.default_rng(0)
    with (tmp_path / "train.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label", "confidence"])
        for index in range(40):
            label = ["pos", "neg"][index % 2]
            writer.writerow([" ".join([label[:2] + "x"] * int(rng.integers(1, 9))), label, f"{rng.random():.3f}"])
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"""task: text_classification
model: {{name: text_classifier, embedding_dim: 8, hidden_size: 8}}
dataset: {{name: text_classification, files: {{train: {tmp_path / "train.csv"}}}, max_length: 12, vocab_size: 20}}
trainer: {{output_dir: {tmp_path / "out"}, device: cpu, num_epochs: 2, batch_size: 4, progress: none}}
callbacks:
  - name: curriculum
    scores: {scores}
    pacing: {{name: threshold, start: 0.8, change: -0.4, higher_is_easier: true}}
    epoch: admitted
"""
    )
    return recipe


def test_a_recipe_reads_the_difficulty_column_of_a_csv_without_passing_it_to_the_model(tmp_path: Path) -> None:
    recipe = _csv_recipe(tmp_path, "confidence")
    assert cli_main(["train", str(recipe), "--dry-run"]) == 0
    trainer = build_trainer(load_recipe(str(recipe)))
    expected = pd.read_csv(tmp_path / "train.csv")["confidence"].to_numpy()
    assert np.array_equal(trainer.train_dataloader.sampler.scores, expected)
    batch = next(iter(trainer.train_dataloader))
    assert (
        {"input_ids", "labels"} <= set(batch) <= {"input_ids", "labels", "attention_mask", "lengths"}
    )  # no confidence
    lengths = build_trainer(load_recipe(str(_csv_recipe(tmp_path, "length")))).train_dataloader.sampler.scores
    assert lengths.tolist() == [len(trainer.train_dataset[i]["input_ids"]) for i in range(40)]


def test_dry_run_names_a_missing_difficulty_column_and_the_available_ones(tmp_path: Path, capsys) -> None:
    assert cli_main(["train", str(_csv_recipe(tmp_path, "confidnce")), "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert "'confidnce' is not in the training data" in error
    assert "['text', 'label', 'confidence']" in error and "Traceback" not in error
