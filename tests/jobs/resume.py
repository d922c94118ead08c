"""A small training job for the exact-resume tests: run it, SIGKILL it, run it again.

    PYTHONPATH=tests python -m jobs.resume OUTPUT_DIR [--workers N] [--kill-step K | --kill-after-save K]

The run is `jobs.builder`'s (shuffle, dropout, gradient accumulation 3, an LR scheduler with warmup,
periodic evaluation and saves, resume_from_checkpoint=True), with N dataloader workers. At the end
the final model and state are saved to OUTPUT_DIR/final.
"""

from __future__ import annotations

import sys

from jobs.builder import KillAt, job_config, job_data, job_model, job_parser, train_and_save
from tamrin import Trainer


def main(argv: list[str]) -> None:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=0, help="dataloader worker processes")
    args = parser.parse_args(argv)
    trainer = Trainer(
        model=job_model(),
        config=job_config(args.output_dir, num_dataloader_workers=args.workers),
        train_dataset=job_data(37, seed=0),
        eval_dataset=job_data(11, seed=1),
        callbacks=[KillAt(args.kill_step, args.kill_after_save)],
    )
    train_and_save(trainer, args.output_dir)


if __name__ == "__main__":
    main(sys.argv[1:])
