"""A training job for the multi-process tests; launch it with torchrun (or plain python for 1 process).

    PYTHONPATH=tests python -m torch.distributed.run --nproc_per_node N -m jobs.distributed OUT [--kill-step K]
    PYTHONPATH=tests python -m torch.distributed.run --nproc_per_node N -m jobs.distributed OUT --evaluate-only

It records, through a stateful callback, every sample index that all processes consumed (gathered
across processes), so a test can check that each epoch saw every sample exactly once, across kills
and changes of world size. At the end the main process writes OUT/seen.json and OUT/final.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from helpers import JOB_MODEL, RegressionData, TinyRegressor

from jobs.builder import KillAt, finish_distributed_job, job_config, job_parser
from tamrin import Trainer
from tamrin.trainer.callbacks import Callback

SAMPLES = 48


class PerSampleLossRegressor(TinyRegressor):
    """The jobs' MLP (dropout 0.2) returning per-sample losses: the Trainer averages them to train, and
    evaluation stays exact under the distributed sampler's padding."""

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"logits": self.layers(x).squeeze(-1)}

    def compute_loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return (outputs["logits"] - batch["labels"]) ** 2


class IndexedData(RegressionData):
    """Noiseless regression data on the jobs' 8 features whose items also carry their `index`."""

    def __init__(self, size: int, seed: int) -> None:
        super().__init__(size, seed, features=JOB_MODEL["inputs"], noise=0.0)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {**super().__getitem__(index), "index": torch.tensor(index)}


class SeenSamples(Callback):
    """The indices every process consumed, per epoch; saved in checkpoints like any callback state."""

    def __init__(self) -> None:
        self.epochs: list[int] = []
        self.indices: list[int] = []

    def record(self, epoch: int, indices: list[int]) -> None:
        self.epochs += [epoch] * len(indices)
        self.indices += indices

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "epochs": torch.tensor(self.epochs, dtype=torch.long),
            "indices": torch.tensor(self.indices, dtype=torch.long),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.epochs, self.indices = state["epochs"].tolist(), state["indices"].tolist()


def indexed_stream(size: int) -> Any:
    """`IndexedData(size, seed=0)` as an HF stream of 4 shards (12 samples each), giving torch tensors."""
    import datasets

    data = IndexedData(size, seed=0)
    columns = {"x": data.x.tolist(), "labels": data.y.tolist(), "index": list(range(size))}
    return datasets.Dataset.from_dict(columns).to_iterable_dataset(num_shards=4).with_format("torch")


class RecordingTrainer(Trainer):
    """Gathers each step's sample indices from all processes (a sync per step: fine in a test)."""

    def prepare_input_batch(self, batch):
        if self.model.training:
            indices = self.accelerator.gather(batch["index"])
            self.seen.record(self.state.epoch, indices.tolist())
        return super().prepare_input_batch(batch)


def main(argv: list[str]) -> None:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--evaluate-only", action="store_true", help="evaluate once, write OUT/metrics.json")
    parser.add_argument("--save-steps", type=int, default=2, help="odd: checkpoints inside accumulation windows")
    parser.add_argument("--stream", action="store_true", help="train on the samples as an HF stream of 4 shards")
    parser.add_argument(
        "--workers", type=int, default=0, help="num_dataloader_workers (the stream: a StatefulDataLoader)"
    )
    args = parser.parse_args(argv)
    # 3 passes of 6 batches per process; the index column reaches the recorder (not a forward argument)
    stream = {"max_steps": 18, "remove_unused_columns": False} if args.stream else {}
    config = job_config(
        args.output_dir, metrics=["mse", "mae", "r2"], gradient_accumulation_steps=2, optimizer="adam",
        warmup_steps=0, save_steps=args.save_steps, log_steps=2, eval_steps=None, eval_batch_size=5, seed=7,
        device="cpu", num_dataloader_workers=args.workers, **stream,
    )  # fmt: skip
    torch.manual_seed(0)
    model = PerSampleLossRegressor(**{**JOB_MODEL, "dropout": 0.2})
    seen = SeenSamples()
    trainer = RecordingTrainer(
        model=model,
        config=config,
        train_dataset=indexed_stream(SAMPLES) if args.stream else IndexedData(SAMPLES, seed=0),
        eval_dataset=IndexedData(41, seed=1),
        callbacks=[seen, KillAt(args.kill_step, args.kill_after_save)],
    )
    trainer.seen = seen
    output = Path(args.output_dir)
    if args.evaluate_only:
        metrics = trainer.evaluate()
        if trainer.is_main_process:
            output.mkdir(parents=True, exist_ok=True)
            (output / "metrics.json").write_text(json.dumps(metrics))
        return
    trainer.train()
    trainer.save(output / "final")
    if trainer.is_main_process:
        (output / "seen.json").write_text(json.dumps({"epochs": seen.epochs, "indices": seen.indices}))


if __name__ == "__main__":
    main(sys.argv[1:])
    finish_distributed_job()
