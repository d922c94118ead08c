"""Multi-process training (2 CPU processes, gloo) keeps the single-process guarantees."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import job_command, job_env
from jobs.distributed import SAMPLES
from safetensors.torch import load_file

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(
    processes: int, output_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run jobs/distributed.py in `processes` CPU processes under torchrun, as a module from tests/."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        *job_command("distributed", str(output_dir), *args),
    ]  # fmt: skip
    return subprocess.run(command, env=job_env(env), capture_output=True, text=True, timeout=300, check=False)


def launch(processes: int, output_dir: Path, *args: str) -> int:
    """torchrun the job; returns 0, or -SIGKILL when a process killed itself (anything else fails)."""
    result = torchrun(processes, output_dir, *args)
    killed = result.returncode != 0 and ("Signals.SIGKILL" in result.stderr or "exitcode  : -9" in result.stderr)
    if result.returncode != 0 and not killed:
        raise AssertionError(f"launch failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return -signal.SIGKILL if killed else 0


def seen_per_epoch(output_dir: Path) -> dict[int, list[int]]:
    seen = json.loads((output_dir / "seen.json").read_text())
    per_epoch: dict[int, list[int]] = defaultdict(list)
    for epoch, index in zip(seen["epochs"], seen["indices"]):
        per_epoch[epoch].append(index)
    return per_epoch


def test_two_process_run_killed_and_resumed_is_bitwise_equal(tmp_path):
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    assert launch(2, reference) == 0
    assert launch(2, resumed, "--kill-step", "5") == -signal.SIGKILL  # inside an accumulation window
    assert launch(2, resumed) == 0
    expected, actual = (
        load_file(reference / "final" / "model.safetensors"),
        load_file(resumed / "final" / "model.safetensors"),
    )
    for name in expected:
        assert torch.equal(expected[name], actual[name]), f"parameter {name} differs"
    pd.testing.assert_frame_equal(
        pd.read_csv(reference / "logs" / "training_logs.csv"), pd.read_csv(resumed / "logs" / "training_logs.csv")
    )
    assert len(list((reference / "logs").glob("events.out.tfevents.*"))) == 1  # only the main process writes
    assert sorted(p.name for p in (reference / "final" / "train").glob("rng_state_*.pt")) == [
        "rng_state_0.pt",
        "rng_state_1.pt",
    ]
    for epoch, indices in seen_per_epoch(reference).items():
        assert sorted(indices) == list(range(SAMPLES)), f"epoch {epoch} of the 2-process run"


def test_two_process_checkpoint_inside_an_accumulation_window_resumes_bitwise(tmp_path):
    # save_steps=3 with accumulation 2: the checkpoint at step 3 holds half a window, whose gradients
    # differ between the processes (DDP syncs them only at the window's end); each must get its own back
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    assert launch(2, reference, "--save-steps", "3") == 0
    assert launch(2, resumed, "--save-steps", "3", "--kill-step", "4") == -signal.SIGKILL
    assert sorted(p.name for p in (resumed / "checkpoints" / "00000003" / "train").glob("gradients*.pt")) == [
        "gradients_0.pt",
        "gradients_1.pt",
    ]
    assert launch(2, resumed, "--save-steps", "3") == 0
    expected, actual = (
        load_file(reference / "final" / "model.safetensors"),
        load_file(resumed / "final" / "model.safetensors"),
    )
    for name in expected:
        assert torch.equal(expected[name], actual[name]), f"parameter {name} differs"


def test_resume_with_another_number_of_processes_sees_each_sample_once_per_epoch(tmp_path):
    run = tmp_path / "run"
    assert launch(2, run, "--kill-step", "4") == -signal.SIGKILL  # 2 processes: 6 steps per epoch
    assert launch(1, run, "--kill-step", "13") == -signal.SIGKILL  # 2 -> 1 process, killed in epoch 1
    assert launch(2, run) == 0  # 1 -> 2 processes, to the end
    per_epoch = seen_per_epoch(run)
    assert sorted(per_epoch) == [0, 1, 2]
    for epoch, indices in per_epoch.items():
        assert sorted(indices) == list(range(SAMPLES)), f"epoch {epoch}: repeated or skipped samples"


def test_two_process_evaluation_equals_one_process(tmp_path):
    assert launch(1, tmp_path / "one", "--evaluate-only") == 0
    assert launch(2, tmp_path / "two", "--evaluate-only") == 0
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert one.keys() == two.keys() == {"loss", "mse", "mae", "r2"}
    for name in one:
        assert two[name] == pytest.approx(one[name], rel=1e-6), name


def test_fsdp_request_on_cpu_is_refused_not_silently_ddp(tmp_path):
    result = torchrun(2, tmp_path / "fsdp", env={**os.environ, "ACCELERATE_USE_FSDP": "true"})
    assert result.returncode != 0
    assert "FSDP was requested (ACCELERATE_USE_FSDP) but accelerate runs MULTI_CPU here" in result.stderr
