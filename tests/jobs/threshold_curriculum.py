"""A threshold-curriculum job for the resume and world-size tests; torchrun it (or plain python for 1 process).

    PYTHONPATH=tests python -m torch.distributed.run --nproc_per_node N -m jobs.threshold_curriculum OUT
        [--epoch full|admitted] [--pacing threshold|linear] [--kill-step K]

The post's first curriculum: admit confidence >= 0.8, lower the threshold by 0.3 each epoch (0.8, 0.5,
0.2, then 0.2) over 4 epochs, on 48 samples whose confidence is CONFIDENCE. It records the sample
indices every process consumed (as jobs/distributed.py), the plan's total_steps and the learning rate
of the last step, then writes OUT/seen.json and OUT/final. `--pacing linear` paces the same scores
(low = easy) by LINEAR instead, a fraction of the run's steps.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from helpers import JOB_MODEL

from jobs.builder import KillAt, finish_distributed_job, job_config, job_parser
from jobs.distributed import SAMPLES, IndexedData, PerSampleLossRegressor, RecordingTrainer, SeenSamples
from tamrin.trainer.callbacks.curriculum import Curriculum

CONFIDENCE = np.random.default_rng(11).random(SAMPLES)
PACING = {"name": "threshold", "start": 0.8, "change": -0.3, "stop": 0.2, "higher_is_easier": True}
LINEAR = {"name": "linear", "start": 0.25, "duration": 0.8}


def main(argv: list[str]) -> None:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--epoch", default="full", help="the curriculum's epoch mode: full or admitted")
    parser.add_argument("--pacing", default="threshold", help="threshold (PACING) or linear (LINEAR)")
    args = parser.parse_args(argv)
    config = job_config(
        args.output_dir, gradient_accumulation_steps=2, optimizer="adam", warmup_steps=0, save_steps=2,
        log_steps=1, eval_steps=None, num_epochs=4, seed=7, device="cpu",
    )  # fmt: skip
    torch.manual_seed(0)
    seen = SeenSamples()
    trainer = RecordingTrainer(
        model=PerSampleLossRegressor(**{**JOB_MODEL, "dropout": 0.2}),
        config=config,
        train_dataset=IndexedData(SAMPLES, seed=0),
        eval_dataset=IndexedData(11, seed=1),
        callbacks=[
            seen,
            Curriculum(scores=CONFIDENCE, pacing=PACING if args.pacing == "threshold" else LINEAR, epoch=args.epoch),
            KillAt(args.kill_step, args.kill_after_save),
        ],
    )
    trainer.seen = seen
    trainer.train()
    output = Path(args.output_dir)
    trainer.save(output / "final")
    if trainer.is_main_process:
        record = {
            "epochs": seen.epochs,
            "indices": seen.indices,
            "global_step": trainer.state.global_step,
            "total_steps": trainer.plan.total_steps,
            "last_lr": trainer.optimizer.param_groups[0]["lr"],
        }
        (output / "seen.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(sys.argv[1:])
    finish_distributed_job()
