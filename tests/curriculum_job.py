"""A small job for the curriculum resume test: run it, SIGKILL it, run it again.

    python tests/curriculum_job.py OUTPUT_DIR [--kill-step K | --kill-after-save K]

As tests/resume_job.py (shuffle, dropout, accumulation 3, a warmup LR schedule, periodic evaluation
and saves, resume_from_checkpoint=True), with a self-paced curriculum re-scored every epoch, the
learning-rate and gradient-norm monitors, and early stopping (patient enough not to stop). At the
end the final model and state are saved to OUTPUT_DIR/final.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from resume_job import Data, KillAt, Net

from tamrin import Trainer, TrainerConfig
from tamrin.trainer.callbacks import EarlyStopping
from tamrin.trainer.callbacks.curriculum import SelfPacedCurriculum
from tamrin.trainer.callbacks.monitors import GradientNormLogger, LearningRateMonitor


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir")
    parser.add_argument("--kill-step", type=int, default=None)
    parser.add_argument("--kill-after-save", type=int, default=None)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    config = TrainerConfig(
        output_dir=args.output_dir,
        task="regression",
        metrics=["mse"],
        num_epochs=3,
        batch_size=4,
        gradient_accumulation_steps=3,
        learning_rate=0.01,
        optimizer="adamw",
        lr_scheduler="linear",
        warmup_steps=2,
        save_steps=4,
        log_steps=3,
        eval_steps=7,
        max_grad_norm=1.0,
        resume_from_checkpoint=True,
        seed=1234,
        progress="none",
    )
    callbacks = [
        SelfPacedCurriculum(every=1, pacing={"name": "root", "start": 0.3}),
        LearningRateMonitor(log_momentum=True),
        GradientNormLogger(),
        EarlyStopping(patience=10),
        KillAt(args.kill_step, args.kill_after_save),
    ]
    trainer = Trainer(
        model=Net(), config=config, train_dataset=Data(37, seed=0), eval_dataset=Data(11, seed=1), callbacks=callbacks
    )
    trainer.train()
    trainer.save(os.path.join(args.output_dir, "final"))


if __name__ == "__main__":
    main(sys.argv[1:])
