"""Streaming training data (an IterableDataset): max_steps, exact resume from the stream's state,
sharding over processes, and the warning of a stream that cannot resume."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import JOB_MODEL, RegressionData, run_job, tiny_regressor
from safetensors.torch import load_file
from test_resume import assert_same_run

from tamrin import Trainer, TrainerConfig
from tamrin.configs import ConfigError
from tamrin.trainer.checkpoint.store import load_torch


class PlainStream(torch.utils.data.IterableDataset):
    """A torch stream without state_dict/load_state_dict: the samples of a RegressionData, in order."""

    def __init__(self, size: int) -> None:
        self.data = RegressionData(size, seed=0, features=JOB_MODEL["inputs"])

    def __iter__(self) -> Any:
        return (self.data[index] for index in range(len(self.data)))


def stream_trainer(tmp_path: Path, dataset: Any, **settings: Any) -> Trainer:
    config = TrainerConfig(
        output_dir=str(tmp_path), task="regression", metrics=["mse"], batch_size=4, progress="none",
        optimizer="sgd", learning_rate=0.01, seed=3, **settings,
    )  # fmt: skip
    return Trainer(model=tiny_regressor(**JOB_MODEL), config=config, train_dataset=dataset)


@pytest.mark.parametrize("max_steps", [None, 0.5])
def test_a_stream_without_max_steps_is_refused_by_name(tmp_path, max_steps):
    with pytest.raises(ConfigError, match=r"`max_steps=.*stream.*no known length"):
        stream_trainer(tmp_path, PlainStream(10), max_steps=max_steps)


def test_a_stream_trains_for_max_steps_over_several_passes(tmp_path):
    trainer = stream_trainer(tmp_path, PlainStream(10), max_steps=7)  # 3 batches a pass: 4, 4, 2
    trainer.train()
    assert trainer.state.global_step == 7
    assert trainer.state.epoch == 2 and trainer.state.epoch_step == 1  # passes 0 and 1 done, 1 step into pass 2


def test_a_stream_without_state_resumes_at_its_start_and_says_so(tmp_path):
    trainer = stream_trainer(tmp_path, PlainStream(10), max_steps=5, save_steps=1)
    trainer.train()
    checkpoint = tmp_path / "checkpoints" / "00000004"  # pass 1, one step in
    assert not list((checkpoint / "train").glob("stream_state*.pt"))
    resumed = stream_trainer(tmp_path / "again", PlainStream(10), max_steps=5)
    with pytest.warns(
        UserWarning, match=r"cannot resume mid-epoch.*no state_dict.*starts epoch 1 at the stream's start"
    ):
        resumed.load_checkpoint(checkpoint)


def test_an_hf_stream_saves_its_state_after_the_trained_batch(tmp_path):
    datasets = pytest.importorskip("datasets")
    data = RegressionData(10, seed=0, features=JOB_MODEL["inputs"])
    stream = datasets.Dataset.from_dict({"x": data.x.tolist(), "labels": data.y.tolist()})
    stream = stream.to_iterable_dataset(num_shards=2).with_format("torch")
    trainer = stream_trainer(tmp_path, stream, max_steps=2, save_steps=1)
    trainer.train()
    state = load_torch(tmp_path / "checkpoints" / "00000001" / "train" / "stream_state.pt")
    # HF itself, resumed from that state, goes on at row 4: one batch trained, the look-ahead batch not counted
    stream.load_state_dict(state)
    assert torch.equal(next(iter(stream))["x"], data.x[4])


@pytest.mark.slow
def test_sigkilled_stream_run_resumes_bitwise_equal_to_uninterrupted(tmp_path):
    reference = tmp_path / "reference"
    assert run_job("stream", reference) == 0
    resumed = tmp_path / "resumed"
    # step 5: mid-pass, inside an accumulation window; step 14: the second pass; after the save at 20: a pass's end
    assert run_job("stream", resumed, "--kill-step", "5") == -signal.SIGKILL
    assert run_job("stream", resumed, "--kill-step", "14") == -signal.SIGKILL
    assert run_job("stream", resumed, "--kill-after-save", "20") == -signal.SIGKILL
    assert run_job("stream", resumed) == 0
    assert_same_run(reference, resumed)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])  # 2: each process's 2 shards split over its 2 StatefulDataLoader workers
def test_two_processes_split_a_stream_without_duplicates_and_resume_it_exactly(tmp_path, workers):
    from test_distributed import SAMPLES, launch, seen_per_epoch

    if workers:
        pytest.importorskip("torchdata")
    stream = ("--stream", "--workers", str(workers))
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    assert launch(2, reference, *stream) == 0
    per_epoch = seen_per_epoch(reference)
    assert sorted(per_epoch) == [0, 1, 2]
    for epoch, indices in per_epoch.items():  # split_dataset_by_node: 2 of the 4 shards per process
        assert sorted(indices) == list(range(SAMPLES)), f"pass {epoch}: repeated or skipped samples"
    assert launch(2, resumed, *stream, "--kill-step", "8") == -signal.SIGKILL  # pass 1, inside a window
    assert launch(2, resumed, *stream) == 0
    assert sorted(p.name for p in (resumed / "final" / "train").glob("stream_state_*.pt")) == [
        "stream_state_0.pt",
        "stream_state_1.pt",
    ]
    expected, actual = (
        load_file(reference / "final" / "model.safetensors"),
        load_file(resumed / "final" / "model.safetensors"),
    )
    for name in expected:
        assert torch.equal(expected[name], actual[name]), f"parameter {name} differs"
    assert seen_per_epoch(resumed) == per_epoch
