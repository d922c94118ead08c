"""DataLoader workers over a stream with a state: torchdata's StatefulDataLoader saves each worker's
place, so a pass sees every example once and a SIGKILLed run resumes bitwise equal."""

from __future__ import annotations

import builtins
import signal
from typing import Any

import pytest
import torch
from helpers import JOB_MODEL, run_job, tiny_regressor
from jobs.stream import job_stream
from test_resume import assert_same_run
from test_streaming import PlainStream, stream_trainer

from tamrin import Trainer, TrainerConfig
from tamrin.configs import ConfigError

pytest.importorskip("torchdata")
pytestmark = pytest.mark.filterwarnings("ignore:'set_vital' is deprecated")  # torchdata 0.11 calls it; torch 2.13


class RecordingTrainer(Trainer):
    """Records the `x` rows of every trained batch."""

    seen: list[tuple[float, ...]]

    def training_step(self, batch: Any) -> torch.Tensor:
        self.seen.extend(tuple(row) for row in batch["x"].tolist())
        return super().training_step(batch)


def recording_trainer(tmp_path: Any, stream: Any, **settings: Any) -> RecordingTrainer:
    config = TrainerConfig(
        output_dir=str(tmp_path), task="regression", metrics=["mse"], batch_size=4, progress="none",
        optimizer="sgd", learning_rate=0.01, seed=3, remove_unused_columns=False, **settings,
    )  # fmt: skip
    trainer = RecordingTrainer(model=tiny_regressor(**JOB_MODEL), config=config, train_dataset=stream)
    trainer.seen = []
    return trainer


def test_two_workers_read_each_example_of_an_hf_stream_exactly_once(tmp_path):
    stream = job_stream(37, num_shards=4)  # 10 batches a pass (9 of 4, 1 of 1)
    trainer = recording_trainer(tmp_path, stream, max_steps=10, num_dataloader_workers=2)
    trainer.train()
    expected = sorted(tuple(row["x"].tolist()) for row in job_stream(37, num_shards=4))
    assert sorted(trainer.seen) == expected


def test_a_resumed_pass_with_workers_reads_the_rest_of_the_stream_once(tmp_path):
    stream = job_stream(37, num_shards=4)
    first = recording_trainer(tmp_path / "a", stream, max_steps=10, save_steps=3, num_dataloader_workers=2)
    first.train()
    resumed = recording_trainer(tmp_path / "b", job_stream(37, num_shards=4), max_steps=10, num_dataloader_workers=2)
    resumed.load_checkpoint(tmp_path / "a" / "checkpoints" / "00000003")
    resumed.train()
    assert first.seen[12:] == resumed.seen  # the 3 trained batches are not read again, nothing is skipped


def test_resuming_with_another_number_of_workers_names_the_field(tmp_path):
    first = recording_trainer(tmp_path / "a", job_stream(), max_steps=4, save_steps=3, num_dataloader_workers=2)
    first.train()
    resumed = recording_trainer(tmp_path / "b", job_stream(), max_steps=4, num_dataloader_workers=0)
    resumed.load_checkpoint(tmp_path / "a" / "checkpoints" / "00000003")
    with pytest.raises(ValueError, match=r"num_dataloader_workers=2.*this run has num_dataloader_workers=0"):
        resumed.train()


def test_fewer_hf_shards_than_workers_warns_by_name(tmp_path):
    with pytest.warns(UserWarning, match=r"2 shard\(s\) for num_dataloader_workers=3.*1 worker\(s\) read nothing"):
        recording_trainer(tmp_path, job_stream(num_shards=2), max_steps=1, num_dataloader_workers=3)


def test_a_stateless_stream_with_workers_resumes_at_its_start_and_says_so(tmp_path):
    trainer = stream_trainer(tmp_path, PlainStream(10), max_steps=5, save_steps=1, num_dataloader_workers=1)
    trainer.train()
    resumed = stream_trainer(tmp_path / "again", PlainStream(10), max_steps=5, num_dataloader_workers=1)
    with pytest.warns(UserWarning, match=r"cannot resume mid-epoch.*starts epoch 1 at the stream's start"):
        resumed.load_checkpoint(tmp_path / "checkpoints" / "00000004")


def test_workers_over_a_stateful_stream_without_torchdata_say_how_to_install_it(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def without_torchdata(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("torchdata"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_torchdata)
    with pytest.raises(ConfigError, match=r'pip install "tamrin\[stream\]"'):
        recording_trainer(tmp_path, job_stream(), max_steps=1, num_dataloader_workers=2)


@pytest.mark.slow
def test_sigkilled_stream_run_with_two_workers_resumes_bitwise_equal(tmp_path):
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    assert run_job("stream", reference, "--workers", "2") == 0
    assert run_job("stream", resumed, "--workers", "2", "--kill-step", "5") == -signal.SIGKILL  # mid-pass, mid-window
    assert run_job("stream", resumed, "--workers", "2", "--kill-step", "14") == -signal.SIGKILL  # the second pass
    assert run_job("stream", resumed, "--workers", "2") == 0
    assert_same_run(reference, resumed)
