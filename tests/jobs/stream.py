"""A training job over a stream (an HF `datasets.IterableDataset`) for the exact-resume tests.

    PYTHONPATH=tests python -m jobs.stream OUTPUT_DIR [--kill-step K | --kill-after-save K] [--workers N]

The run is `jobs.builder`'s (dropout, gradient accumulation 3, an LR scheduler with warmup,
periodic evaluation and saves, resume_from_checkpoint=True) over `job_stream`: the 37 samples of
`job_data` in 4 shards, 10 batches a pass, for max_steps=30 (three passes). At the end the final
model and state are saved to OUTPUT_DIR/final.
"""

from __future__ import annotations

import sys
from typing import Any

from jobs.builder import KillAt, job_config, job_data, job_model, job_parser, train_and_save
from tamrin import Trainer


def job_stream(size: int = 37, *, num_shards: int = 4) -> Any:
    """`job_data(size)` as an HF stream of `num_shards` shards, giving torch tensors."""
    import datasets

    data = job_data(size, seed=0)
    table = datasets.Dataset.from_dict({"x": data.x.tolist(), "labels": data.y.tolist()})
    return table.to_iterable_dataset(num_shards=num_shards).with_format("torch")


def main(argv: list[str]) -> None:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=0, help="num_dataloader_workers (> 0: a StatefulDataLoader)")
    args = parser.parse_args(argv)
    trainer = Trainer(
        model=job_model(),
        config=job_config(args.output_dir, max_steps=30, num_dataloader_workers=args.workers),
        train_dataset=job_stream(),
        eval_dataset=job_data(11, seed=1),
        callbacks=[KillAt(args.kill_step, args.kill_after_save)],
    )
    train_and_save(trainer, args.output_dir)


if __name__ == "__main__":
    main(sys.argv[1:])
