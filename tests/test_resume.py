"""Promise 1: killing a run at any point and resuming gives bitwise-equal weights and logs."""

from __future__ import annotations

import signal
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import run_job
from safetensors.torch import load_file

from tamrin.trainer.checkpoint.store import load_torch


def assert_same_run(reference: Path, resumed: Path) -> None:
    expected = load_file(reference / "final" / "model.safetensors")
    actual = load_file(resumed / "final" / "model.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), f"parameter {name} differs"
    expected_optim = load_torch(reference / "final" / "train" / "optimizer.pt")
    actual_optim = load_torch(resumed / "final" / "train" / "optimizer.pt")
    for index, state in expected_optim["state"].items():
        for key, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(actual_optim["state"][index][key])), key
    expected_logs = pd.read_csv(reference / "logs" / "training_logs.csv")
    actual_logs = pd.read_csv(resumed / "logs" / "training_logs.csv")
    assert actual_logs["step"].is_unique
    pd.testing.assert_frame_equal(expected_logs, actual_logs)
    expected_rng = load_torch(reference / "final" / "train" / "rng_state.pt")["torch"]
    assert torch.equal(expected_rng, load_torch(resumed / "final" / "train" / "rng_state.pt")["torch"])


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_sigkilled_and_resumed_run_equals_uninterrupted_run(tmp_path, workers):
    reference = tmp_path / "reference"
    assert run_job("resume", reference, "--workers", str(workers)) == 0

    resumed = tmp_path / "resumed"
    # step 5: mid-epoch, inside an accumulation window (the save at step 4 holds partial gradients);
    # step 14: the second epoch; after the save at step 20: right after a checkpoint is published.
    assert run_job("resume", resumed, "--workers", str(workers), "--kill-step", "5") == -signal.SIGKILL
    assert run_job("resume", resumed, "--workers", str(workers), "--kill-step", "14") == -signal.SIGKILL
    assert run_job("resume", resumed, "--workers", str(workers), "--kill-after-save", "20") == -signal.SIGKILL
    assert run_job("resume", resumed, "--workers", str(workers)) == 0
    assert_same_run(reference, resumed)
