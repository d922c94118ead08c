"""A training job for the crash-consistency test: it is SIGKILLed again and again and rerun unchanged.

    python tests/crash_job.py OUTPUT_DIR

Every run is the same command with resume_from_checkpoint=True. The model and data are
tests/resume_job.py's (dropout, shuffle, gradient accumulation 3, an LR scheduler with warmup);
checkpoints are frequent and rotated (save_total_limit=2), so kills meet saves and deletions.
At the end the final model and state are saved to OUTPUT_DIR/final.

The environment steers a run without changing its command:

- CRASH_JOB_EVENTS: append "train-begin", "armed STEP", "save-begin STEP", "save-end STEP",
  "save-capped STEP" and "done" lines to this file, so the test can tell when to start a
  wall-clock kill and whether a kill landed inside a checkpoint save.
- CRASH_JOB_SAVE_DELAY: once armed, seconds to sleep inside every state-file write of a save
  (slow saves make a kill at a random moment likely to land in one).
- CRASH_JOB_ARM_AT_STEP=G: the kill points and the save cap below count only from the first step
  >= G (or from the start when the run resumes at G or later); an "armed" event marks that moment.
- CRASH_JOB_MAX_SAVES=N: once armed, SIGKILL this process when it begins its (N+1)-th checkpoint
  save (a "save-capped" event), so that one run never gets more than N checkpoints past G.
- CRASH_JOB_KILL=POINT:N: SIGKILL this process at the N-th time it reaches POINT:
  file-begin / file-partial / file-end   a state file (optimizer.pt, ...) of a checkpoint is about
                                         to be written / half written / written, in the staging folder;
  manifest                               the manifest is written, the folder not yet renamed into place;
  published                              the folder was renamed into place, the old ones not yet rotated;
  rotation                               an old checkpoint is partly deleted by save_total_limit.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
from resume_job import Data, Net

from tamrin import Trainer, TrainerConfig
from tamrin.trainer.callbacks import Callback
from tamrin.trainer.checkpoint import files as checkpointing

POINTS = ("file-begin", "file-partial", "file-end", "manifest", "published", "rotation")


def _event(text: str) -> None:
    path = os.environ.get("CRASH_JOB_EVENTS")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")


class KillSwitch:
    """SIGKILLs this process the N-th time it reaches the point named in CRASH_JOB_KILL, once armed."""

    armed = False

    def __init__(self, spec: str | None) -> None:
        self.point, self.count = None, 0
        if spec:
            point, number = spec.split(":")
            if point not in POINTS:
                raise SystemExit(f"CRASH_JOB_KILL: unknown point {point!r}; points: {', '.join(POINTS)}")
            self.point, self.count = point, int(number)

    def reached(self, point: str) -> bool:
        """Count one arrival at `point`; True when this is the arrival to die at."""
        if point != self.point or not KillSwitch.armed:
            return False
        self.count -= 1
        return self.count == 0

    @staticmethod
    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)


def install_hooks(switch: KillSwitch, save_delay: float) -> None:
    """Wrap the checkpoint writers so that a save can be slowed down and killed at a chosen point."""
    save_torch, write_manifest = checkpointing.save_torch, checkpointing.write_manifest
    fsync_directory, rotate, rmtree = checkpointing._fsync_directory, checkpointing.rotate_checkpoints, shutil.rmtree
    rotating = False

    def slow_save_torch(obj: Any, path: Path) -> None:
        if save_delay and KillSwitch.armed:
            time.sleep(save_delay)
        if switch.reached("file-begin"):
            switch.die()
        if switch.point == "file-partial":
            buffer = io.BytesIO()
            torch.save(obj, buffer)
            if switch.reached("file-partial"):
                data = buffer.getvalue()
                Path(path).write_bytes(data[: len(data) // 2])
                switch.die()
        save_torch(obj, path)
        if switch.reached("file-end"):
            switch.die()

    def killable_write_manifest(directory: Path, info: dict[str, Any]) -> None:
        write_manifest(directory, info)
        if switch.reached("manifest"):
            switch.die()

    def killable_fsync_directory(directory: Path) -> None:
        # Called on the checkpoints folder right after the rename that publishes a checkpoint.
        if not Path(directory).name.startswith(".") and switch.reached("published"):
            switch.die()
        fsync_directory(directory)

    def killable_rotate(*args: Any, **kwargs: Any) -> Any:
        nonlocal rotating
        rotating = True
        try:
            return rotate(*args, **kwargs)
        finally:
            rotating = False

    def killable_rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
        # A kill in the middle of a deletion: one file of the folder is gone, the rest is not.
        if rotating and switch.reached("rotation"):
            files = sorted(p for p in Path(path).rglob("*") if p.is_file())
            weights = [p for p in files if p.name == "model.safetensors"]
            (weights or files)[0].unlink()
            switch.die()
        rmtree(path, *args, **kwargs)

    checkpointing.save_torch = slow_save_torch
    checkpointing.write_manifest = killable_write_manifest
    checkpointing._fsync_directory = killable_fsync_directory
    checkpointing.rotate_checkpoints = killable_rotate
    shutil.rmtree = killable_rmtree


class Arming(Callback):
    """Arms the kill switch at the first step >= CRASH_JOB_ARM_AT_STEP (no state: safe to resume)."""

    def __init__(self) -> None:
        self.arm_at = int(os.environ.get("CRASH_JOB_ARM_AT_STEP", 0))

    def _check(self, trainer: Trainer) -> None:
        if not KillSwitch.armed and trainer.state.global_step >= self.arm_at:
            KillSwitch.armed = True
            _event(f"armed {trainer.state.global_step}")

    def on_train_begin(self, trainer: Trainer) -> None:
        self._check(trainer)

    def on_step_end(self, trainer: Trainer) -> None:
        self._check(trainer)


class EventTrainer(Trainer):
    """A Trainer that writes where its checkpoint saves begin and end into the events file."""

    saves = 0
    max_saves = int(os.environ.get("CRASH_JOB_MAX_SAVES", 0)) or None

    def _save_checkpoint(self) -> None:
        self.saves += KillSwitch.armed
        if self.max_saves is not None and self.saves > self.max_saves:
            _event(f"save-capped {self.state.global_step}")
            KillSwitch.die()
        _event(f"save-begin {self.state.global_step}")
        super()._save_checkpoint()
        _event(f"save-end {self.state.global_step}")


def build_trainer(output_dir: str) -> Trainer:
    torch.manual_seed(0)
    config = TrainerConfig(
        output_dir=output_dir,
        task="regression",
        metrics=["mse"],
        num_epochs=10,
        batch_size=4,
        gradient_accumulation_steps=3,
        learning_rate=0.01,
        optimizer="adamw",
        lr_scheduler="linear",
        warmup_steps=2,
        save_steps=4,  # not a multiple of 3: many saves fall inside an accumulation window
        save_total_limit=2,
        log_steps=3,
        do_evaluate=False,
        resume_from_checkpoint=True,
        seed=1234,
        progress="none",
    )
    return EventTrainer(model=Net(), config=config, train_dataset=Data(37, seed=0), callbacks=[Arming()])


def main(argv: list[str]) -> None:
    output_dir = argv[0]
    install_hooks(KillSwitch(os.environ.get("CRASH_JOB_KILL")), float(os.environ.get("CRASH_JOB_SAVE_DELAY", 0)))
    trainer = build_trainer(output_dir)
    _event("train-begin")
    trainer.train()
    trainer.save(os.path.join(output_dir, "final"))
    _event("done")


if __name__ == "__main__":
    main(sys.argv[1:])
