"""Threshold curricula killed mid-epoch resume bitwise (1 and 2 processes), and a resume with another number
of processes keeps the plan, the LR schedule and the logs in the units the sampler draws in.

The job (jobs/threshold_curriculum.py) records every sample all processes consumed; the reference for
each epoch's admitted set is `CONFIDENCE >= threshold`, computed here.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import job_command, job_env
from jobs.threshold_curriculum import CONFIDENCE, LINEAR
from safetensors.torch import load_file
from test_distributed import free_port

pytestmark = pytest.mark.slow


def launch(processes: int, output_dir: Path, *args: str) -> int:
    """torchrun the threshold-curriculum job; 0, or -SIGKILL when it killed itself (anything else fails)."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        *job_command("threshold_curriculum", str(output_dir), *args),
    ]  # fmt: skip
    result = subprocess.run(command, env=job_env(), capture_output=True, text=True, timeout=300, check=False)
    killed = result.returncode != 0 and ("Signals.SIGKILL" in result.stderr or "exitcode  : -9" in result.stderr)
    if result.returncode != 0 and not killed:
        raise AssertionError(f"launch failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return -signal.SIGKILL if killed else 0


def admitted(epoch: int) -> list[int]:
    return np.flatnonzero(max(0.8 - 0.3 * epoch, 0.2) <= CONFIDENCE).tolist()


def record(output_dir: Path) -> tuple[dict, dict[int, list[int]]]:
    seen = json.loads((output_dir / "seen.json").read_text())
    per_epoch: dict[int, list[int]] = defaultdict(list)
    for epoch, index in zip(seen["epochs"], seen["indices"], strict=True):
        per_epoch[epoch].append(index)
    return seen, per_epoch


@pytest.mark.parametrize(
    ("processes", "epoch", "kill"),
    # each mid-epoch, 1 step after a save; with 2 processes the save (step 4: in epoch 0 of 6 steps, or in epoch 1
    # of 2/3/5/5 steps) ends an accumulation window: a save inside one keeps only the main process's partial
    # gradients (a Trainer-wide limit, docs/curriculum.md)
    [(1, "full", 17), (1, "admitted", 5), (2, "full", 5), (2, "admitted", 5)],
)
def test_a_threshold_curriculum_killed_mid_epoch_resumes_bitwise(tmp_path: Path, processes, epoch, kill) -> None:
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    assert launch(processes, reference, "--epoch", epoch) == 0
    assert launch(processes, resumed, "--epoch", epoch, "--kill-step", str(kill)) == -signal.SIGKILL
    assert launch(processes, resumed, "--epoch", epoch) == 0
    expected, actual = (load_file(run / "final" / "model.safetensors") for run in (reference, resumed))
    for name in expected:
        assert torch.equal(expected[name], actual[name]), f"parameter {name} differs"
    pd.testing.assert_frame_equal(
        pd.read_csv(reference / "logs" / "training_logs.csv"), pd.read_csv(resumed / "logs" / "training_logs.csv")
    )
    (seen, per_epoch), (resumed_seen, _) = record(reference), record(resumed)
    assert seen["indices"] == resumed_seen["indices"] and seen["epochs"] == resumed_seen["epochs"]
    for number, indices in per_epoch.items():
        assert set(indices) <= set(admitted(number)), f"epoch {number} drew a sample its threshold does not admit"
        if epoch == "admitted":
            assert set(indices) == set(admitted(number)) and len(indices) - len(admitted(number)) < processes


@pytest.mark.parametrize("epoch", ["full", "admitted"])
def test_resuming_with_another_number_of_processes_keeps_plan_schedule_and_logs_in_step(tmp_path: Path, epoch) -> None:
    run = tmp_path / "run"
    kill = "17" if epoch == "full" else "5"  # saved at 16 (sample 16 of epoch 1) / 4 (sample 4 of epoch 1)
    assert launch(1, run, "--epoch", epoch, "--kill-step", kill) == -signal.SIGKILL
    assert launch(2, run, "--epoch", epoch) == 0
    seen, per_epoch = record(run)
    assert seen["global_step"] == seen["total_steps"]  # the plan counts the steps the run took
    assert seen["last_lr"] == 0.0  # the linear schedule ends with the run, not before or after it
    logs = pd.read_csv(run / "logs" / "training_logs.csv").dropna(subset=["train.loss"])
    assert logs["step"].tolist() == list(range(1, seen["global_step"] + 1))
    assert logs["learning_rate"].is_monotonic_decreasing and (logs["learning_rate"].iloc[:-1] > 0).all()
    for number in range(4):  # each epoch's rows (found by the user's threshold) log what its sampler drew from
        threshold = max(0.8 - 0.3 * number, 0.2)
        rows = logs[np.isclose(logs["curriculum.threshold"], threshold)]
        assert not rows.empty and set(rows["curriculum.eligible"]) == {len(admitted(number))}
        assert set(per_epoch[number]) <= set(admitted(number))
        if epoch == "admitted":
            assert set(per_epoch[number]) == set(admitted(number))


def test_a_fraction_pacing_resumed_on_two_processes_draws_from_the_set_its_logs_show(tmp_path: Path) -> None:
    """The issue's case: after 1 -> 2 processes, the log said eligible=64 while the sampler drew from 48."""
    run = tmp_path / "run"
    assert launch(1, run, "--pacing", "linear", "--kill-step", "17") == -signal.SIGKILL  # saved at step 16
    assert launch(2, run, "--pacing", "linear") == 0
    seen, per_epoch = record(run)
    total = seen["total_steps"]
    assert seen["global_step"] == total == 16 + 4 + 2 * 6  # 16 steps of 4, then 32 + 2 * 48 samples in steps of 8
    rank = np.argsort(np.argsort(CONFIDENCE))  # 0 = the easiest sample
    sizes = [4] * 16 + [8] * (total - 16)
    starts = np.cumsum([0, *sizes])
    logs = pd.read_csv(run / "logs" / "training_logs.csv").dropna(subset=["train.loss"]).set_index("step")
    for step in range(1, total + 1):
        progress = min((step - 1) / total / LINEAR["duration"], 1.0)
        fraction = LINEAR["start"] + (1 - LINEAR["start"]) * progress  # the linear pacing, written out
        expected = max(math.ceil(round(fraction * 48, 9)), sizes[step - 1])
        if step > 16:  # the resumed steps: their log and their draws, against the formula at the plan's length
            assert logs.loc[step, "curriculum.eligible"] == expected, step
        drawn = seen["indices"][starts[step - 1] : starts[step]]
        assert rank[drawn].max() < expected, (step, drawn)
    # the last epoch is steps 27-32, where progress >= 0.8 admits all: a plain permutation, if the sampler
    # counts steps as the Trainer does (counted from its own epoch start, it would still be ramping up)
    assert sorted(per_epoch[3]) == list(range(48))
