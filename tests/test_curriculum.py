"""Curriculum learning: pacing, the eligible set, determinism, O(1) resume, sharding, self-paced re-scoring."""

from __future__ import annotations

import math
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import JOB_MODEL, REGRESSION_SETTINGS, RegressionData, make_trainer, run_job
from test_resume import assert_same_run

from tamrin import Trainer
from tamrin.configs import ConfigError
from tamrin.datasets.sampling.curriculum import CurriculumSampler, LinearPacing, RootPacing, StepPacing, build_pacing
from tamrin.trainer.callbacks.curriculum import Curriculum, SelfPacedCurriculum
from tamrin.trainer.checkpoint.store import load_torch


def _sampler(n: int = 60, batch_size: int = 4, total_steps: int = 45, **kwargs) -> CurriculumSampler:
    kwargs.setdefault("scores", np.arange(n, dtype=float))  # sample i has difficulty i: index = rank
    return CurriculumSampler(range(n), batch_size, total_steps=total_steps, seed=7, **kwargs)


def _batches(sampler: CurriculumSampler, epoch: int = 0) -> list[list[int]]:
    sampler.set_epoch(epoch)
    indices = list(sampler)
    return [indices[i : i + sampler.batch_size] for i in range(0, len(indices), sampler.batch_size)]


def test_pacing_functions_follow_their_formulas() -> None:
    linear, root, step = LinearPacing(0.2, 0.5), RootPacing(0.2, 0.5), StepPacing(0.25, 1.0, num_stages=4)
    assert [linear(t) for t in (0.0, 0.25, 0.5, 0.9)] == pytest.approx([0.2, 0.6, 1.0, 1.0])
    assert root(0.25) == pytest.approx(math.sqrt(0.04 + 0.96 * 0.5))
    assert [step(t) for t in (0.0, 0.32, 0.34, 0.66, 0.67, 1.0)] == pytest.approx([0.25, 0.25, 0.5, 0.5, 0.75, 1.0])
    assert build_pacing({"name": "root", "start": 0.5}) == RootPacing(start=0.5)
    with pytest.raises(ConfigError, match="Unknown pacing 'lineer'.*linear"):
        build_pacing("lineer")
    with pytest.raises(ConfigError, match=r"`start=0` must be a fraction in \(0, 1\]"):
        LinearPacing(start=0)


def test_eligible_set_grows_as_the_pacing_says() -> None:
    sampler = _sampler(pacing=LinearPacing(0.2, 0.6))
    counts = []
    for epoch in range(3):
        for batch_index, batch in enumerate(_batches(sampler, epoch)):
            step = epoch * sampler.steps_per_epoch + batch_index
            expected = math.ceil(round(LinearPacing(0.2, 0.6)(step / 45) * 60, 9))
            assert sampler.eligible_count(step) == max(expected, 4)
            assert max(batch) < sampler.eligible_count(step), (step, batch)  # only the easiest k
            assert sampler.threshold(step) == sampler.eligible_count(step) - 1
            counts.append(sampler.eligible_count(step))
    assert counts[0] == 12 and counts[-1] == 60 and counts == sorted(counts)
    assert sorted(sum(_batches(sampler, 2), [])) == list(range(60))  # all eligible: a plain permutation


def test_a_stage_draws_each_eligible_sample_once_before_repeating() -> None:
    sampler = _sampler(pacing=StepPacing(0.2, 1.0, num_stages=5), total_steps=75)  # 15 steps per stage
    first_stage = sum(_batches(sampler, 0), [])[:12]  # 12 eligible samples, 3 steps
    assert sorted(first_stage) == list(range(12))
    unshuffled = _sampler(pacing=StepPacing(0.2, 1.0, num_stages=5), total_steps=75, shuffle=False)
    assert sum(_batches(unshuffled, 0), [])[:16] == [*range(12), *range(4)]  # easiest first, cycling


def test_order_is_deterministic_for_a_seed_and_differs_across_seeds_and_epochs() -> None:
    assert _batches(_sampler()) == _batches(_sampler())
    assert _batches(_sampler(), 1) != _batches(_sampler(), 0)
    other = CurriculumSampler(range(60), 4, scores=np.arange(60.0), total_steps=45, seed=8)
    assert _batches(other) != _batches(_sampler())


def test_resuming_at_any_position_continues_the_same_sequence() -> None:
    sampler = _sampler()
    for epoch in range(2):
        full = sum(_batches(sampler, epoch), [])
        for position in (0, 4, 20, 36, 56):
            sampler.set_epoch(epoch)
            sampler.set_start_index(position)
            assert list(sampler) == full[position:], (epoch, position)


def test_resume_costs_the_same_at_the_start_and_near_the_end_of_a_large_epoch() -> None:
    sampler = CurriculumSampler(range(200_000), 32, scores=np.random.default_rng(0).random(200_000), total_steps=20_000)
    sampler.set_epoch(2)
    sampler.set_start_index(199_968)
    calls = []
    pacing = sampler.pacing
    sampler.pacing = lambda t: calls.append(t) or pacing(t)
    assert len(list(sampler)) == 32
    assert len(calls) < 100  # a binary search for the stage start, not a walk over the epoch


def test_shards_interleave_into_the_single_process_order() -> None:
    single = sum(_batches(_sampler(batch_size=6)), [])  # global batch 6 = 3 processes x 2
    shards = [sum(_batches(_sampler(batch_size=2, num_replicas=3, rank=r)), []) for r in range(3)]
    assert [shards[i % 3][i // 3] for i in range(60)] == single


def test_scores_from_a_column_or_a_function() -> None:
    data = [{"length": torch.tensor(float(60 - i)), "text": "x" * (60 - i)} for i in range(60)]
    by_column = CurriculumSampler(data, 4, scores="length", total_steps=45)
    by_function = CurriculumSampler(data, 4, scores=lambda sample: len(sample["text"]), total_steps=45)
    assert by_column.order.tolist() == by_function.order.tolist() == list(range(59, -1, -1))
    with pytest.raises(ValueError, match="column 'size' is not in sample 0"):
        CurriculumSampler(data, 4, scores="size")
    with pytest.raises(ValueError, match="score of sample 3 is nan"):
        CurriculumSampler(range(5), 1, scores=[0, 1, 2, float("nan"), 4])
    with pytest.raises(ValueError, match=r"expected one number per sample, \(5,\)"):
        CurriculumSampler(range(5), 1, scores=[0, 1])


def test_iterating_needs_the_run_length_and_a_growing_pacing() -> None:
    with pytest.raises(ValueError, match="needs the run's length"):
        list(CurriculumSampler(range(8), 2))
    shrinking = CurriculumSampler(range(40), 2, pacing=lambda t: 1.0 - t, total_steps=20)
    with pytest.raises(ValueError, match="pacing decreased at step 1"):
        list(shrinking)


def test_state_dict_round_trip() -> None:
    sampler = _sampler()
    sampler.set_scores(np.arange(60.0)[::-1].copy())
    sampler.set_epoch(1)
    sampler.set_start_index(8)
    restored = _sampler(total_steps=10)
    restored.load_state_dict(sampler.state_dict())
    assert restored.total_steps == 45 and list(restored) == list(sampler)


def _trainer(tmp_path: Path, callback, **overrides) -> Trainer:
    """The jobs' model on 24 samples; TrainerConfig's defaults but for the learning rate and seed."""
    return make_trainer(
        tmp_path,
        train=RegressionData(24, seed=0, features=8),
        callbacks=[callback],
        model_options=JOB_MODEL,
        settings=REGRESSION_SETTINGS,
        **{"learning_rate": 0.01, "seed": 3, **overrides},
    )


def test_curriculum_callback_supplies_the_sampler_and_logs_the_pacing(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, Curriculum(scores=np.arange(24.0), pacing="step"), num_epochs=2, log_steps=3)
    assert isinstance(trainer.train_dataloader.sampler, CurriculumSampler)
    trainer.train()
    logs = pd.read_csv(tmp_path / "logs" / "training_logs.csv")
    step = StepPacing()
    expected = [max(math.ceil(step((s - 1) / 12) * 24), 4) for s in logs["step"]]
    assert logs["curriculum.eligible"].tolist() == expected == [6, 12, 18, 24]
    assert logs["curriculum.threshold"].tolist() == [e - 1 for e in expected]


def test_resuming_a_curriculum_with_other_scores_warns(tmp_path: Path) -> None:
    callback = Curriculum(scores=np.arange(24.0))
    _trainer(tmp_path / "a", callback)
    other = Curriculum(scores=-np.arange(24.0))
    _trainer(tmp_path / "b", other)
    other.load_state_dict(callback.state_dict())
    with pytest.warns(UserWarning, match="difficulty scores differ from those of the checkpoint"):
        other.on_load(None, "ckpt")


def test_self_paced_rescoring_ranks_samples_by_the_current_models_loss(tmp_path: Path) -> None:
    callback = SelfPacedCurriculum(every=2, scores=np.arange(24.0))
    trainer = _trainer(tmp_path, callback, num_epochs=4)
    sampler = trainer.train_dataloader.sampler
    callback.on_epoch_begin(trainer)  # epoch 0: the given scores stand
    assert sampler.order.tolist() == list(range(24))
    trainer.state.epoch = 1
    callback.on_epoch_begin(trainer)  # not a re-scoring epoch
    assert sampler.order.tolist() == list(range(24))
    trainer.state.epoch = 2
    callback.on_epoch_begin(trainer)
    data, model = trainer.train_dataset, trainer.unwrapped_model.eval()
    with torch.no_grad():
        losses = (model(data.x, data.y)["logits"] - data.y) ** 2
    assert sampler.order.tolist() == torch.argsort(losses).tolist()
    assert np.allclose(sampler.scores, losses.double().numpy())
    trainer.train_dataloader.sampler.set_total_steps(trainer.plan.total_steps)
    sampler.set_epoch(2)
    first_batch = list(sampler)[:4]
    assert set(first_batch) <= set(sampler.order[: sampler.eligible_count(2 * sampler.steps_per_epoch)].tolist())


def test_self_paced_scores_resume_from_the_checkpoint_state(tmp_path: Path) -> None:
    callback = SelfPacedCurriculum(every=1)
    trainer = _trainer(tmp_path / "a", callback, num_epochs=2)
    callback.on_epoch_begin(trainer)
    state = callback.state_dict()
    assert state["last_scored_epoch"] == 0 and state["scores"].dtype == torch.float64
    fresh = SelfPacedCurriculum(every=1)
    resumed = _trainer(tmp_path / "b", fresh, num_epochs=2)
    torch.nn.init.zeros_(resumed.unwrapped_model.layers[0].weight)  # another model: scoring it would differ
    fresh.load_state_dict(state)
    fresh.on_epoch_begin(resumed)  # epoch 0 was scored before the checkpoint: not again
    assert resumed.train_dataloader.sampler.order.tolist() == trainer.train_dataloader.sampler.order.tolist()


@pytest.mark.slow
def test_sigkilled_and_resumed_curriculum_run_equals_uninterrupted_run(tmp_path: Path) -> None:
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    assert run_job("curriculum", reference, timeout=120) == 0
    # 5: epoch 0, mid-window (resumes from step 4 with epoch 0's saved scores); after the save at 20: the
    # end of epoch 1, so the resumed run re-scores epoch 2 itself; 26: resumes from step 24's saved scores.
    for kill in (["--kill-step", "5"], ["--kill-after-save", "20"], ["--kill-step", "26"]):
        assert run_job("curriculum", resumed, *kill, timeout=120) == -signal.SIGKILL
    assert run_job("curriculum", resumed, timeout=120) == 0
    assert_same_run(reference, resumed)
    logs = pd.read_csv(resumed / "logs" / "training_logs.csv").dropna(subset=["train.loss"])
    assert logs["curriculum.eligible"].is_monotonic_increasing and logs["train.grad_norm"].notna().all()
    expected, actual = (load_torch(run / "final" / "train" / "callbacks.pt") for run in (reference, resumed))
    assert torch.equal(expected["SelfPacedCurriculum"]["scores"], actual["SelfPacedCurriculum"]["scores"])
