"""A training job for the crash-consistency test: it is SIGKILLed again and again and rerun unchanged.

    PYTHONPATH=tests python -m jobs.crash OUTPUT_DIR [--events FILE] [--arm-at-step G] [--max-saves N]
                                                          [--kill POINT:N] [--save-delay SECONDS]

Every run resumes (resume_from_checkpoint=True) the run of `jobs.builder` (dropout, shuffle,
gradient accumulation 3, an LR scheduler with warmup) for 10 epochs; checkpoints are frequent and
rotated (save_total_limit=2), so kills meet saves and deletions. At the end the final model and
state are saved to OUTPUT_DIR/final.

The options steer a run without changing what it trains:

- --events FILE: append "train-begin", "armed STEP", "save-begin STEP", "save-end STEP",
  "save-capped STEP" and "done" lines to FILE, so the test can tell when to start a wall-clock
  kill and whether a kill landed inside a checkpoint save.
- --save-delay SECONDS: once armed, sleep this long inside every state-file write of a save (slow
  saves make a kill at a random moment likely to land in one).
- --arm-at-step G: the kill points and the save cap below count only from the first step >= G (or
  from the start when the run resumes at G or later); an "armed" event marks that moment.
- --max-saves N: once armed, SIGKILL this process when it begins its (N+1)-th checkpoint save (a
  "save-capped" event), so that one run never gets more than N checkpoints past G.
- --kill POINT:N: SIGKILL this process at the N-th time it reaches POINT:
  file-begin / file-partial / file-end   a state file (optimizer.pt, ...) of a checkpoint is about
                                         to be written / half written / written, in the staging folder;
  manifest                               the manifest is written, the folder not yet renamed into place;
  published                              the folder was renamed into place, the old ones not yet rotated;
  rotation                               an old checkpoint is partly deleted by save_total_limit.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch

from jobs.builder import job_config, job_data, job_model, job_parser
from tamrin import Trainer
from tamrin.trainer.callbacks import Callback
from tamrin.trainer.checkpoint import CheckpointStore

POINTS = ("file-begin", "file-partial", "file-end", "manifest", "published", "rotation")


class EventLog:
    """Appends event lines to a file (None: nowhere), for the test to read while the job runs."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def write(self, text: str) -> None:
        if self.path:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(text + "\n")


def kill_spec(text: str) -> tuple[str, int]:
    """Parse --kill POINT:N."""
    point, _, number = text.partition(":")
    if point not in POINTS or not number.isdigit() or int(number) < 1:
        raise argparse.ArgumentTypeError(f"--kill={text!r} must be POINT:N with N >= 1; points: {', '.join(POINTS)}")
    return point, int(number)


class KillSwitch:
    """SIGKILLs this process the N-th time it reaches the point named by --kill, once armed."""

    armed = False
    signum = signal.SIGKILL  # jobs/kill_loop.py also sends SIGTERM / SIGINT: the run then stops cleanly

    def __init__(self, spec: tuple[str, int] | None) -> None:
        self.point, self.count = spec if spec else (None, 0)

    def reached(self, point: str) -> bool:
        """Count one arrival at `point`; True when this is the arrival to die at."""
        if point != self.point or not KillSwitch.armed:
            return False
        self.count -= 1
        return self.count == 0

    @classmethod
    def die(cls) -> None:
        os.kill(os.getpid(), cls.signum)


class KillableStore(CheckpointStore):
    """The checkpoint store, slowed down and SIGKILLed at the point --kill names (faults injected
    through the Trainer's replaceable store, not by patching tamrin's functions)."""

    def __init__(self, switch: KillSwitch, save_delay: float) -> None:
        self.switch, self.save_delay = switch, save_delay

    def save_torch(self, obj: Any, path: Path) -> None:
        switch = self.switch
        if self.save_delay and KillSwitch.armed:
            time.sleep(self.save_delay)
        if switch.reached("file-begin"):
            switch.die()
        if switch.point == "file-partial":
            buffer = io.BytesIO()
            torch.save(obj, buffer)
            if switch.reached("file-partial"):
                data = buffer.getvalue()
                Path(path).write_bytes(data[: len(data) // 2])
                switch.die()
        super().save_torch(obj, path)
        if switch.reached("file-end"):
            switch.die()

    def write_manifest(self, directory: Path, info: dict[str, Any]) -> None:
        super().write_manifest(directory, info)
        if self.switch.reached("manifest"):
            self.switch.die()

    def flush_directory(self, directory: Path) -> None:
        # Called on the checkpoints folder right after the rename that publishes a checkpoint.
        if not Path(directory).name.startswith(".") and self.switch.reached("published"):
            self.switch.die()
        super().flush_directory(directory)

    def delete_checkpoint(self, path: Path, hidden_name: str) -> None:
        # A kill in the middle of a rotation's deletion: one file of the hidden folder is gone, the rest is not.
        if self.switch.reached("rotation"):
            if KillSwitch.signum == signal.SIGKILL:
                doomed = path.parent / hidden_name
                self.rename(path, doomed)
                files = sorted(p for p in doomed.rglob("*") if p.is_file())
                weights = [p for p in files if p.name == "model.safetensors"]
                (weights or files)[0].unlink()
            self.switch.die()  # SIGTERM / SIGINT: the deletion goes on, the run stops at the step's end
        super().delete_checkpoint(path, hidden_name)


class Arming(Callback):
    """Arms the kill switch at the first step >= `arm_at` (no state: safe to resume)."""

    def __init__(self, arm_at: int, events: EventLog) -> None:
        self.arm_at, self.events = arm_at, events

    def _check(self, trainer: Trainer) -> None:
        if not KillSwitch.armed and trainer.state.global_step >= self.arm_at:
            KillSwitch.armed = True
            self.events.write(f"armed {trainer.state.global_step}")

    def on_train_begin(self, trainer: Trainer) -> None:
        self._check(trainer)

    def on_step_end(self, trainer: Trainer) -> None:
        self._check(trainer)


class EventTrainer(Trainer):
    """A Trainer that writes where its checkpoint saves begin and end into the event log, and dies at
    its (max_saves + 1)-th save once armed."""

    def __init__(self, *args: Any, events: EventLog, max_saves: int | None, **kwargs: Any) -> None:
        self.events, self.max_saves, self.saves = events, max_saves, 0
        super().__init__(*args, **kwargs)

    def save_checkpoint(self) -> Path:
        self.saves += KillSwitch.armed
        if self.max_saves is not None and self.saves > self.max_saves:
            self.events.write(f"save-capped {self.state.global_step}")
            os.kill(os.getpid(), signal.SIGKILL)
        self.events.write(f"save-begin {self.state.global_step}")
        path = super().save_checkpoint()
        self.events.write(f"save-end {self.state.global_step}")
        return path


def build_trainer(
    output_dir: str, *, events: EventLog | None = None, arm_at: int = 0, max_saves: int | None = None
) -> EventTrainer:
    """The job's Trainer (with the plain store; `main` gives it the killable one)."""
    events = events or EventLog(None)
    config = job_config(output_dir, num_epochs=10, save_total_limit=2, eval_steps=None, do_evaluate=False)
    # save_steps=4 is not a multiple of the accumulation (3): many saves fall inside an accumulation window
    return EventTrainer(
        model=job_model(),
        config=config,
        train_dataset=job_data(37, seed=0),
        callbacks=[Arming(arm_at, events)],
        events=events,
        max_saves=max_saves,
    )


def main(argv: list[str]) -> None:
    parser = job_parser(__doc__.splitlines()[0], kill_at=False)  # kills come from --kill and the test
    parser.add_argument("--events", default=None, help="append event lines to this file")
    parser.add_argument("--arm-at-step", type=int, default=0, help="kills and the save cap count from this step")
    parser.add_argument("--max-saves", type=int, default=None, help="SIGKILL at the (N+1)-th save once armed")
    parser.add_argument("--kill", type=kill_spec, default=None, help=f"POINT:N, POINT one of {', '.join(POINTS)}")
    parser.add_argument("--save-delay", type=float, default=0.0, help="seconds to sleep per state file once armed")
    args = parser.parse_args(argv)
    events = EventLog(args.events)
    trainer = build_trainer(args.output_dir, events=events, arm_at=args.arm_at_step, max_saves=args.max_saves)
    trainer.checkpointer.store = KillableStore(KillSwitch(args.kill), args.save_delay)
    events.write("train-begin")
    trainer.train()
    trainer.save(Path(args.output_dir) / "final")
    events.write("done")


if __name__ == "__main__":
    main(sys.argv[1:])
