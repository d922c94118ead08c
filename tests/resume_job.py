"""A small training job for the exact-resume tests: run it, SIGKILL it, run it again.

    python tests/resume_job.py OUTPUT_DIR --workers N [--kill-step K | --kill-after-save K]

Every run uses resume_from_checkpoint=True, so a restarted job is the same command. Shuffle,
dropout, gradient accumulation (3), an LR scheduler with warmup, periodic evaluation and saves
are all on. At the end the final model and state are saved to OUTPUT_DIR/final.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

import torch
from torch import nn

from tamrin import Trainer, TrainerConfig
from tamrin.trainer.callbacks import Callback


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 1))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        predictions = self.layers(x).squeeze(-1)
        return {"logits": predictions, "loss": nn.functional.mse_loss(predictions, labels)}


class Data(torch.utils.data.Dataset):
    """Deterministic regression data: the same tensors in every process."""

    def __init__(self, size: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(size, 8, generator=generator)
        self.y = self.x.sum(dim=1) + 0.1 * torch.randn(size, generator=generator)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[index], "labels": self.y[index]}


class KillAt(Callback):
    """SIGKILL this process at a step (after the step), or right after the save at a step."""

    def __init__(self, step: int | None, after_save: int | None) -> None:
        self.step, self.after_save = step, after_save

    def on_step_end(self, trainer: Trainer) -> None:
        if trainer.state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_save(self, trainer: Trainer, path: str) -> None:
        if trainer.state.global_step == self.after_save:
            os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--kill-step", type=int, default=None)
    parser.add_argument("--kill-after-save", type=int, default=None)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = Net()
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
        num_dataloader_workers=args.workers,
        resume_from_checkpoint=True,
        seed=1234,
        progress="none",
    )
    callbacks = [KillAt(args.kill_step, args.kill_after_save)]
    trainer = Trainer(
        model=model, config=config, train_dataset=Data(37, seed=0), eval_dataset=Data(11, seed=1), callbacks=callbacks
    )
    trainer.train()
    trainer.save(os.path.join(args.output_dir, "final"))


if __name__ == "__main__":
    main(sys.argv[1:])
