"""A small job for the curriculum resume test: run it, SIGKILL it, run it again.

    PYTHONPATH=tests python -m jobs.curriculum OUTPUT_DIR [--kill-step K | --kill-after-save K]

As jobs/resume.py (shuffle, dropout, accumulation 3, a warmup LR schedule, periodic evaluation and
saves, resume_from_checkpoint=True), with a self-paced curriculum re-scored every epoch, the
learning-rate and gradient-norm monitors, and early stopping (patient enough not to stop). At the
end the final model and state are saved to OUTPUT_DIR/final.
"""

from __future__ import annotations

import sys

from jobs.builder import KillAt, job_config, job_data, job_model, job_parser, train_and_save
from tamrin import Trainer
from tamrin.trainer.callbacks import EarlyStopping
from tamrin.trainer.callbacks.curriculum import SelfPacedCurriculum
from tamrin.trainer.callbacks.monitors import GradientNormLogger, LearningRateMonitor


def main(argv: list[str]) -> None:
    args = job_parser(__doc__.splitlines()[0]).parse_args(argv)
    callbacks = [
        SelfPacedCurriculum(every=1, pacing={"name": "root", "start": 0.3}),
        LearningRateMonitor(log_momentum=True),
        GradientNormLogger(),
        EarlyStopping(patience=10),
        KillAt(args.kill_step, args.kill_after_save),
    ]
    trainer = Trainer(
        model=job_model(),
        config=job_config(args.output_dir, max_grad_norm=1.0),
        train_dataset=job_data(37, seed=0),
        eval_dataset=job_data(11, seed=1),
        callbacks=callbacks,
    )
    train_and_save(trainer, args.output_dir)


if __name__ == "__main__":
    main(sys.argv[1:])
