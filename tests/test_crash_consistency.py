"""Crash consistency: a run SIGKILLed at 20 random moments, many inside checkpoint saves, and rerun
each time with the same command, ends bitwise equal to an uninterrupted run; and at every moment
each checkpoint directory on disk is complete and loads.

The moments are random but seeded, so the test is reproducible: some are wall-clock delays after
the job starts training (with saves slowed down for half of them, so that a random moment often
falls inside one), the others are points inside a save reached from within the job
(tests/jobs/crash.py): a state file about to be written, half written or written in the staging
folder, the manifest written, the folder just published, an old checkpoint half deleted by rotation.
Each killed run is first let through to a seeded target step (the targets climb through the run,
so the kills spread over 8 of its 10 epochs) and is killed at most one checkpoint after it (a
wall-clock kill that has not come when the run begins its second save from there comes then), so
20 kills never finish the run, however fast or loaded the machine is.
"""

from __future__ import annotations

import dataclasses
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import job_command, job_env
from jobs.crash import POINTS, build_trainer
from safetensors.torch import load_file
from test_resume import assert_same_run

from tamrin import TrainerConfig
from tamrin.trainer.checkpoint.files import TRAIN_DIR, verify_checkpoint
from tamrin.trainer.checkpoint.store import load_torch
from tamrin.trainer.state import TrainerState

SEED = 20260610
WALL_KILLS, SAVE_KILLS = 12, 8  # 20 kills in all
INTERNAL_POINTS = POINTS  # the points inside a save where the job can kill itself
FILES_PER_SAVE = 4  # optimizer, lr_scheduler, rng_state, callbacks (+ gradients inside a window)
SAVE_DELAY = 0.03  # seconds per state file when saves are slowed down
STEPS, SAVE_STEPS = 100, 4  # jobs/crash.py: 10 epochs of 10 steps, a checkpoint every 4 steps
TIMEOUT = 120


@dataclasses.dataclass
class Kill:
    """One planned kill, once the run reaches step `arm_at`: after `delay` seconds, or at the
    `count`-th arrival at `point` inside a save."""

    arm_at: int = 0
    delay: float | None = None
    slow_saves: bool = False
    point: str | None = None
    count: int = 0

    def describe(self) -> str:
        if self.point:
            return f"from step {self.arm_at}, at arrival {self.count} at the '{self.point}' point of a save"
        return f"{self.delay:.3f}s after step {self.arm_at}{' (slowed saves)' if self.slow_saves else ''}"


def plan_kills(rng: random.Random, save_interval_s: float) -> list[Kill]:
    """Wall-clock kills (half with slowed saves) and kills at points inside saves, in a seeded order,
    the i-th armed at a target step in [4i, 4i + 3] (so at most step 79).

    Once armed, a wall-clock kill comes within 1.5 save intervals of the uninterrupted run, and at
    the latest when the job begins its second save; a kill at a point comes in the job's first save
    (a rotation kill within its first three, as a deletion needs three checkpoints on disk). So no
    run gets past checkpoint 79 + 3 * 4 = 91 of the 100 steps.
    """
    kills = [Kill(delay=rng.uniform(0.05, 1.5) * save_interval_s, slow_saves=i % 2 == 0) for i in range(WALL_KILLS)]
    for i in range(SAVE_KILLS):
        point = INTERNAL_POINTS[i % len(INTERNAL_POINTS)]
        count = rng.randint(1, FILES_PER_SAVE) if point.startswith("file") else 1
        kills.append(Kill(point=point, count=count))
    rng.shuffle(kills)
    for i, kill in enumerate(kills):
        kill.arm_at = 4 * i + rng.randint(0, 3)
    return kills


def start_job(output_dir: Path, events: Path, *, kill: Kill | None = None) -> subprocess.Popen:
    args = [str(output_dir), "--events", str(events)]
    if kill is not None:
        # a rotation needs 3 checkpoints on disk: a run from an empty folder deletes at its 3rd save
        args += ["--arm-at-step", str(kill.arm_at), "--max-saves", "3" if kill.point == "rotation" else "1"]
    if kill is not None and kill.point:
        args += ["--kill", f"{kill.point}:{kill.count}"]
    if kill is not None and kill.slow_saves:
        args += ["--save-delay", str(SAVE_DELAY)]
    return subprocess.Popen(
        [sys.executable, *job_command("crash", *args)],
        env=job_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(process: subprocess.Popen, events: Path, event: str) -> float:
    """Block until the job writes `event` ("train-begin", "armed"); returns that moment."""
    deadline = time.monotonic() + TIMEOUT
    while not (events.is_file() and f"\n{event}" in "\n" + events.read_text()):
        if process.poll() is not None or time.monotonic() > deadline:
            out, err = process.communicate()
            raise AssertionError(f"the job never wrote {event!r} ({process.returncode}):\n{out}\n{err}")
        time.sleep(0.002)
    return time.monotonic()


def finish(process: subprocess.Popen) -> tuple[int, str]:
    _, err = process.communicate(timeout=TIMEOUT)
    return process.returncode, err


def killed_inside_a_save(events: Path) -> bool:
    lines = [line.split()[0] for line in events.read_text().splitlines()]
    saves = [line for line in lines if line.startswith("save-")]
    return bool(saves) and saves[-1] == "save-begin"


def assert_every_checkpoint_loads(checkpoints_dir: Path) -> int:
    """Every visible checkpoint directory verifies against its manifest and each of its files loads.

    Hidden `.tmp-*` / `.old-*` / `.del-*` folders are a killed save's or deletion's leftovers, which
    the next resume removes; they are never taken for a checkpoint.
    """
    directories = (
        [p for p in checkpoints_dir.iterdir() if not p.name.startswith(".")] if checkpoints_dir.is_dir() else []
    )
    for directory in directories:
        assert verify_checkpoint(directory) is None, verify_checkpoint(directory)
        load_file(directory / "model.safetensors")
        TrainerConfig.load(directory / TRAIN_DIR)
        TrainerState.load(directory / TRAIN_DIR / "trainer_state.yaml")
        for state_file in (directory / TRAIN_DIR).glob("*.pt"):
            load_torch(state_file)
    return len(directories)


@pytest.mark.slow
def test_run_killed_at_20_random_moments_ends_bitwise_equal_and_every_checkpoint_loads(tmp_path):
    reference = tmp_path / "reference"
    process = start_job(reference, tmp_path / "events-reference")
    began = wait_for(process, tmp_path / "events-reference", "train-begin")
    code, err = finish(process)
    assert code == 0, err
    save_interval_s = (time.monotonic() - began) * SAVE_STEPS / STEPS

    run = tmp_path / "run"
    kills = plan_kills(random.Random(SEED), save_interval_s)
    inside_saves = []
    for number, kill in enumerate(kills, start=1):
        events = tmp_path / f"events-{number:02d}"
        process = start_job(run, events, kill=kill)
        began = wait_for(process, events, "armed")
        if kill.delay is not None:
            time.sleep(max(0.0, began + kill.delay - time.monotonic()))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
        code, err = finish(process)
        assert code == -signal.SIGKILL, f"kill {number} ({kill.describe()}): the run ended with {code} first:\n{err}"
        assert "Skipping" not in err, f"kill {number}: the resume met a damaged checkpoint:\n{err}"
        if killed_inside_a_save(events):
            inside_saves.append(number)
        assert_every_checkpoint_loads(run / "checkpoints")

    reached = max((int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit()), default=0)
    print(f"{len(inside_saves)} of {len(kills)} kills landed inside a checkpoint save: {inside_saves}; "
          f"the last kill left the run at checkpoint {reached} of {STEPS} steps")  # fmt: skip
    assert len(inside_saves) >= SAVE_KILLS, f"only kills {inside_saves} landed inside a checkpoint save"
    code, err = finish(start_job(run, tmp_path / "events-final"))
    assert code == 0, err
    assert "Skipping" not in err, err
    assert_same_run(reference, run)
    checkpoints = run / "checkpoints"
    assert not [p.name for p in checkpoints.iterdir() if p.name.startswith(".")], "leftovers of killed saves remain"
    assert assert_every_checkpoint_loads(checkpoints) == 2  # save_total_limit
    for directory in sorted(checkpoints.iterdir()):  # and each one resumes a Trainer
        trainer = build_trainer(str(run))
        trainer.load_checkpoint(directory)
        assert trainer.state.global_step == int(directory.name)
        expected = load_file(directory / "model.safetensors")
        for name, tensor in trainer.unwrapped_model.state_dict().items():
            assert torch.equal(tensor, expected[name]), name


@pytest.mark.slow
def test_30_kills_by_sigkill_sigterm_and_sigint_including_in_rotation_and_evaluation_resume_bitwise(tmp_path):
    """jobs/kill_loop.py: one process forks a run per kill (no interpreter start per kill) and kills it at
    a seeded random moment, a fifth of them while rotation deletes and a fifth in the middle of an evaluation;
    after 30 kills the run, resumed every time, ends bitwise equal to the uninterrupted one, each step once
    in its CSV. SIGTERM and SIGINT stop at the next step boundary with a checkpoint (exit 143 / 130)."""
    reference, run, report = tmp_path / "reference", tmp_path / "run", tmp_path / "report.jsonl"
    command = [sys.executable, *job_command("kill_loop", str(reference), str(run), "--kills", "30", "--seed",
               str(SEED), "--report", str(report))]  # fmt: skip
    result = subprocess.run(command, env=job_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert rows[0]["code"] == 0 and rows[-1]["code"] == 0, result.stderr
    kills = rows[1:-1]
    assert len(kills) == 30
    expected = {"SIGKILL": -signal.SIGKILL, "SIGTERM": 128 + signal.SIGTERM, "SIGINT": 128 + signal.SIGINT}
    for kill in kills:  # the signal ended the run (or the save cap's SIGKILL did): never a finished or failed run
        assert kill["code"] in (expected[kill["signal"]], -signal.SIGKILL), kill
    landed = {name: sum(k["code"] == code and k["signal"] == name for k in kills) for name, code in expected.items()}
    assert min(landed.values()) >= 5, landed
    for point in ("rotation", "evaluation"):
        assert sum(f"signal-at {point}" in k["events"] for k in kills) >= 5, point
    assert "Skipping" not in result.stderr, result.stderr  # no resume met a damaged checkpoint
    assert_same_run(reference, run)  # weights, optimizer, RNG and the whole CSV (each step once)
    checkpoints = run / "checkpoints"
    assert not [p.name for p in checkpoints.iterdir() if p.name.startswith(".")], "leftovers of killed saves remain"
    assert assert_every_checkpoint_loads(checkpoints) == 2  # save_total_limit
