"""What the job scripts share: their command line, the run they train, the callback that kills them,
and the final save.

The run (`job_config`, `job_model`, `job_data`) has everything an exact resume must carry over:
shuffle, dropout, gradient accumulation 3, an LR schedule with warmup, periodic evaluation and
saves. It always resumes from the latest checkpoint in its output_dir (resume_from_checkpoint=True),
so a killed job is restarted with the very same command. A job that needs other numbers passes
them as overrides.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path
from typing import Any

from helpers import JOB_MODEL, RegressionData, TinyRegressor, tiny_regressor

from tamrin import Trainer, TrainerConfig
from tamrin.trainer.callbacks import Callback

__all__ = ["KillAt", "job_config", "job_data", "job_model", "job_parser", "train_and_save"]

JOB_SETTINGS: dict[str, Any] = {
    "task": "regression",
    "metrics": ["mse"],
    "num_epochs": 3,
    "batch_size": 4,
    "gradient_accumulation_steps": 3,
    "learning_rate": 0.01,
    "optimizer": "adamw",
    "lr_scheduler": "linear",
    "warmup_steps": 2,
    "save_steps": 4,
    "log_steps": 3,
    "eval_steps": 7,
    "resume_from_checkpoint": True,
    "seed": 1234,
    "progress": "none",
}


def job_parser(description: str, *, kill_at: bool = True) -> argparse.ArgumentParser:
    """The jobs' command line: the output_dir and, with `kill_at`, where to SIGKILL itself (`KillAt`)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("output_dir", help="the run's folder (its checkpoints are resumed from)")
    if kill_at:
        parser.add_argument("--kill-step", type=int, default=None, help="SIGKILL this process after this step")
        parser.add_argument(
            "--kill-after-save", type=int, default=None, help="SIGKILL this process right after the save at this step"
        )
    return parser


def job_config(output_dir: str, **overrides: Any) -> TrainerConfig:
    """The jobs' TrainerConfig (see the module docstring); `overrides` win."""
    return TrainerConfig(**{"output_dir": output_dir, **JOB_SETTINGS, **overrides})


def job_model() -> TinyRegressor:
    """The jobs' model: a dropout MLP on 8 features, initialised from seed 0."""
    return tiny_regressor(**JOB_MODEL)


def job_data(size: int, seed: int) -> RegressionData:
    """The jobs' data: `size` samples of 8 features (the same tensors in every process)."""
    return RegressionData(size, seed, features=JOB_MODEL["inputs"])


class KillAt(Callback):
    """SIGKILLs this process after a step, or right after the checkpoint save at a step."""

    def __init__(self, step: int | None, after_save: int | None = None) -> None:
        self.step, self.after_save = step, after_save

    def on_step_end(self, trainer: Trainer) -> None:
        if trainer.state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_save(self, trainer: Trainer, path: str) -> None:
        if trainer.state.global_step == self.after_save:
            os.kill(os.getpid(), signal.SIGKILL)


def train_and_save(trainer: Trainer, output_dir: str) -> None:
    """Train to the end, then save the final model and state to OUTPUT_DIR/final."""
    trainer.train()
    trainer.save(Path(output_dir) / "final")


def finish_distributed_job() -> None:
    """End a multi-process job after a normal finish: leave the gloo group together, then exit at once.

    A gloo group torn down by interpreter exit while another rank still talks to it can abort a rank,
    and even after leaving it about 1 in 30 two-process gloo runs abort during the interpreter's
    shutdown ("terminate called without an active exception": a gloo worker thread frees a finished
    collective). Everything is written by then: flush and leave without that shutdown. Only after a
    normal finish: after an error a barrier could wait on a dead rank.
    """
    import os
    import sys

    from accelerate import PartialState

    state = PartialState()
    if state.num_processes > 1:
        state.wait_for_everyone()
        state.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
