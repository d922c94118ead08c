"""A training job for the multi-process tests; launch it with torchrun (or plain python for 1 process).

    python -m torch.distributed.run --nproc_per_node N tests/distributed_job.py OUT [--kill-step K]
    python -m torch.distributed.run --nproc_per_node N tests/distributed_job.py OUT --evaluate-only

It records, through a stateful callback, every sample index that all processes consumed (gathered
across processes), so a test can check that each epoch saw every sample exactly once, across kills
and changes of world size. At the end the main process writes OUT/seen.json and OUT/final.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import torch
from torch import nn

from tamrin import Trainer, TrainerConfig
from tamrin.trainer.callbacks import Callback

SAMPLES = 48


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 1))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"logits": self.layers(x).squeeze(-1)}

    def compute_loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-sample losses: the Trainer averages them to train, and evaluation stays exact under padding."""
        return (outputs["logits"] - batch["labels"]) ** 2


class Data(torch.utils.data.Dataset):
    def __init__(self, size: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(size, 8, generator=generator)
        self.y = self.x.sum(dim=1)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[index], "labels": self.y[index], "index": torch.tensor(index)}


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


class KillAt(Callback):
    def __init__(self, step: int | None) -> None:
        self.step = step

    def on_step_end(self, trainer: Trainer) -> None:
        if trainer.state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class RecordingTrainer(Trainer):
    """Gathers each step's sample indices from all processes (a sync per step: fine in a test)."""

    def prepare_input_batch(self, batch):
        if self.model.training:
            indices = self.accelerator.gather(batch["index"])
            self.seen.record(self.state.epoch, indices.tolist())
        return super().prepare_input_batch(batch)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir")
    parser.add_argument("--kill-step", type=int, default=None)
    parser.add_argument("--evaluate-only", action="store_true")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    config = TrainerConfig(
        output_dir=args.output_dir,
        task="regression",
        metrics=["mse", "mae", "r2"],
        num_epochs=3,
        batch_size=4,
        gradient_accumulation_steps=2,
        learning_rate=0.01,
        lr_scheduler="linear",
        save_steps=2,
        log_steps=2,
        eval_batch_size=5,
        resume_from_checkpoint=True,
        seed=7,
        progress="none",
        device="cpu",
    )
    seen = SeenSamples()
    trainer = RecordingTrainer(
        model=Net(),
        config=config,
        train_dataset=Data(SAMPLES, seed=0),
        eval_dataset=Data(41, seed=1),
        callbacks=[seen, KillAt(args.kill_step)],
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
    # Leave the process group together before exiting: a gloo group torn down by interpreter exit
    # while the other rank still talks to it can abort a rank ("terminate called without an active
    # exception"). Only after a normal finish: after an error a barrier could wait on a dead rank.
    from accelerate import PartialState

    state = PartialState()
    state.wait_for_everyone()
    state.destroy_process_group()
